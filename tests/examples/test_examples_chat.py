"""Smoke test of the demo (``hatch run demo``): start ``python -m examples.chat``,
fetch the page, chat between two clients, stream the history, stop with SIGINT."""

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


def _notice(text: str) -> dict[str, Any]:
    return {"type": "NOTICE", "meta": {}, "payload": {"room": "lobby", "text": text}}


@pytest.fixture
async def demo() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.chat",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        assert line.startswith("wskit chat demo: open http://127.0.0.1:")
        yield proc, line.split()[4]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_chat_between_two_clients(
    demo: tuple[asyncio.subprocess.Process, str],
) -> None:
    proc, page = demo
    ws_url = page.replace("http://", "ws://") + "ws"
    async with aiohttp.ClientSession() as session:
        async with session.get(page) as response:
            assert response.status == 200
            assert "<title>wskit chat</title>" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url + "?name=not%20valid!")
        assert refused.value.status == 401

        alice = await session.ws_connect(ws_url + "?name=alice")
        assert await _recv(alice) == {"type": "WELCOME", "meta": {}, "payload": {"user": "alice"}}
        await alice.send_str('{"type": "JOIN", "payload": {"room": "lobby"}}')
        assert await _recv(alice) == _notice("alice joined")

        bob = await session.ws_connect(ws_url + "?name=bob")
        assert await _recv(bob) == {"type": "WELCOME", "meta": {}, "payload": {"user": "bob"}}
        await bob.send_str('{"type": "JOIN", "payload": {"room": "lobby"}}')
        assert await _recv(bob) == _notice("bob joined")
        assert await _recv(alice) == _notice("bob joined")

        for i in range(25):
            await alice.send_str(
                json.dumps({"type": "SAY", "payload": {"room": "lobby", "text": f"m{i}"}})
            )
        for ws in (alice, bob):
            for i in range(25):
                frame = await _recv(ws)
                assert frame["type"] == "MESSAGE"
                ts = frame["payload"].pop("ts")
                assert isinstance(ts, int)
                assert frame["payload"] == {"room": "lobby", "user": "alice", "text": f"m{i}"}

        # History: an RPC whose progress frames stream the room's lines.
        await bob.send_str(
            '{"type": "HISTORY", "meta": {"correlationId": "h1"}, "payload": {"room": "lobby"}}'
        )
        first = await _recv(bob)
        last = await _recv(bob)
        assert first["type"] == "$ws:rpc-progress"
        assert first["meta"] == {"correlationId": "h1"}
        assert [x["text"] for x in first["payload"]["lines"]] == [f"m{i}" for i in range(20)]
        assert first["payload"]["done"] is False
        assert last["type"] == "HISTORY_CHUNK"
        assert last["meta"] == {"correlationId": "h1"}
        assert [x["text"] for x in last["payload"]["lines"]] == [f"m{i}" for i in range(20, 25)]
        assert last["payload"]["done"] is True

        await bob.close()
        assert await _recv(alice) == _notice("bob left")

        # Ctrl+C: every client gets 1001, the server exits cleanly.
        proc.send_signal(signal.SIGINT)
        closing = await _recv(alice)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        await alice.close()
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
