"""The transport conformance suite: what every server adapter must do on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import pytest

from wskit.core.conformance._app import SuiteApp
from wskit.core.conformance._probe import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    HandshakeRefused,
    WebSocketProbe,
)
from wskit.core.connection import HeartbeatOptions, OverflowPolicy
from wskit.core.router import Router

__all__ = [
    "FRAME_TABLE",
    "TIMEOUT",
    "RunningServer",
    "ServerFactory",
    "ServerOptions",
    "TransportConformance",
    "upgrade_status",
]

#: Safety net only: every wait in the suite is for a frame, an event or a
#: condition polled with this deadline, never a sleep.
TIMEOUT = 5.0


@dataclass(frozen=True)
class ServerOptions:
    """The options a test asks the server for, in transport-neutral terms.

    ``None`` means the adapter's default. Every option but ``authenticate``
    has the name and meaning of the ``create_handler`` / ``create_asgi_app``
    option; ``authenticate(token)`` receives the token the client sent (the
    ``access_token`` query parameter or a ``bearer.<token>`` subprotocol) and
    returns the connection data, or ``None`` to refuse with 401. Adapters turn
    it into their own ``authenticate(request)`` with :meth:`adapter_options`.
    """

    authenticate: Callable[[str | None], Any] | None = None
    allowed_origins: Sequence[str] | None = None
    allowed_hosts: Sequence[str] | None = None
    max_connections: int | None = None
    max_message_bytes: int | None = None
    max_buffered_bytes: int | None = None
    overflow: OverflowPolicy | None = None
    heartbeat: HeartbeatOptions | None = None
    protocols: Sequence[str] | None = None

    def adapter_options(self, token: Callable[[Any], str | None]) -> dict[str, Any]:
        """The options as keyword arguments for an adapter whose option names
        are the ones above, ``None`` values left out; ``token(request)`` reads
        the client's token from the adapter's request object."""
        options = {f.name: getattr(self, f.name) for f in fields(self)}
        options = {k: v for k, v in options.items() if v is not None}
        check = self.authenticate
        if check is not None:
            options["authenticate"] = lambda request: check(token(request))
        return options


class RunningServer(Protocol):
    """A server the adapter started for one test."""

    #: ``ws://127.0.0.1:<port><path>``: where the router is served.
    @property
    def url(self) -> str: ...

    async def shutdown(self) -> None:
        """Shut down as the adapter does on SIGTERM: new upgrades refused (an
        HTTP 503 or no listener), every connection closed with 1001 after the
        frames queued for it, ``on_close`` run once for each. Returns when
        that is done."""


#: ``await start_server(router, options)``: serve ``router`` on a free loopback
#: port. The fixture providing it stops every server it started at teardown.
ServerFactory = Callable[[Router[Any], ServerOptions], Awaitable[RunningServer]]


async def upgrade_status(url: str, **kwargs: Any) -> int:
    """101 when the upgrade succeeds (the connection is then closed), else the
    HTTP status the server answered."""
    try:
        probe = await WebSocketProbe.connect(url, **kwargs)
    except HandshakeRefused as exc:
        return exc.status
    await probe.close()
    return 101


async def _until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition()`` (cheap and synchronous) every millisecond until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def _stalled(value: Callable[[], int], what: str, quiet: float = 0.3) -> None:
    """Return once ``value()`` stayed the same for ``quiet`` seconds (within
    TIMEOUT): the absence of progress has no event to wait for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        before = value()
        await asyncio.sleep(quiet)
        if value() == before:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ERROR", "meta": {}, "payload": {"code": code, "message": message, **extra}}


def _rpc_error(cid: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "RPC_ERROR",
        "meta": {"correlationId": cid},
        "payload": {"code": code, "message": message, **extra},
    }


def _issues(*issues: tuple[list[Any], str]) -> dict[str, Any]:
    return {"issues": [{"path": path, "message": message} for path, message in issues]}


INTERNAL = {"code": "INTERNAL", "message": "Internal server error", "retryAfterMs": 200}
TOO_DEEP = "Invalid message: nesting too deep (at most 128 levels)"
PONG_STILL_HERE = {"type": "PONG", "meta": {}, "payload": {"reply": "still here"}}
STILL_HERE = '{"type": "PING", "payload": {"text": "still here"}}'

#: (name, frame sent, frames expected back): every kind of inbound frame and
#: its answer; the connection stays usable after each.
FRAME_TABLE: list[tuple[str, str | bytes, list[dict[str, Any]]]] = [
    ("not json", "not json", [_error("INVALID_ARGUMENT", "Invalid message: not valid JSON")]),
    (
        "not an object",
        "[1, 2]",
        [_error("INVALID_ARGUMENT", "Invalid message: expected a JSON object")],
    ),
    (
        "missing type",
        '{"payload": {}}',
        [_error("INVALID_ARGUMENT", "Invalid message envelope: missing or invalid type field")],
    ),
    (
        "binary frame not utf-8",
        b"\xff\xfe",
        [_error("INVALID_ARGUMENT", "Invalid message: binary frame is not UTF-8")],
    ),
    (
        "reserved type",
        '{"type": "$ws:anything"}',
        [
            _error(
                "INVALID_ARGUMENT",
                "Reserved type cannot be handled by user code: '$ws:anything'",
            )
        ],
    ),
    (
        "unknown type",
        '{"type": "NOPE"}',
        [_error("UNIMPLEMENTED", "No handler registered for message type: 'NOPE'")],
    ),
    (
        "unknown type with a correlationId",
        '{"type": "NOPE", "meta": {"correlationId": "c1"}}',
        [_rpc_error("c1", "UNIMPLEMENTED", "No handler registered for message type: 'NOPE'")],
    ),
    (
        "fails validation",
        '{"type": "PING", "payload": {"text": 5}}',
        [
            _error(
                "INVALID_ARGUMENT",
                "Invalid PING message",
                details=_issues((["payload", "text"], "Expected a string")),
            )
        ],
    ),
    (
        "unknown root key",
        '{"type": "PING", "payload": {"text": "x"}, "extra": 1}',
        [
            _error(
                "INVALID_ARGUMENT",
                "Invalid PING message",
                details=_issues((["extra"], "Unrecognized key")),
            )
        ],
    ),
    ("handler raises", '{"type": "BOOM"}', [{"type": "ERROR", "meta": {}, "payload": INTERNAL}]),
    (
        "rpc without a reply",
        '{"type": "NO_REPLY", "meta": {"correlationId": "c2"}, "payload": {"x": 1}}',
        [_rpc_error("c2", "INTERNAL", "handler completed without a reply", retryAfterMs=200)],
    ),
    (
        "rpc with progress",
        '{"type": "GET_USER", "meta": {"correlationId": "c3"}, "payload": {"userId": "7"}}',
        [
            {
                "type": "$ws:rpc-progress",
                "meta": {"correlationId": "c3"},
                "payload": {"name": "partial"},
            },
            {"type": "USER_DATA", "meta": {"correlationId": "c3"}, "payload": {"name": "user 7"}},
        ],
    ),
    (
        "deadline",
        '{"type": "SLOW", "meta": {"correlationId": "c4", "timeoutMs": 30}, "payload": {"x": 1}}',
        [_rpc_error("c4", "DEADLINE_EXCEEDED", "Deadline exceeded", retryAfterMs=50)],
    ),
    (
        "binary frame",
        b'{"type": "PING", "payload": {"text": "bin"}}',
        [{"type": "PONG", "meta": {}, "payload": {"reply": "bin"}}],
    ),
    (
        "nested 1,000 deep",
        '{"type": "PING", "payload": {"text": ' + "[" * 998 + "]" * 998 + "}}",
        [_error("INVALID_ARGUMENT", TOO_DEEP)],
    ),
    (
        "nested 100,000 deep",
        '{"type": "PING", "payload": {"text": ' + "[" * 100_000 + "]" * 100_000 + "}}",
        [_error("INVALID_ARGUMENT", TOO_DEEP)],
    ),
    (
        "lone surrogate echoed",
        '{"type": "PING", "payload": {"text": "a\\ud800"}}',
        [{"type": "PONG", "meta": {}, "payload": {"reply": "a\ud800"}}],
    ),
    (
        "lone surrogate in an unknown key",
        '{"type": "PING", "payload": {"text": "x", "\\ud800": 1}}',
        [
            _error(
                "INVALID_ARGUMENT",
                "Invalid PING message",
                details=_issues((["payload", "\ud800"], "Unrecognized key")),
            )
        ],
    ),
    (
        "number out of range",
        '{"type": "PING", "payload": {"text": 1e400}}',
        [_error("INVALID_ARGUMENT", "Invalid message: a number is out of range")],
    ),
    (
        "timeoutMs with 310 digits",
        '{"type": "GET_USER", "meta": {"correlationId": "t1", "timeoutMs": '
        + "9" * 310
        + '}, "payload": {"userId": "u"}}',
        [
            _rpc_error(
                "t1",
                "INVALID_ARGUMENT",
                "Invalid GET_USER message",
                details=_issues(
                    (
                        ["meta", "timeoutMs"],
                        "Expected a positive integer of milliseconds, at most 2147483647",
                    )
                ),
            )
        ],
    ),
]

_ORIGINS: list[tuple[list[str] | None, str, int]] = [
    (None, "http://evil.example", 403),
    (None, "null", 403),
    (["https://app.example"], "https://app.example", 101),
    (["https://app.example/"], "HTTPS://APP.EXAMPLE", 101),
    (["https://app.example"], "https://other.example", 403),
    (["*"], "http://evil.example", 101),
]

_HOSTS: list[tuple[str, str | None, int]] = [
    ("app.example", None, 101),
    ("APP.Example:8443", None, 101),  # case-insensitive, any port
    ("chat.eu.example.org", None, 101),  # ".example.org": subdomains ...
    ("example.org", None, 101),  # ... and the domain itself
    ("127.0.0.1:1", None, 101),
    ("evil.example", None, 400),
    ("app.example.evil.example", None, 400),
    ("127.0.0.2", None, 400),
    ("evil.example", "http://evil.example", 400),  # DNS rebinding: "same origin"
    ("app.example", "https://evil.example", 403),  # allowed host, foreign page
]


def _token_auth(token: str | None) -> dict[str, str] | None:
    return {"user_id": f"user-{token}"} if token in ("t1", "t2") else None


class TransportConformance:
    """The transport conformance suite: subclass it in a test module of your
    adapter (the class name must start with ``Test``) and override the
    ``start_server`` fixture::

        from wskit.core.conformance import ServerOptions, TransportConformance

        class TestMyAdapterConformance(TransportConformance):
            transport_pings = True    # heartbeat sends WebSocket pings

            @pytest.fixture
            async def start_server(self):
                async with contextlib.AsyncExitStack() as stack:
                    async def start(router, options: ServerOptions):
                        app = create_my_app(router, **options.adapter_options(my_token))
                        return await stack.enter_async_context(serve_on_free_port(app))
                    yield start

    Every test runs real sockets on loopback with :class:`WebSocketProbe`,
    an independent stdlib client, against the router of :class:`SuiteApp`.
    Needs pytest-asyncio (``asyncio_mode = "auto"``).
    """

    #: The adapter's heartbeat sends WebSocket pings (and counts pongs). An
    #: adapter that cannot (ASGI has no ping) sets it to ``False``: its
    #: heartbeat then counts inbound frames only, which the suite checks.
    transport_pings: ClassVar[bool] = True
    #: The server tells the adapter the close code the peer sent. One that
    #: does not (hypercorn reports every peer close as 1006) sets it to
    #: ``False``: ``on_close`` then sees 1006 where the peer sent 1000.
    peer_close_codes: ClassVar[bool] = True

    def peer_closed(self, code: int) -> int:
        """The code ``on_close`` sees when the peer closes with ``code``."""
        return code if self.peer_close_codes else 1006

    # -------------------------------------------------------------- fixtures

    @pytest.fixture
    def start_server(self) -> ServerFactory:
        """Override: an (async) fixture returning a :data:`ServerFactory`."""
        raise NotImplementedError(f"{type(self).__name__} must override the start_server fixture")

    @pytest.fixture
    def app(self) -> SuiteApp:
        return SuiteApp()

    @pytest.fixture(autouse=True)
    async def _dispose_probes(self, start_server: ServerFactory) -> AsyncIterator[None]:
        # Depends on start_server so that it is torn down first: clients still open
        # when a test fails are dropped before the servers stop.
        self._probes: list[WebSocketProbe] = []
        yield
        for probe in self._probes:
            await probe.dispose()

    async def connect(self, url: str, **options: Any) -> WebSocketProbe:
        """A :class:`WebSocketProbe` dropped at the end of the test if still open."""
        probe = await WebSocketProbe.connect(url, **options)
        self._probes.append(probe)
        return probe

    @staticmethod
    async def _start(start_server: ServerFactory, app: SuiteApp, **options: Any) -> RunningServer:
        return await asyncio.wait_for(start_server(app.router, ServerOptions(**options)), TIMEOUT)

    # ------------------------------------------------ every frame is answered

    @pytest.mark.parametrize(
        ("frame", "expected"),
        [row[1:] for row in FRAME_TABLE],
        ids=[row[0] for row in FRAME_TABLE],
    )
    async def test_every_frame_is_answered(
        self, start_server: ServerFactory, app: SuiteApp, frame: Any, expected: Any
    ) -> None:
        server = await self._start(start_server, app)
        probe = await self.connect(server.url)
        if isinstance(frame, bytes):
            await probe.send_bytes(frame)
        else:
            await probe.send_text(frame)
        got = [await probe.recv_json() for _ in expected]
        assert got == expected
        await probe.send_text(STILL_HERE)  # the connection stays usable
        assert await probe.recv_json() == PONG_STILL_HERE
        await probe.close()
        await app.all_closed()
        if expected[0]["type"] in ("ERROR", "RPC_ERROR"):
            assert len(app.errors) == 1  # and the row was reported
        assert [code for _, code, _ in app.closed] == [self.peer_closed(1000)]

    async def test_error_text_never_reaches_the_wire(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        probe = await self.connect(server.url)
        await probe.send_text('{"type": "BOOM"}')
        frame = await probe.recv_json()
        await probe.close()
        assert frame["payload"] == INTERNAL
        assert "secret" not in json.dumps(frame)
        [(exc, info)] = app.errors
        assert str(exc) == "secret internal detail"
        assert info.message_type == "BOOM"

    async def test_heartbeat_frame_is_answered(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        probe = await self.connect(server.url)
        await probe.send_text('{"type": "__heartbeat"}')
        frame = await probe.recv_json()
        await probe.close()
        assert frame["type"] == "__heartbeat_ack"
        assert set(frame["meta"]) == {"ts"}
        assert isinstance(frame["meta"]["ts"], int)

    async def test_frames_of_one_connection_are_handled_in_order(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        a = await self.connect(server.url)
        b = await self.connect(server.url)
        for i in range(200):
            frame = json.dumps({"type": "PING", "payload": {"text": str(i)}})
            if i % 3:
                await a.send_text(frame)
            else:
                await a.send_bytes(frame.encode())
            await b.send_text(json.dumps({"type": "PING", "payload": {"text": f"b{i}"}}))
        replies_a = [(await a.recv_json())["payload"]["reply"] for _ in range(200)]
        replies_b = [(await b.recv_json())["payload"]["reply"] for _ in range(200)]
        assert replies_a == [str(i) for i in range(200)]
        assert replies_b == [f"b{i}" for i in range(200)]
        await a.close()
        await b.close()

    async def test_abort_cancels_the_running_rpc(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        probe = await self.connect(server.url)
        await probe.send_text(
            '{"type": "SLOW", "meta": {"correlationId": "s1"}, "payload": {"x": 1}}'
        )
        await asyncio.wait_for(app.slow_started.wait(), TIMEOUT)
        await probe.send_text('{"type": "$ws:abort", "meta": {"correlationId": "s1"}}')
        await asyncio.wait_for(app.cancelled.wait(), TIMEOUT)
        # Nothing was sent for the aborted RPC: the next frame is the PONG.
        await probe.send_text(STILL_HERE)
        assert await probe.recv_json() == PONG_STILL_HERE
        await probe.close()

    # ------------------------------------------------------- size and UTF-8

    async def test_frame_over_the_limit_closes_with_1009(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app, max_message_bytes=1000)
        probe = await self.connect(server.url)
        # Exactly the limit, in UTF-8 bytes, is accepted.
        text = "é" * 400
        frame = json.dumps({"type": "PING", "payload": {"text": text}}, ensure_ascii=False)
        frame += " " * (1000 - len(frame.encode()))
        assert len(frame.encode()) == 1000 and len(frame) < 700  # bytes, not characters
        await probe.send_text(frame)
        assert (await probe.recv_json())["payload"] == {"reply": text}
        await probe.send_text(frame + " ")
        close = await probe.recv_close()
        assert close.code == 1009
        await probe.close()
        await app.all_closed()
        [(_, code, _)] = app.closed
        assert code == 1009
        assert app.error_codes() == ["RESOURCE_EXHAUSTED"]

    async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        probe = await self.connect(server.url)
        other = await self.connect(server.url)
        await probe.send_frame(TEXT, b'{"type": "PING", "payload": {"text": "\xff"}}')
        close = await probe.recv_close()
        assert close.code == 1007
        await probe.close()
        await _until(lambda: len(app.closed) == 1, "on_close of the failed connection")
        await other.send_text(STILL_HERE)  # another connection is not affected
        assert await other.recv_json() == PONG_STILL_HERE
        await other.close()

    async def test_one_failing_connection_does_not_affect_another(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        a = await self.connect(server.url)
        b = await self.connect(server.url)
        await a.send_text('{"type": "BOOM"}')
        assert (await a.recv_json())["payload"] == INTERNAL
        await a.send_text("x" * (2 << 20))  # over the default 1 MiB: a is closed
        assert (await a.recv_close()).code == 1009
        await b.send_text(STILL_HERE)
        assert await b.recv_json() == PONG_STILL_HERE
        await a.close()
        await b.close()
        await app.all_closed()
        codes = sorted((code or 0) for _, code, _ in app.closed)
        assert codes == sorted([self.peer_closed(1000), 1009])

    async def test_a_client_ping_gets_a_pong(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        probe = await self.connect(server.url)
        await probe.ping(b"hello")
        frame = await probe.recv()
        assert (frame.opcode, frame.data) == (PONG, b"hello")
        await probe.close()

    # ------------------------------------------------------------ handshake

    async def test_authenticate_none_is_401_before_the_upgrade(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app, authenticate=_token_auth)
        assert await upgrade_status(server.url) == 401
        assert await upgrade_status(server.url + "?access_token=wrong") == 401
        assert await upgrade_status(server.url, subprotocols=["bearer.wrong"]) == 401
        assert app.opened == []

    async def test_query_token_is_accepted_and_data_reaches_handlers(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app, authenticate=_token_auth)
        probe = await self.connect(server.url + "?access_token=t1")
        assert probe.subprotocol is None
        await probe.send_text('{"type": "WHO_AM_I", "meta": {"correlationId": "w"}}')
        assert await probe.recv_json() == {
            "type": "YOU_ARE",
            "meta": {"correlationId": "w"},
            "payload": {"userId": "user-t1"},
        }
        await probe.close()

    async def test_bearer_subprotocol_is_accepted_and_echoed(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app, authenticate=_token_auth)
        probe = await self.connect(server.url, subprotocols=["bearer.t2"])
        assert probe.subprotocol == "bearer.t2"
        await probe.send_text('{"type": "WHO_AM_I", "meta": {"correlationId": "w"}}')
        assert (await probe.recv_json())["payload"] == {"userId": "user-t2"}
        await probe.close()

    async def test_application_subprotocol_is_preferred_over_bearer(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(
            start_server, app, authenticate=_token_auth, protocols=["wskit.v1"]
        )
        probe = await self.connect(server.url, subprotocols=["wskit.v1", "bearer.t1"])
        assert probe.subprotocol == "wskit.v1"
        await probe.close()

    @pytest.mark.parametrize(("allowed", "origin", "status"), _ORIGINS)
    async def test_foreign_origins_are_refused_with_403(
        self,
        start_server: ServerFactory,
        app: SuiteApp,
        allowed: list[str] | None,
        origin: str,
        status: int,
    ) -> None:
        server = await self._start(start_server, app, allowed_origins=allowed)
        assert await upgrade_status(server.url, origin=origin) == status
        assert len(app.opened) == (1 if status == 101 else 0)

    async def test_same_origin_and_no_origin_pass(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        netloc = urlsplit(server.url).netloc
        assert await upgrade_status(server.url, origin=f"http://{netloc}") == 101
        assert await upgrade_status(server.url) == 101  # no Origin: not a browser

    @pytest.mark.parametrize(("host", "origin", "status"), _HOSTS)
    async def test_hosts_not_allowed_are_refused_with_400(
        self,
        start_server: ServerFactory,
        app: SuiteApp,
        host: str,
        origin: str | None,
        status: int,
    ) -> None:
        server = await self._start(
            start_server, app, allowed_hosts=["app.example", ".Example.org", "127.0.0.1"]
        )
        got = await upgrade_status(server.url, headers={"Host": host}, origin=origin)
        assert got == status
        assert len(app.opened) == (1 if status == 101 else 0)

    async def test_max_connections_is_503_until_a_slot_frees(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app, max_connections=2)
        a = await self.connect(server.url)
        b = await self.connect(server.url)
        assert await upgrade_status(server.url) == 503
        await a.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while (status := await upgrade_status(server.url)) == 503:
            assert loop.time() < deadline, "the slot was never released"
            await asyncio.sleep(0.005)
        assert status == 101
        await b.close()
        await app.all_closed()
        assert len(app.opened) == 3

    # ---------------------------------------------------------- backpressure

    async def test_a_slow_consumer_is_bounded_then_closed_with_1013(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        limit = 64 * 1024
        server = await self._start(start_server, app, max_buffered_bytes=limit)
        count = 100_000  # 100 MB of 1 KB frames: far more than socket buffers hold
        probe = await self.connect(server.url)
        await probe.send_json({"type": "TRICKLE", "payload": {"count": count, "size": 1000}})
        # The client reads nothing until the server gave up on it.
        await asyncio.wait_for(app.overflowed.wait(), TIMEOUT)
        await asyncio.wait_for(app.trickle_done.wait(), TIMEOUT)
        assert 0 < len(app.buffered) < count
        assert max(app.buffered) <= limit  # the FIFO never exceeds its bound
        # Now read: whatever was in flight, in order, then close 1013.
        received = 0
        while True:
            frame = await probe.recv()
            if frame.opcode != TEXT:
                break
            assert frame.json()["payload"]["i"] == received
            received += 1
        assert (frame.opcode, frame.code) == (CLOSE, 1013)
        assert 0 < received < count
        await probe.close()
        await app.all_closed()
        assert [code for _, code, _ in app.closed] == [1013]

    async def test_the_drop_policy_sends_resource_exhausted_and_stays_open(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app, max_buffered_bytes=4096, overflow="drop")
        probe = await self.connect(server.url)
        # 4,000 frames of ~10 KB at once: the first is queued (a frame is always
        # accepted into an empty buffer), the rest are dropped and the client is
        # told once.
        await probe.send_json({"type": "FLOOD", "payload": {"count": 4000, "size": 10_000}})
        frames = [await probe.recv_json()]
        while frames[-1]["type"] == "CHUNK":
            frames.append(await probe.recv_json())
        chunks, error = frames[:-1], frames[-1]
        assert [c["payload"]["i"] for c in chunks] == list(range(len(chunks)))
        assert 0 < len(chunks) < 4000
        assert error == _error(
            "RESOURCE_EXHAUSTED", "Outbound buffer full: messages dropped", retryAfterMs=100
        )
        await probe.send_text(STILL_HERE)
        assert await probe.recv_json() == PONG_STILL_HERE
        await probe.close()

    async def test_a_full_inbound_queue_stops_reading_and_slows_the_sender(
        self, start_server: ServerFactory
    ) -> None:
        app = SuiteApp(max_inbound_messages=100)
        server = await self._start(start_server, app)
        count, data = 20_000, "y" * 1000  # 20 MB: more than the kernel's socket buffers hold
        probe = await self.connect(server.url)
        await probe.send_text('{"type": "HOLD"}')
        await asyncio.wait_for(app.held.wait(), TIMEOUT)
        conn = app.connection()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for i in range(count):
                await probe.send_json({"type": "SINK", "payload": {"i": i, "data": data}})
                sent = i + 1

        sender = asyncio.ensure_future(flood())
        try:
            # The server queues up to its bound, then stops reading that socket ...
            await _until(lambda: conn.inbound_full, "the inbound queue to fill")
            # ... and TCP slows the sender down: its write buffer fills, and it makes
            # no progress at all while the handlers are held.
            await _until(lambda: probe.write_buffer_size() > 64 * 1024, "the sender to block")
            await _stalled(lambda: sent, "the sender to stop making progress")
            assert not sender.done() and sent < count
            assert conn.inbound_full
            assert app.handled == []
            app.release.set()
            await asyncio.wait_for(sender, 4 * TIMEOUT)
        finally:
            sender.cancel()
        await _until(lambda: len(app.handled) == count, "every frame to be handled", 4 * TIMEOUT)
        assert app.handled == list(range(count))
        assert app.errors == []
        await probe.close()

    # ------------------------------------------------------------- heartbeat

    async def test_heartbeat_closes_a_silent_peer(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        heartbeat = HeartbeatOptions(interval_ms=50, timeout_ms=100, on_stale=app.on_stale)
        server = await self._start(start_server, app, heartbeat=heartbeat)
        # This client sends nothing and answers no ping.
        probe = await self.connect(server.url)
        await asyncio.wait_for(app.stale_seen.wait(), TIMEOUT)
        kinds = []
        while True:
            frame = await probe.recv()
            kinds.append(frame.opcode)
            if frame.opcode != PING:
                break
        assert (frame.opcode, frame.code, frame.reason) == (CLOSE, 1011, "Heartbeat timeout")
        if self.transport_pings:
            assert kinds[0] == PING
        await probe.close()
        await app.all_closed()
        assert [c.client_id for c in app.stale] == app.opened
        assert [code for _, code, _ in app.closed] == [1011]

    async def test_heartbeat_keeps_a_peer_that_sends_frames(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        heartbeat = HeartbeatOptions(interval_ms=100, timeout_ms=1000, on_stale=app.on_stale)
        server = await self._start(start_server, app, heartbeat=heartbeat)
        probe = await self.connect(server.url)
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.5  # five intervals
        while loop.time() < until:
            await probe.send_text('{"type": "__heartbeat"}')
            await asyncio.sleep(0.05)  # the client's pace, not a wait for the server
        await probe.send_text(STILL_HERE)
        while (frame := await probe.recv()).opcode != TEXT or b"PONG" not in frame.data:
            assert frame.opcode in (TEXT, PING), frame
        assert frame.json() == PONG_STILL_HERE
        await probe.close()
        assert app.stale == []

    async def test_heartbeat_pings_keep_a_peer_that_answers(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        if not self.transport_pings:
            pytest.skip("this adapter's heartbeat sends no transport pings")
        heartbeat = HeartbeatOptions(interval_ms=30, timeout_ms=5000, on_stale=app.on_stale)
        server = await self._start(start_server, app, heartbeat=heartbeat)
        probe = await self.connect(server.url)
        for _ in range(3):
            frame = await probe.recv()
            assert frame.opcode == PING
            await probe.pong(frame.data)
        await probe.send_text(STILL_HERE)
        while (frame := await probe.recv()).opcode == PING:
            pass
        assert frame.json() == PONG_STILL_HERE
        await probe.close()
        assert app.stale == []

    # -------------------------------------------------------------- shutdown

    async def test_shutdown_closes_every_connection_with_1001(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        server = await self._start(start_server, app)
        a = await self.connect(server.url)
        b = await self.connect(server.url)
        # a has an RPC in flight; b just got a reply.
        await a.send_text('{"type": "SLOW", "meta": {"correlationId": "s"}, "payload": {"x": 1}}')
        await asyncio.wait_for(app.slow_started.wait(), TIMEOUT)
        await b.send_text('{"type": "PING", "payload": {"text": "last"}}')
        assert (await b.recv_json())["payload"] == {"reply": "last"}

        stopping = asyncio.ensure_future(server.shutdown())
        for probe in (a, b):
            close = await probe.recv_close()
            assert (close.code, close.reason) == (1001, "Server shutting down")
        await asyncio.wait_for(stopping, 3 * TIMEOUT)
        # The RPC in flight was cancelled (its handler saw it), not dropped silently.
        assert app.cancelled.is_set()
        # on_close ran exactly once per connection.
        assert sorted(cid for cid, _, _ in app.closed) == sorted(app.opened)
        assert [code for _, code, _ in app.closed] == [1001, 1001]
        assert app.router.connections == {}
        # New upgrades are refused: 503, or nobody listens any more.
        try:
            status = await upgrade_status(server.url)
        except OSError:
            status = 0
        assert status in (0, 503)
        await a.close()
        await b.close()
