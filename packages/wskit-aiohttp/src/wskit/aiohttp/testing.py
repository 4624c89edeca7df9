"""Test helpers: run an aiohttp app on a free loopback port.

::

    app = create_app(router, path="/ws")
    async with loopback_server(app, path="/ws") as server:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url) as ws:
                ...

:func:`serve_router` is what the transport conformance suite
(:mod:`wskit.core.conformance`) starts for each of its tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wskit.aiohttp.auth import token_from_request
from wskit.aiohttp.handler import WebSocketHandler
from wskit.aiohttp.server import HANDLER_KEY, RedactingAccessLogger, create_app

if TYPE_CHECKING:
    from wskit.core.conformance import ServerOptions
    from wskit.core.router import Router

__all__ = ["LoopbackServer", "loopback_server", "serve_router"]


class LoopbackServer:
    """A running app: ``url`` (``ws://127.0.0.1:<port><path>``), ``http_url``,
    ``port``, ``handler`` and :meth:`stop` (graceful, idempotent)."""

    def __init__(self, runner: web.AppRunner, port: int, path: str) -> None:
        self.runner = runner
        self.port = port
        self.path = path
        self._stopped = False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def handler(self) -> WebSocketHandler[Any]:
        return self.runner.app[HANDLER_KEY]

    async def stop(self) -> None:
        """Shut the app down as ``serve()`` does on SIGTERM."""
        if not self._stopped:
            self._stopped = True
            await self.runner.cleanup()

    async def shutdown(self) -> None:
        """The same as :meth:`stop` (the conformance suite's name for it)."""
        await self.stop()


@contextlib.asynccontextmanager
async def loopback_server(
    app: web.Application, *, path: str = "/", shutdown_timeout: float = 5.0
) -> AsyncIterator[LoopbackServer]:
    """Serve ``app`` on ``127.0.0.1`` and a free port for the ``async with`` body."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=RedactingAccessLogger,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    server: LoopbackServer | None = None
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address = runner.addresses[0]
        server = LoopbackServer(runner, int(address[1]), path)
        yield server
    finally:
        if server is not None:
            await server.stop()
        else:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_router(
    router: Router[Any], options: ServerOptions, *, path: str = "/ws"
) -> AsyncIterator[LoopbackServer]:
    """Serve ``router`` with the conformance suite's ``options`` (the token of
    ``authenticate(token)`` read with :func:`token_from_request`)."""
    handler_options = options.adapter_options(lambda request: token_from_request(request)[0])
    app = create_app(router, path=path, **handler_options)
    async with loopback_server(app, path=path) as server:
        yield server
