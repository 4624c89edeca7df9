"""add_asyncapi_route: the router's AsyncAPI document over real HTTP."""

from __future__ import annotations

import json

import aiohttp

from wskit.aiohttp import add_asyncapi_route, create_app
from wskit.aiohttp.testing import loopback_server
from wskit.core.asyncapi import asyncapi_document, to_yaml
from wskit.pydantic import create_router, message, with_pydantic

Ping = message("PING", text=str)


async def test_document_served_as_json_and_yaml() -> None:
    router = create_router().plugin(with_pydantic())
    app = create_app(router, path="/ws")
    add_asyncapi_route(app, router, ws_path="/ws", title="Pings", version="2.0.0")
    add_asyncapi_route(app, router, path="/api.yaml", ws_path="/ws", title="Pings")
    # Routes added after the app was built are in the document: it is built on request.
    router.on(Ping, lambda ctx: None)
    async with loopback_server(app, path="/ws") as server, aiohttp.ClientSession() as session:
        async with session.get(server.http_url + "/asyncapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            document = json.loads(await response.text())
        async with session.get(server.http_url + "/api.yaml") as response:
            assert response.status == 200
            assert response.content_type == "application/yaml"
            assert response.charset == "utf-8"
            text = await response.text()
        # The WebSocket still works beside it.
        async with session.ws_connect(server.url) as ws:
            await ws.send_str('{"type": "PING", "payload": {"text": 1}}')
            error = json.loads((await ws.receive()).data)
            assert error["payload"]["code"] == "INVALID_ARGUMENT"
    assert document["info"] == {
        "title": "Pings",
        "version": "2.0.0",
        "description": document["info"]["description"],
    }
    assert document["channels"]["socket"]["address"] == "/ws"
    assert "receive_PING" in document["operations"]
    assert text == to_yaml(asyncapi_document(router, title="Pings", path="/ws"))
