"""Handshake: authenticate, tokens, subprotocols, origins, connection limits."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from wskit.aiohttp import token_from_request

WHO = '{"type": "WHO_AM_I", "meta": {"correlationId": "w"}}'


def _auth(request: web.Request) -> dict[str, str] | None:
    token, _protocol = token_from_request(request)
    return {"user_id": f"user-{token}"} if token in ("t1", "t2") else None


async def _status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url, **kwargs)
    return info.value.status


async def test_authenticate_none_is_401_before_the_upgrade(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router, authenticate=_auth)
    assert await _status(session, server.url) == 401
    assert await _status(session, server.url + "?access_token=wrong") == 401
    assert app.opened == []


async def test_query_token_accepted_and_data_reaches_handlers(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router, authenticate=_auth)
    async with session.ws_connect(server.url + "?access_token=t1") as ws:
        assert ws.protocol is None
        await ws.send_str(WHO)
        assert await recv(ws) == {
            "type": "YOU_ARE",
            "meta": {"correlationId": "w"},
            "payload": {"userId": "user-t1"},
        }


async def test_bearer_subprotocol_is_echoed(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    async def auth(request: web.Request) -> dict[str, str] | None:  # async works too
        return _auth(request)

    server = await start(app.router, authenticate=auth)
    async with session.ws_connect(server.url, protocols=("bearer.t2",)) as ws:
        assert ws.protocol == "bearer.t2"
        await ws.send_str(WHO)
        assert (await recv(ws))["payload"] == {"userId": "user-t2"}


async def test_application_subprotocol_preferred_over_bearer(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router, authenticate=_auth, protocols=["wskit.v1"])
    async with session.ws_connect(server.url, protocols=("wskit.v1", "bearer.t1")) as ws:
        assert ws.protocol == "wskit.v1"


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


@pytest.mark.parametrize(
    ("allowed", "origin", "status"),
    [
        (None, "http://evil.example", 403),
        (None, "null", 403),
        (["https://app.example"], "https://app.example", 101),
        (["https://app.example/"], "HTTPS://APP.EXAMPLE", 101),
        (["https://app.example"], "https://other.example", 403),
        (["*"], "http://evil.example", 101),
    ],
)
async def test_foreign_origins_are_refused(
    app: Any,
    start: Any,
    session: aiohttp.ClientSession,
    allowed: Any,
    origin: str,
    status: int,
) -> None:
    server = await start(app.router, allowed_origins=allowed)
    if status == 101:
        async with session.ws_connect(server.url, origin=origin) as ws:
            assert not ws.closed
    else:
        assert await _status(session, server.url, origin=origin) == status


async def test_same_origin_and_no_origin_pass(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url, origin=server.http_url) as ws:
        assert not ws.closed
    async with session.ws_connect(server.url) as ws:  # no Origin: not a browser
        assert not ws.closed


async def test_max_connections_is_503(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router, max_connections=2)
    async with session.ws_connect(server.url), session.ws_connect(server.url):
        assert await _status(session, server.url) == 503


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
