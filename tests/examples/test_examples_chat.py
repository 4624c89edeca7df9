"""Smoke test of the demo (``hatch run demo:chat``): start ``python -m examples.chat``,
fetch the page, chat between two clients, stream the history, stop with SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
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


def _join(room: str, cid: str) -> str:
    return json.dumps({"type": "JOIN", "meta": {"correlationId": cid}, "payload": {"room": room}})


def _joined(room: str, cid: str) -> dict[str, Any]:
    return {"type": "JOINED", "meta": {"correlationId": cid}, "payload": {"room": room}}


def _say(text: str) -> str:
    return json.dumps({"type": "SAY", "payload": {"room": "lobby", "text": text}})


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
        # A refused name: the socket opens, then closes with 4401 and a reason a page can show.
        refused = await session.ws_connect(ws_url + "?name=not%20valid!")
        closing = await _recv(refused)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4401)
        assert closing.extra == "Names are 1-24 of A-Z a-z 0-9 _ -: 'not valid!' is not one"
        await refused.close()

        alice = await session.ws_connect(ws_url + "?name=alice")
        assert await _recv(alice) == {"type": "WELCOME", "meta": {}, "payload": {"user": "alice"}}
        await alice.send_str(_join("lobby", "j1"))
        assert await _recv(alice) == _notice("alice joined")
        assert await _recv(alice) == _joined("lobby", "j1")

        # A room name the server does not accept is refused as typed, never renamed.
        await alice.send_str(_join("Lobby", "j2"))
        assert await _recv(alice) == {
            "type": "RPC_ERROR",
            "meta": {"correlationId": "j2"},
            "payload": {
                "code": "INVALID_ARGUMENT",
                "message": "Room names are 1-32 of a-z 0-9 _ - (lower case): 'Lobby'",
            },
        }

        bob = await session.ws_connect(ws_url + "?name=bob")
        assert await _recv(bob) == {"type": "WELCOME", "meta": {}, "payload": {"user": "bob"}}
        await bob.send_str(_join("lobby", "j3"))
        assert await _recv(bob) == _notice("bob joined")
        assert await _recv(bob) == _joined("lobby", "j3")
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


async def test_bot_answers_in_the_room() -> None:
    """The wskit-client participant (examples/chat/bot.py) joins, answers commands, and
    reads the history RPC with its progress chunks."""
    from examples.chat.app import make_app
    from examples.chat.bot import run
    from wskit.aiohttp.testing import loopback_server

    async with loopback_server(make_app(), path="/ws") as server:
        stop = asyncio.Event()
        bot = asyncio.create_task(run(server.url, "lobby", "bot", stop))
        try:
            async with aiohttp.ClientSession() as session:
                ada = await session.ws_connect(server.url + "?name=ada")
                assert (await _recv(ada))["type"] == "WELCOME"
                await ada.send_str(_join("lobby", "j1"))
                assert await _recv(ada) == _notice("ada joined")
                assert await _recv(ada) == _joined("lobby", "j1")

                async def said_by_bot() -> str:
                    for _ in range(100):  # skip notices and ada's own lines
                        frame = await _recv(ada)
                        if frame["type"] == "MESSAGE" and frame["payload"]["user"] == "bot":
                            return str(frame["payload"]["text"])
                    raise AssertionError("the bot said nothing")

                # The bot may have joined before or after ada: wait for its greeting.
                assert (await said_by_bot()).startswith("hello #lobby, commands: !help")
                for i in range(25):
                    await ada.send_str(_say(f"m{i}"))
                await ada.send_str(_say("!echo hi there"))
                assert await said_by_bot() == "ada said: hi there"
                await ada.send_str(_say("!count"))
                assert await said_by_bot() == "27 messages since I joined"
                await ada.send_str(_say("!history"))
                assert await said_by_bot() == "#lobby has 31 lines of history (2 chunks)"
                await ada.close()
        finally:
            stop.set()
            await asyncio.wait_for(bot, TIMEOUT)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "examples.chat", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"wskit chat demo: port {port} on 127.0.0.1 is already in use (another demo still "
        "running?): stop it, or pass --port with another number (--port 0 picks a free one)\n"
    )
