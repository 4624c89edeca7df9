"""wskit-asgi passes the transport conformance suite (wskit.core.conformance) under
uvicorn, with each of its WebSocket implementations, in the test's event loop on
real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from wskit.asgi import create_asgi_app, token_from_request
from wskit.asgi.testing import serve_router
from wskit.core.conformance import (
    TIMEOUT,
    RunningServer,
    ServerFactory,
    ServerOptions,
    SuiteApp,
    TransportConformance,
)


class _UvicornConformance(TransportConformance):
    transport_pings = False  # ASGI has no ping: the heartbeat counts inbound frames
    ws: ClassVar[str]

    @pytest.fixture
    async def start_server(self) -> AsyncIterator[ServerFactory]:
        async with contextlib.AsyncExitStack() as stack:

            async def start(router: Any, options: ServerOptions) -> RunningServer:
                return await stack.enter_async_context(serve_router(router, options, ws=self.ws))

            yield start


class TestUvicornWebsocketsSansIO(_UvicornConformance):
    ws = "websockets-sansio"  # uvicorn's default with websockets installed


class TestUvicornWsproto(_UvicornConformance):
    ws = "wsproto"

    @pytest.mark.xfail(
        strict=True,
        reason="uvicorn's wsproto implementation drops the TCP connection on invalid UTF-8 "
        "without sending the 1007 close frame (the app sees websocket.disconnect 1007)",
    )
    async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        await super().test_invalid_utf8_in_a_text_frame_closes_with_1007(start_server, app)


class _HypercornServer:
    """hypercorn in the test's event loop on a socket bound here (free port).
    Shutdown: the WebSocket app closes its connections (1001), then hypercorn's
    own shutdown runs (what a hypercorn ``shutdown_trigger`` does with it)."""

    def __init__(self, ws_app: Any) -> None:
        self.ws_app = ws_app
        self.stop = asyncio.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}/ws"
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config, Sockets

        sock = self.sock

        class BoundConfig(Config):
            def create_sockets(self) -> Sockets:
                return Sockets([], [sock], [])

        config = BoundConfig()
        config.graceful_timeout = 5.0
        config.accesslog = None
        serving = serve(self.ws_app, config, shutdown_trigger=self.stop.wait)
        self.task = asyncio.ensure_future(serving)
        # Listening once a plain connection gets through.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            except OSError:
                assert loop.time() < deadline, "hypercorn did not start"
                await asyncio.sleep(0.005)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def shutdown(self) -> None:
        await self.ws_app.shutdown()
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(asyncio.shield(self.task), TIMEOUT)


class TestHypercorn(TransportConformance):
    transport_pings = False
    peer_close_codes = False  # hypercorn reports every peer close to the app as 1006

    @pytest.mark.xfail(
        strict=True,
        reason="hypercorn (wsproto) drops the TCP connection on invalid UTF-8 without "
        "sending the 1007 close frame",
    )
    async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
        self, start_server: ServerFactory, app: SuiteApp
    ) -> None:
        await super().test_invalid_utf8_in_a_text_frame_closes_with_1007(start_server, app)

    @pytest.fixture
    async def start_server(self) -> AsyncIterator[ServerFactory]:
        servers: list[_HypercornServer] = []

        async def start(router: Any, options: ServerOptions) -> RunningServer:
            app_options = options.adapter_options(lambda r: token_from_request(r)[0])
            server = _HypercornServer(create_asgi_app(router, **app_options))
            servers.append(server)
            await server.start()
            return server

        yield start
        for server in servers:
            await server.shutdown()
