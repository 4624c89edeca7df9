"""Graceful shutdown (app cleanup, SIGTERM/SIGINT) and the ``python -m`` runner."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wskit.aiohttp.__main__ import load_router

ROUTER_MODULE = textwrap.dedent(
    """
    from wskit.pydantic import create_router, message, with_pydantic

    Ping = message("PING", text=str)
    Pong = message("PONG", reply=str)

    router = create_router().plugin(with_pydantic())

    @router.on(Ping)
    async def ping(ctx):
        ctx.send(Pong, {"reply": ctx.payload.text})

    @router.on_close
    def closed(ctx):
        print(f"closed {ctx.code} {ctx.reason}", flush=True)

    def make_router():
        return router

    not_a_router = 42
    """
)


async def test_shutdown_closes_every_connection_with_1001(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any, wait_for: Any
) -> None:
    adapter_closed: list[str] = []
    server = await start(app.router, on_close=lambda conn: adapter_closed.append(conn.client_id))
    a = await session.ws_connect(server.url)
    b = await session.ws_connect(server.url)
    # a has an RPC in flight; b has a reply queued just before shutdown.
    await a.send_str('{"type": "SLOW", "meta": {"correlationId": "s"}, "payload": {"x": 1}}')
    await wait_for(app.slow_started.wait())
    await b.send_str('{"type": "PING", "payload": {"text": "last"}}')
    assert await recv(b) == {"type": "PONG", "meta": {}, "payload": {"reply": "last"}}

    stopping = asyncio.ensure_future(server.handler.shutdown())
    for ws in (a, b):
        msg = await recv(ws)
        assert (msg.type, msg.data, msg.extra) == (
            aiohttp.WSMsgType.CLOSE,
            1001,
            "Server shutting down",
        )
    await wait_for(stopping)
    # The in-flight RPC was cancelled (its handler saw it), not dropped silently.
    assert app.cancelled.is_set()
    # on_close ran exactly once per connection, router hook and adapter hook.
    assert sorted(cid for cid, _, _ in app.closed) == sorted(app.opened)
    assert [code for _, code, _ in app.closed] == [1001, 1001]
    assert sorted(adapter_closed) == sorted(app.opened)
    assert server.handler.connections == []
    # New upgrades are refused while shutting down.
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(server.url)
    assert info.value.status == 503
    await server.stop()  # app cleanup after handler shutdown: no second on_close
    assert len(app.closed) == 2
    await a.close()
    await b.close()


async def test_app_cleanup_closes_connections(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        stopping = asyncio.ensure_future(server.stop())
        msg = await recv(ws)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        await stopping
    assert [code for _, code, _ in app.closed] == [1001]


async def test_shutdown_aborts_peers_that_never_answer_the_close(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router, close_timeout=0.2, shutdown_timeout=0.2)
    # autoclose off and no reads: this client never answers the close frame.
    ws = await session.ws_connect(server.url, autoclose=False)
    await server.handler.shutdown()
    assert [code for _, code, _ in app.closed] == [1001]
    assert server.handler.connections == []
    await ws.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_runner_serves_and_shuts_down_on_signal(
    tmp_path: Path, session: aiohttp.ClientSession, recv: Any, wait_for: Any, sig: int
) -> None:
    (tmp_path / "chatmod.py").write_text(ROUTER_MODULE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wskit.aiohttp",
        "chatmod:router",
        "--port",
        "0",
        "--path",
        "/ws",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await wait_for(proc.stdout.readline())).decode()
        assert line.startswith("wskit: serving ws://127.0.0.1:")
        url = line.split()[2]
        async with session.ws_connect(url) as ws:
            await ws.send_str('{"type": "PING", "payload": {"text": "hi"}}')
            assert await recv(ws) == {"type": "PONG", "meta": {}, "payload": {"reply": "hi"}}
            proc.send_signal(sig)
            msg = await recv(ws)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE,
                1001,
                "Server shutting down",
            )
        assert await wait_for(proc.wait()) == 0
        rest = (await wait_for(proc.stdout.read())).decode()
        assert rest.splitlines() == ["closed 1001 Server shutting down"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_load_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "loadmod.py").write_text(ROUTER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    router = load_router("loadmod:router")
    assert load_router("loadmod:make_router") is router
    with pytest.raises(SystemExit, match="not a wskit Router"):
        load_router("loadmod:not_a_router")
    with pytest.raises(SystemExit, match="expected module:router"):
        load_router("loadmod")
