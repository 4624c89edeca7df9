"""The chat demo's aiohttp server: the router of :mod:`examples.chat.router`
at ``/ws``, a static page at ``/`` and the AsyncAPI document at ``/asyncapi.json``.

A name the server refuses is not refused at the HTTP upgrade (a browser cannot read a 401
there): the WebSocket opens and the router closes it at once with code 4401 and the reason,
which the page shows."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wskit.aiohttp import add_asyncapi_route, create_app

from .router import STATIC, build_router, guest_names

__all__ = ["build_router", "make_app"]


def make_app(router: Any | None = None) -> web.Application:
    """The demo's aiohttp app: the page at ``/``, the WebSocket at ``/ws``."""
    user_for = guest_names()

    def authenticate(request: web.Request) -> dict[str, str]:
        return user_for(request.query.get("name", ""))  # a refused name: closed with 4401

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    router = router or build_router()
    app = web.Application()
    app.router.add_get("/", index)
    add_asyncapi_route(app, router, ws_path="/ws", title="wskit chat")  # GET /asyncapi.json
    return create_app(router, path="/ws", app=app, authenticate=authenticate)
