"""Test helpers: run an ASGI app under uvicorn, in the test's event loop, on a
free loopback port (a real socket, no subprocess)::

    ws_app = create_asgi_app(router)
    async with loopback_server(ws_app, path="/ws") as server:
        ...  # connect to server.url

:func:`serve_router` is what the transport conformance suite
(:mod:`wskit.core.conformance`) starts for each of its tests. Needs uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from wskit.asgi.app import WebSocketApp, create_asgi_app
from wskit.asgi.request import token_from_request
from wskit.asgi.server import build_server, server_urls

if TYPE_CHECKING:
    import uvicorn

    from wskit.core.conformance import ServerOptions
    from wskit.core.router import Router

__all__ = ["LoopbackServer", "loopback_server", "serve_router"]

#: Safety net for starting and stopping (each is a condition with a deadline).
TIMEOUT = 10.0


class LoopbackServer:
    """A running server: ``url`` (``ws://127.0.0.1:<port><path>``), ``http_url``,
    ``port``, ``server`` (the ``uvicorn.Server``), and :meth:`shutdown`
    (graceful, as on SIGTERM; idempotent)."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], path: str) -> None:
        self.server = server
        self.path = path
        self._task = task
        (url,) = server_urls(server, path)[:1]
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def shutdown(self) -> None:
        """Stop as uvicorn does on SIGTERM, WebSocket apps closing theirs first."""
        self.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self._task), TIMEOUT)


@contextlib.asynccontextmanager
async def loopback_server(
    app: Any,
    *,
    path: str = "/",
    websocket_apps: Sequence[WebSocketApp[Any]] = (),
    **uvicorn_options: Any,
) -> AsyncIterator[LoopbackServer]:
    """Serve ``app`` on ``127.0.0.1`` and a free port for the ``async with``
    body (uvicorn's logging configuration is left alone unless given)."""
    uvicorn_options.setdefault("log_config", None)
    server = build_server(
        app, host="127.0.0.1", port=0, websocket_apps=websocket_apps, **uvicorn_options
    )
    task = asyncio.ensure_future(server.serve())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("uvicorn stopped before it started")
            if loop.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.005)
        running = LoopbackServer(server, task, path)
        yield running
        await running.shutdown()
    finally:
        if not task.done():
            server.should_exit = True
            server.force_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, TIMEOUT)


@contextlib.asynccontextmanager
async def serve_router(
    router: Router[Any], options: ServerOptions, *, path: str = "/ws", **uvicorn_options: Any
) -> AsyncIterator[LoopbackServer]:
    """Serve ``router`` with the conformance suite's ``options`` (the token of
    ``authenticate(token)`` read with :func:`token_from_request`)."""
    app_options = options.adapter_options(lambda request: token_from_request(request)[0])
    ws_app = create_asgi_app(router, **app_options)
    async with loopback_server(ws_app, path=path, **uvicorn_options) as server:
        yield server
