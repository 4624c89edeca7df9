"""Smoke test of the FastAPI example: start ``python -m examples.fastapi_chat``, fetch
the page and an HTTP route, chat between two browser-like clients (same-origin
``Origin``), refuse a bad name with 401, stop with SIGINT (every client gets 1001)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0  # safety net only


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    return json.loads(msg.data) if msg.type is aiohttp.WSMsgType.TEXT else msg


def _join(cid: str) -> str:
    frame = {"type": "JOIN", "meta": {"correlationId": cid}, "payload": {"room": "lobby"}}
    return json.dumps(frame)


def _joined(cid: str) -> dict[str, Any]:
    return {"type": "JOINED", "meta": {"correlationId": cid}, "payload": {"room": "lobby"}}


def _notice(text: str) -> dict[str, Any]:
    return {"type": "NOTICE", "meta": {}, "payload": {"room": "lobby", "text": text}}


@pytest.fixture
async def example() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.fastapi_chat",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        assert line.startswith("wskit FastAPI chat: open http://127.0.0.1:"), line
        yield proc, line.split()[4]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_fastapi_example_serves_the_chat_next_to_http_routes(
    example: tuple[asyncio.subprocess.Process, str],
) -> None:
    proc, page = example
    origin = page.rstrip("/")
    ws_url = page.replace("http://", "ws://") + "ws"
    async with aiohttp.ClientSession() as session:
        async with session.get(page) as response:
            assert response.status == 200
            assert "<title>wskit chat</title>" in await response.text()
        async with session.get(page + "health") as response:
            assert await response.json() == {"status": "ok", "connections": 0}
        # A refused name: the socket opens, then closes with 4401 and a reason a page can show.
        refused = await session.ws_connect(ws_url + "?name=not%20valid!", origin=origin)
        closing = await _recv(refused)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4401)
        assert closing.extra == "Names are 1-24 of A-Z a-z 0-9 _ -: 'not valid!' is not one"
        await refused.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
            await session.ws_connect(ws_url + "?name=eve", origin="http://evil.example")
        assert foreign.value.status == 403

        alice = await session.ws_connect(ws_url + "?name=alice", origin=origin)
        assert await _recv(alice) == {"type": "WELCOME", "meta": {}, "payload": {"user": "alice"}}
        await alice.send_str(_join("j1"))
        assert await _recv(alice) == _notice("alice joined")
        assert await _recv(alice) == _joined("j1")
        bob = await session.ws_connect(ws_url, origin=origin)  # no name: a guest
        welcome = await _recv(bob)
        assert welcome["payload"]["user"].startswith("guest-")
        await bob.send_str(_join("j2"))
        assert await _recv(bob) == _notice(f"{welcome['payload']['user']} joined")
        assert await _recv(bob) == _joined("j2")
        assert (await _recv(alice))["type"] == "NOTICE"
        async with session.get(page + "health") as response:
            assert await response.json() == {"status": "ok", "connections": 2}

        await alice.send_str('{"type": "SAY", "payload": {"room": "lobby", "text": "hi"}}')
        for ws in (alice, bob):
            frame = await _recv(ws)
            assert frame["type"] == "MESSAGE"
            assert frame["payload"]["text"] == "hi"
        await bob.send_str(
            '{"type": "HISTORY", "meta": {"correlationId": "h1"}, "payload": {"room": "lobby"}}'
        )
        last = await _recv(bob)
        assert last["type"] == "HISTORY_CHUNK"
        assert [x["text"] for x in last["payload"]["lines"]] == ["hi"]

        # Ctrl+C: every client gets 1001 before uvicorn stops, the process exits cleanly.
        proc.send_signal(signal.SIGINT)
        for ws in (alice, bob):
            closing = await _recv(ws)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)
            await ws.close()
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
