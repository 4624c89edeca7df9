"""wskit-aiohttp: serve a wskit router over real WebSockets with aiohttp.

::

    from wskit.aiohttp import serve, token_from_request

    def authenticate(request):
        token, _ = token_from_request(request)      # ?access_token= or bearer.<token>
        return {"user_id": "u1"} if token == "secret" else None   # None → HTTP 401

    serve(router, port=3000, authenticate=authenticate)

Mount on an existing app with :func:`create_handler`; run a router from the
command line with ``python -m wskit.aiohttp module:router --port 3000``;
publish its AsyncAPI document with :func:`add_asyncapi_route`.
"""

from wskit.aiohttp.asyncapi import add_asyncapi_route
from wskit.aiohttp.auth import offered_protocols, select_protocol, token_from_request
from wskit.aiohttp.handler import (
    AiohttpTransport,
    Authenticate,
    ConnectionHook,
    WebSocketHandler,
    create_handler,
)
from wskit.aiohttp.server import (
    HANDLER_KEY,
    RedactingAccessLogger,
    create_app,
    serve,
    serve_async,
    site_urls,
)

__all__ = [
    "HANDLER_KEY",
    "AiohttpTransport",
    "Authenticate",
    "ConnectionHook",
    "RedactingAccessLogger",
    "WebSocketHandler",
    "add_asyncapi_route",
    "create_app",
    "create_handler",
    "offered_protocols",
    "select_protocol",
    "serve",
    "serve_async",
    "site_urls",
    "token_from_request",
]
