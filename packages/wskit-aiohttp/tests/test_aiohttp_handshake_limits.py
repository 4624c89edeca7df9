"""Connection slots: ``max_connections`` counts upgrades that are still authenticating."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

#: Safety net only: the waits below are for events and results.
TIMEOUT = 5.0


async def _connect(
    session: aiohttp.ClientSession, url: str
) -> int | aiohttp.ClientWebSocketResponse:
    """The open socket, or the HTTP status of the refusal."""
    try:
        return await session.ws_connect(url)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def _until(condition: Any, what: str) -> None:
    """Poll ``condition()`` (a cheap, synchronous check) until true, at most TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_slot_is_reserved_before_a_slow_authenticate(
    app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    gate = asyncio.Event()
    entered: list[str] = []
    second_entered = asyncio.Event()

    async def authenticate(request: web.Request) -> dict[str, str]:
        entered.append(request.query["n"])
        if len(entered) == 2:
            second_entered.set()
        await gate.wait()
        return {}

    server = await start(app.router, authenticate=authenticate, max_connections=1)
    attempts = [asyncio.ensure_future(_connect(session, f"{server.url}?n={n}")) for n in range(3)]
    refusals = asyncio.ensure_future(_two_done(attempts))
    # Without a reservation, all three requests pass the limit check and wait in
    # authenticate together; with it, two are refused while the first waits.
    done, _ = await asyncio.wait(
        {refusals, asyncio.ensure_future(second_entered.wait())},
        timeout=TIMEOUT,
        return_when=asyncio.FIRST_COMPLETED,
    )
    assert refusals in done, f"{len(entered)} upgrades authenticating at once with a limit of 1"
    assert len(entered) == 1
    assert server.handler.reserved_connections == 1
    assert sorted(a.result() for a in attempts if a.done()) == [503, 503]

    gate.set()
    results = await wait_for(asyncio.gather(*attempts))
    [ws] = [r for r in results if not isinstance(r, int)]
    assert [r for r in results if isinstance(r, int)] == [503, 503]
    assert len(server.handler.connections) == 1
    # Still full while that one is open.
    assert await _connect(session, server.url + "?n=late") == 503

    await ws.close()
    await _until(lambda: server.handler.reserved_connections == 0, "the slot to be released")
    again = await _connect(session, server.url + "?n=again")
    assert not isinstance(again, int)
    await again.close()
    assert entered == [entered[0], "again"]


async def _two_done(attempts: list[asyncio.Future[Any]]) -> None:
    pending = set(attempts)
    while len(attempts) - len(pending) < 2:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


@pytest.mark.parametrize("outcome", ["refused", "raises", "shutdown"])
async def test_slot_is_released_on_every_refusal(
    app: Any, start: Any, session: aiohttp.ClientSession, outcome: str
) -> None:
    gate = asyncio.Event()
    waiting = asyncio.Event()

    async def authenticate(request: web.Request) -> dict[str, str] | None:
        if request.query.get("ok"):
            return {}
        waiting.set()
        await gate.wait()
        if outcome == "raises":
            raise RuntimeError("auth backend down")
        return None if outcome == "refused" else {}

    server = await start(app.router, authenticate=authenticate, max_connections=1)
    attempt = asyncio.ensure_future(_connect(session, server.url))
    await asyncio.wait_for(waiting.wait(), TIMEOUT)
    assert server.handler.reserved_connections == 1
    if outcome == "shutdown":
        # Shutdown begins while authenticate runs: the upgrade is refused after it.
        await asyncio.wait_for(server.handler.shutdown(), TIMEOUT)
        gate.set()
        assert await asyncio.wait_for(attempt, TIMEOUT) == 503
        assert server.handler.reserved_connections == 0
        return
    gate.set()
    assert await asyncio.wait_for(attempt, TIMEOUT) == (401 if outcome == "refused" else 500)
    assert server.handler.reserved_connections == 0
    ws = await _connect(session, server.url + "?ok=1")
    assert not isinstance(ws, int)
    await ws.close()


async def test_connection_count_stays_within_the_limit_under_a_burst(
    app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    peak = 0

    async def authenticate(request: web.Request) -> dict[str, str]:
        nonlocal peak
        peak = max(peak, server.handler.reserved_connections)
        await asyncio.sleep(0)  # let the other upgrades interleave
        return {}

    server = await start(app.router, authenticate=authenticate, max_connections=3)
    results = await wait_for(asyncio.gather(*(_connect(session, server.url) for _ in range(12))))
    sockets = [r for r in results if not isinstance(r, int)]
    assert len(sockets) == 3
    assert [r for r in results if isinstance(r, int)] == [503] * 9
    assert peak <= 3
    for ws in sockets:
        await ws.close()
