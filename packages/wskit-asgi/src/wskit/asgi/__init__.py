"""wskit-asgi: serve a wskit router from any ASGI server or framework.

::

    from wskit.asgi import create_asgi_app, token_from_request

    def authenticate(request):                      # an AsgiRequest (request.scope)
        token, _ = token_from_request(request)      # ?access_token= or bearer.<token>
        return {"user_id": "u1"} if token == "secret" else None   # None → HTTP 401

    ws_app = create_asgi_app(router, authenticate=authenticate)

    # FastAPI / Starlette: a WebSocket route next to your HTTP routes
    app = FastAPI(lifespan=ws_app.lifespan)
    app.add_websocket_route("/ws", ws_app)

Run it with any ASGI server (``uvicorn module:app``), or with :func:`serve`
(uvicorn, ``pip install wskit-asgi[uvicorn]``), which closes every WebSocket
with 1001 before the server stops.
"""

from wskit.asgi.app import (
    AsgiTransport,
    Authenticate,
    ConnectionHook,
    Receive,
    Scope,
    Send,
    WebSocketApp,
    create_asgi_app,
)
from wskit.asgi.request import AsgiRequest, Headers, token_from_request
from wskit.asgi.server import serve, serve_async

__all__ = [
    "AsgiRequest",
    "AsgiTransport",
    "Authenticate",
    "ConnectionHook",
    "Headers",
    "Receive",
    "Scope",
    "Send",
    "WebSocketApp",
    "create_asgi_app",
    "serve",
    "serve_async",
    "token_from_request",
]
