"""wskit-asgi beyond the conformance suite: mounting in Starlette and FastAPI, the
lifespan, serve(), plain HTTP requests, the request view, option checks, logs."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

from wskit.asgi import AsgiRequest, WebSocketApp, create_asgi_app, serve_async, token_from_request
from wskit.asgi.server import QueryRedactingFilter
from wskit.asgi.testing import loopback_server
from wskit.core.conformance import (
    TIMEOUT,
    HandshakeRefused,
    SuiteApp,
    WebSocketProbe,
    upgrade_status,
)

PING = '{"type": "PING", "payload": {"text": "hi"}}'
PONG = {"type": "PONG", "meta": {}, "payload": {"reply": "hi"}}


async def _http(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


# ------------------------------------------------------------------ mounting


@pytest.mark.parametrize("how", ["websocket_route", "mount"])
async def test_mounted_in_starlette_next_to_http_routes(how: str) -> None:
    app = SuiteApp()
    ws_app = create_asgi_app(app.router)

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    # A Mount at /ws serves /ws/ and the paths below it; a WebSocketRoute, /ws exactly.
    if how == "websocket_route":
        route: Any = WebSocketRoute("/ws", ws_app)
        path = "/ws"
    else:
        route, path = Mount("/ws", ws_app), "/ws/"
    starlette = Starlette(routes=[Route("/hello", hello), route], lifespan=ws_app.lifespan)
    async with loopback_server(starlette) as server:
        assert await _http(server.port, "/hello") == (200, "hello")
        probe = await WebSocketProbe.connect(f"ws://127.0.0.1:{server.port}{path}")
        await probe.send_text(PING)
        assert await probe.recv_json() == PONG
        # Plain uvicorn shutdown: its lifespan shutdown runs after uvicorn closed the
        # WebSocket itself (1012); on_close still runs once.
        stopping = asyncio.ensure_future(server.server.shutdown())
        close = await probe.recv_close()
        await stopping
        await probe.close()
    assert close.code == 1012
    await app.all_closed()
    assert [code for _, code, _ in app.closed] == [1012]


async def test_fastapi_with_websocket_apps_closes_with_1001_first() -> None:
    app = SuiteApp()
    ws_app = create_asgi_app(app.router)
    api = FastAPI(lifespan=ws_app.lifespan)

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    api.router.add_websocket_route("/ws", ws_app)
    async with loopback_server(api, websocket_apps=[ws_app]) as server:
        assert await _http(server.port, "/health") == (200, '{"status":"ok"}')
        probe = await WebSocketProbe.connect(f"ws://127.0.0.1:{server.port}/ws")
        await probe.send_text(PING)
        assert await probe.recv_json() == PONG
        stopping = asyncio.ensure_future(server.shutdown())
        close = await probe.recv_close()
        await stopping
        await probe.close()
    assert (close.code, close.reason) == (1001, "Server shutting down")
    assert [code for _, code, _ in app.closed] == [1001]


async def test_lifespan_shutdown_of_the_app_itself() -> None:
    app = SuiteApp()
    ws_app = create_asgi_app(app.router)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await ws_app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert ws_app.shutting_down


# ---------------------------------------------------------------- HTTP side


async def test_plain_http_requests_get_400_and_hosts_are_checked_first() -> None:
    ws_app = create_asgi_app(SuiteApp().router, allowed_hosts=["app.example"])
    async with loopback_server(ws_app) as server:
        assert await _http(server.port, "/", "app.example") == (400, "Expected WebSocket")
        assert await _http(server.port, "/", "evil.example") == (400, "Host not allowed")


async def test_serve_on_loopback_answers_only_loopback_names() -> None:
    ws_app = create_asgi_app(SuiteApp().router)
    stop = asyncio.Event()
    ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    serving = serve_async(
        ws_app, port=0, path="/ws", stop=stop, on_ready=ready.set_result, log_config=None
    )
    task = asyncio.ensure_future(serving)
    try:
        [url] = await asyncio.wait_for(ready, TIMEOUT)
        port = url.rsplit(":", 1)[1].split("/")[0]
        assert await upgrade_status(url, headers={"Host": f"attacker.example:{port}"}) == 400
        assert await upgrade_status(url, headers={"Host": f"localhost:{port}"}) == 101
        assert ws_app.allowed_hosts == ("localhost", "127.0.0.1", "::1")
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


# ------------------------------------------------------------- handshake


async def test_authenticate_sees_the_request_and_may_be_async() -> None:
    app = SuiteApp()
    seen: list[AsgiRequest] = []

    async def authenticate(request: AsgiRequest) -> dict[str, str] | None:
        seen.append(request)
        token, _ = token_from_request(request)
        return {"user_id": request.cookies.get("name", "?")} if token == "t" else None

    ws_app = create_asgi_app(app.router, authenticate=authenticate)
    async with loopback_server(ws_app, path="/ws") as server:
        probe = await WebSocketProbe.connect(
            server.url + "?access_token=t&x=1&x=2",
            headers={"Cookie": "name=ada", "X-Extra": "a"},
        )
        await probe.send_text('{"type": "WHO_AM_I", "meta": {"correlationId": "w"}}')
        assert (await probe.recv_json())["payload"] == {"userId": "ada"}
        client_id = probe.headers["x-client-id"]
        await probe.close()
    [request] = seen
    assert request.path == "/ws"
    assert request.query == {"access_token": "t", "x": "1"}
    assert request.headers["x-extra"] == request.headers["X-EXTRA"] == "a"
    assert request.host == f"127.0.0.1:{server.port}"
    assert request.client is not None and request.client[0] == "127.0.0.1"
    assert request.scope["type"] == "websocket"
    assert app.opened == [client_id]


async def test_authenticate_raising_is_500_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def authenticate(request: AsgiRequest) -> Any:
        raise RuntimeError("db down")

    ws_app = create_asgi_app(SuiteApp().router, authenticate=authenticate)
    async with loopback_server(ws_app, path="/ws") as server:
        with (
            caplog.at_level(logging.ERROR, logger="wskit.asgi"),
            pytest.raises(HandshakeRefused) as info,
        ):
            await WebSocketProbe.connect(server.url)
    assert info.value.status == 500
    assert b"db down" not in info.value.body
    assert "authenticate() failed" in caplog.text


async def test_a_peer_that_never_reads_is_dropped_after_send_timeout() -> None:
    app = SuiteApp()
    closed = asyncio.Event()
    ws_app = create_asgi_app(
        app.router,
        max_buffered_bytes=64 * 1024,
        overflow="drop",
        send_timeout=0.2,
        on_close=lambda conn: closed.set(),
    )
    async with loopback_server(ws_app, path="/ws") as server:
        probe = await WebSocketProbe.connect(server.url)
        await probe.send_text('{"type": "TRICKLE", "payload": {"count": 1000000, "size": 1000}}')
        await asyncio.wait_for(closed.wait(), TIMEOUT)
        assert ws_app.connections == []
        await probe.dispose()
    [(_, code, _)] = app.closed
    assert code == 1006


def test_query_strings_are_redacted_from_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws?access_token=secret"),
        None,
    )
    assert QueryRedactingFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws" [accepted]'


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("max_connections", 0, "max_connections must be a positive int or None, got 0"),
        ("max_message_bytes", True, "max_message_bytes must be a positive int or None"),
        ("max_buffered_bytes", 1e6, "got 1000000.0"),
        ("overflow", "explode", "overflow must be 'close', 'drop' or None, got 'explode'"),
        ("close_timeout", math.inf, "close_timeout must be a positive number of seconds"),
        ("send_timeout", -1, "send_timeout must be a positive number of seconds or None"),
        ("shutdown_timeout", "10", "got '10'"),
        ("allowed_origins", "https://app.example", "allowed_origins must be a list of strings"),
        ("allowed_origins", ["null"], "invalid entry 'null': browsers send 'null'"),
        ("allowed_hosts", ["*.example.com"], "use '.example.com'"),
        ("allowed_hosts", [], "allowed_hosts: empty list"),
        ("protocols", "wskit.v1", "protocols must be a list of strings, got 'wskit.v1'"),
    ],
)
def test_bad_option_values_raise_at_construction(option: str, value: Any, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        create_asgi_app(SuiteApp().router, **{option: value})
    assert expected in str(info.value)
    assert option in str(info.value)


def test_defaults_come_from_the_router() -> None:
    app = SuiteApp(max_message_bytes=2048)
    ws_app: WebSocketApp[Any] = create_asgi_app(app.router)
    assert ws_app.max_message_bytes == 2048
    assert ws_app.allowed_hosts is None
    assert ws_app.reserved_connections == 0


async def test_mounted_in_litestar_as_an_asgi_route_handler() -> None:
    # The form docs/asgi.md shows: an `asgi` route handler mounted at /ws, and the
    # WebSocketApp's lifespan in Litestar's lifespan list.
    from litestar import Litestar, asgi, get

    app = SuiteApp()
    ws_app = create_asgi_app(app.router)

    @asgi("/ws", is_mount=True, copy_scope=True)
    async def chat(scope: Any, receive: Any, send: Any) -> None:
        await ws_app(scope, receive, send)

    @get("/hello", sync_to_thread=False)
    def hello() -> str:
        return "hello"

    litestar = Litestar(route_handlers=[chat, hello], lifespan=[ws_app.lifespan])
    async with loopback_server(litestar) as server:
        assert await _http(server.port, "/hello") == (200, "hello")
        probe = await WebSocketProbe.connect(f"ws://127.0.0.1:{server.port}/ws")
        await probe.send_text(PING)
        assert await probe.recv_json() == PONG
        await probe.send_text('{"type": "NOPE"}')
        reply = await probe.recv_json()
        assert reply["payload"]["code"] == "UNIMPLEMENTED"
        stopping = asyncio.ensure_future(server.server.shutdown())
        close = await probe.recv_close()
        await stopping
        await probe.close()
    await app.all_closed()
    assert [code for _, code, _ in app.closed] == [close.code]
