"""Host checks (DNS rebinding) over real sockets, with forged Host and Origin headers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wskit.aiohttp import create_app, serve_async

#: Safety net only: the waits below are for results and events.
TIMEOUT = 5.0


async def _status(
    session: aiohttp.ClientSession, url: str, host: str, origin: str | None = None
) -> int:
    """101 when the upgrade with this Host (and Origin) succeeds, else the HTTP status."""
    try:
        ws = await asyncio.wait_for(
            session.ws_connect(url, headers={"Host": host}, origin=origin), TIMEOUT
        )
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


@contextlib.asynccontextmanager
async def _serving(app: Any, host: str) -> AsyncIterator[str]:
    """Run ``serve_async(app, host=host, port=0)``; yield its URL; stop it after."""
    stop = asyncio.Event()
    ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(
        serve_async(app, host=host, port=0, path="/ws", stop=stop, on_ready=ready.set_result)
    )
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when="FIRST_COMPLETED")
        assert ready in done, "server did not start"
        yield ready.result()[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


# --------------------------------------------------------- allowed_hosts set


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("app.example", 101),
        ("APP.Example:8443", 101),  # case-insensitive, any port
        ("app.example.", 101),  # the absolute (trailing-dot) form of the same name
        ("evil.example", 400),
        ("app.example.evil.example", 400),
        ("example.org", 101),  # ".example.org": the domain itself ...
        ("chat.eu.example.org:443", 101),  # ... and every subdomain
        ("badexample.org", 400),
        ("127.0.0.1:9999", 101),
        ("127.0.0.2", 400),
        ("[::1]:3000", 101),
        ("[0:0:0:0:0:0:0:1]", 101),  # the same IPv6 address, spelled out
        ("::1", 400),  # an IPv6 Host must be bracketed
        ("[::2]", 400),
        ("app.example:port", 400),
        ("app.example:99999", 400),
        ("[app.example]", 400),
        ("app example", 400),
    ],
)
async def test_allowed_hosts_forms(
    app: Any, start: Any, session: aiohttp.ClientSession, host: str, status: int
) -> None:
    server = await start(
        app.router, allowed_hosts=["app.example", ".Example.org", "127.0.0.1", "[::1]"]
    )
    assert await _status(session, server.url, host) == status
    assert len(app.opened) == (1 if status == 101 else 0)


async def test_host_is_checked_before_anything_else(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router, allowed_hosts=["app.example"])
    # A plain GET (not an upgrade) with a foreign Host gets the Host answer,
    # not "Expected WebSocket": nothing else about the request is looked at.
    async with session.get(server.http_url + "/ws", headers={"Host": "evil.example"}) as response:
        assert response.status == 400
        assert await response.text() == "Host not allowed"
    async with session.get(server.http_url + "/ws", headers={"Host": "app.example"}) as response:
        assert (response.status, await response.text()) == (400, "Expected WebSocket")
    await server.handler.shutdown()
    assert await _status(session, server.url, "evil.example") == 400
    assert await _status(session, server.url, "app.example") == 503


async def test_dns_rebinding_is_refused_and_same_origin_needs_an_allowed_host(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router, allowed_hosts=["app.example"])
    # A rebinding page: the attacker's name in both Host and Origin ("same origin").
    assert await _status(session, server.url, "evil.example", "http://evil.example") == 400
    # The real page, same origin on an allowed host.
    assert await _status(session, server.url, "app.example", "https://app.example") == 101
    assert await _status(session, server.url, "app.example:8080", "http://app.example:8080") == 101
    # An allowed host, but another page's origin: the origin check still applies.
    assert await _status(session, server.url, "app.example", "https://evil.example") == 403
    assert await _status(session, server.url, "app.example:8080", "http://app.example:9090") == 403


async def test_star_accepts_any_host(app: Any, start: Any, session: aiohttp.ClientSession) -> None:
    server = await start(app.router, allowed_hosts=["*"])
    assert await _status(session, server.url, "anything.example") == 101


async def test_without_allowed_hosts_a_mounted_handler_checks_no_host(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    # create_app/create_handler without allowed_hosts: no Host restriction (the
    # app may run behind a proxy that rewrites it). serve() adds one on loopback.
    server = await start(app.router)
    assert await _status(session, server.url, "anything.example") == 101


# ----------------------------------------------- the loopback default of serve


async def test_loopback_bind_refuses_a_dns_rebinding_page(
    app: Any, session: aiohttp.ClientSession
) -> None:
    async with _serving(create_app(app.router, path="/ws"), "127.0.0.1") as url:
        port = _port(url)
        attacker = f"attacker.example:{port}"
        assert await _status(session, url, attacker, f"http://{attacker}") == 400
        for name in ("localhost", "LOCALHOST", "127.0.0.1", "[::1]"):
            host = f"{name}:{port}"
            assert await _status(session, url, host, f"http://{host}") == 101, host
        assert await _status(session, url, "localhost") == 101  # any port, or none
        assert await _status(session, url, "127.0.0.1:1") == 101


@pytest.mark.parametrize("bind", ["localhost", "::1"])
async def test_loopback_names_and_ipv6_binds(
    app: Any, session: aiohttp.ClientSession, bind: str
) -> None:
    if bind == "::1" and not _ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    async with _serving(create_app(app.router, path="/ws"), bind) as url:
        port = _port(url)
        assert await _status(session, url, f"attacker.example:{port}") == 400
        assert await _status(session, url, f"[::1]:{port}", f"http://[::1]:{port}") == 101
        assert await _status(session, url, f"localhost:{port}") == 101


async def test_configured_hosts_win_over_the_loopback_default(
    app: Any, session: aiohttp.ClientSession
) -> None:
    application = create_app(app.router, path="/ws", allowed_hosts=["app.example"])
    async with _serving(application, "127.0.0.1") as url:
        # Behind a proxy on the same machine that forwards the public Host.
        assert await _status(session, url, "app.example") == 101
        assert await _status(session, url, f"localhost:{_port(url)}") == 400
    opened = create_app(app.router, path="/ws", allowed_hosts=["*"])
    async with _serving(opened, "127.0.0.1") as url:
        assert await _status(session, url, "attacker.example") == 101


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
