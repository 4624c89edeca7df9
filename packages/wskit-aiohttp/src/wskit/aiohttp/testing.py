"""Test helpers: run an aiohttp app on a free loopback port.

::

    app = create_app(router, path="/ws")
    async with loopback_server(app, path="/ws") as server:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url) as ws:
                ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from wskit.aiohttp.handler import WebSocketHandler
from wskit.aiohttp.server import HANDLER_KEY, RedactingAccessLogger

__all__ = ["LoopbackServer", "loopback_server"]


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
