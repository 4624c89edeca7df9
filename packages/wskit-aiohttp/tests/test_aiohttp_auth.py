"""Handshake details of the aiohttp adapter beyond the conformance suite: failing
``authenticate``, plain HTTP requests, the client id header, the access log."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from wskit.aiohttp import token_from_request


def _auth(request: web.Request) -> dict[str, str] | None:
    token, _protocol = token_from_request(request)
    return {"user_id": f"user-{token}"} if token in ("t1", "t2") else None


async def _status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url, **kwargs)
    return info.value.status


async def test_authenticate_raising_is_500_without_details(
    app: Any, start: Any, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    def auth(request: web.Request) -> Any:
        raise RuntimeError("db down")

    server = await start(app.router, authenticate=auth)
    with caplog.at_level(logging.ERROR, logger="wskit.aiohttp"):
        assert await _status(session, server.url) == 500
    assert "authenticate() failed" in caplog.text


async def test_plain_http_request_is_400(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router)
    async with session.get(server.http_url + "/ws") as response:
        assert response.status == 400
        assert await response.text() == "Expected WebSocket"


async def test_client_id_header_matches_ctx_client_id(
    app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "__heartbeat"}')
        await wait_for(ws.receive())
        client_id = ws._response.headers["X-Client-Id"]
    assert app.opened == [client_id]


async def test_access_log_never_contains_the_token(
    app: Any, start: Any, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(app.router, authenticate=_auth)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with session.ws_connect(server.url + "?access_token=t1"):
            pass
        assert await _status(session, server.url + "?access_token=zzsecret") == 401
        await server.stop()
    assert '"GET /ws" 401' in caplog.text
    assert '"GET /ws" 101' in caplog.text
    assert "t1" not in caplog.text.replace("127.0.0.1", "")
    assert "zzsecret" not in caplog.text
