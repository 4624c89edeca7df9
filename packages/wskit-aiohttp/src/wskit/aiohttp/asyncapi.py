"""Serve a router's AsyncAPI 3.0 document from an aiohttp app.

::

    app = create_app(router, path="/ws")
    add_asyncapi_route(app, router, ws_path="/ws", title="Chat")   # GET /asyncapi.json
    add_asyncapi_route(app, router, path="/asyncapi.yaml", ws_path="/ws", title="Chat")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from wskit.core.asyncapi import asyncapi_document, to_json, to_yaml
from wskit.core.router import Router

__all__ = ["add_asyncapi_route"]


def add_asyncapi_route(
    app: web.Application,
    router: Router[Any],
    *,
    path: str = "/asyncapi.json",
    ws_path: str = "/",
    title: str = "wskit API",
    version: str = "1.0.0",
    description: str | None = None,
    servers: Mapping[str, str] | None = None,
) -> None:
    """Answer ``GET path`` with the AsyncAPI document of ``router``: JSON, or YAML
    when ``path`` ends in ``.yaml``/``.yml``.

    ``ws_path`` is where the router is served (the socket channel's address);
    the other options go to :func:`wskit.core.asyncapi.asyncapi_document`. The
    document is built on the first request, once the router is complete, and
    reused afterwards.
    """
    yaml = path.endswith((".yaml", ".yml"))
    content_type = "application/yaml" if yaml else "application/json"
    cached: list[bytes] = []

    async def asyncapi(request: web.Request) -> web.Response:
        if not cached:
            document = asyncapi_document(
                router,
                title=title,
                version=version,
                description=description,
                path=ws_path,
                servers=servers,
            )
            text = to_yaml(document) if yaml else to_json(document)
            cached.append(text.encode("utf-8"))
        return web.Response(body=cached[0], content_type=content_type, charset="utf-8")

    app.router.add_get(path, asyncapi)
