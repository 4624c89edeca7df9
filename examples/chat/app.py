"""The chat demo's aiohttp server: the router of :mod:`examples.chat.router`
at ``/ws``, a static page at ``/`` and the AsyncAPI document at ``/asyncapi.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wskit.aiohttp import add_asyncapi_route, create_app

from .router import STATIC, build_router, guest_names

__all__ = ["build_router", "make_app"]


def make_app(router: Any | None = None) -> web.Application:
    """The demo's aiohttp app: the page at ``/``, the WebSocket at ``/ws``."""
    user_for = guest_names()

    def authenticate(request: web.Request) -> dict[str, str] | None:
        return user_for(request.query.get("name", ""))  # None -> HTTP 401

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    router = router or build_router()
    app = web.Application()
    app.router.add_get("/", index)
    add_asyncapi_route(app, router, ws_path="/ws", title="wskit chat")  # GET /asyncapi.json
    return create_app(router, path="/ws", app=app, authenticate=authenticate)
