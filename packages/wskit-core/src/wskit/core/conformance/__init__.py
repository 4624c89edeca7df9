"""The transport conformance suite: what every server adapter must do on the wire.

An adapter package (``wskit-aiohttp``, ``wskit-asgi``, yours) runs it in its
own tests by subclassing :class:`TransportConformance` and overriding one
fixture, ``start_server``, that serves a router with given
:class:`ServerOptions` on a free loopback port. Every test then talks to that
server over a real socket with :class:`WebSocketProbe`, a minimal stdlib
WebSocket client that can also misbehave (invalid UTF-8, oversized frames,
never reading, never answering a ping), and compares the frames on the wire
and what the router's hooks saw with what the protocol requires: the answer
to every kind of inbound frame, per-connection order, authentication (401)
and the subprotocol echo, Origin (403) and Host (400) checks,
``max_connections`` (503), 1009 and 1007, both overflow policies, the inbound
bound slowing a fast sender down, heartbeat, and graceful shutdown (1001).

Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``); nothing else
beyond the standard library. :class:`WebSocketProbe` and :class:`SuiteApp`
are also there for an adapter's own tests.
"""

from wskit.core.conformance._app import SuiteApp, fields
from wskit.core.conformance._probe import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Frame,
    HandshakeRefused,
    WebSocketProbe,
)
from wskit.core.conformance._suite import (
    FRAME_TABLE,
    TIMEOUT,
    RunningServer,
    ServerFactory,
    ServerOptions,
    TransportConformance,
    upgrade_status,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "FRAME_TABLE",
    "PING",
    "PONG",
    "TEXT",
    "TIMEOUT",
    "Frame",
    "HandshakeRefused",
    "RunningServer",
    "ServerFactory",
    "ServerOptions",
    "SuiteApp",
    "TransportConformance",
    "WebSocketProbe",
    "fields",
    "upgrade_status",
]
