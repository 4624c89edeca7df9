"""The chat router mounted in a FastAPI app, next to plain HTTP routes.

- ``GET /``: the chat page (the same one as the aiohttp demo; it connects to ``/ws``);
- ``GET /health``: an ordinary FastAPI route;
- ``/ws``: the wskit router as a WebSocket route (``?name=alice``, else a guest name;
  a name the server refuses is closed with 4401 and the reason, which the page shows).

Run ``python -m examples.fastapi_chat`` (``wskit.asgi.serve``: closes the WebSockets
with 1001 on Ctrl+C), or ``uvicorn examples.fastapi_chat.app:app`` (uvicorn then closes
them with 1012 itself, before the app's lifespan shutdown).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse

from examples.chat.router import STATIC, build_router, guest_names
from wskit.asgi import AsgiRequest, WebSocketApp, create_asgi_app


def make_app() -> tuple[FastAPI, WebSocketApp[Any]]:
    """The FastAPI app and the WebSocket app mounted in it at ``/ws``."""
    user_for = guest_names()

    def authenticate(request: AsgiRequest) -> dict[str, str]:
        return user_for(request.query.get("name", ""))  # a refused name: closed with 4401

    chat = create_asgi_app(build_router(), authenticate=authenticate)
    api = FastAPI(title="wskit chat", lifespan=chat.lifespan)

    @api.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @api.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "connections": len(chat.connections)}

    api.router.add_websocket_route("/ws", chat)
    return api, chat


app, chat = make_app()
