"""Backpressure details of the aiohttp adapter beyond the conformance suite: the
socket's own write buffer, the send watchdog, the direct write path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from wskit.pydantic import message

Trickle = message("TRICKLE", count=int, size=int)
Chunk = message("CHUNK", i=int, data=str)

LIMIT = 64 * 1024


async def test_slow_consumer_is_bounded_then_closed_with_1013(
    app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    server = await start(app.router, max_buffered_bytes=LIMIT)
    samples: list[tuple[int, int]] = []
    finished = asyncio.Event()

    @app.router.on(Trickle)
    async def trickle(ctx: Any) -> None:
        # A producer that yields between sends, so the socket drains what it can.
        data = "x" * ctx.payload.size
        try:
            for i in range(ctx.payload.count):
                if ctx.connection.close_requested is not None:
                    break
                ctx.send(Chunk, {"i": i, "data": data})
                conn = ctx.connection
                samples.append((conn.buffered_bytes, server.handler.pending_bytes(conn)))
                await asyncio.sleep(0)
        finally:
            finished.set()

    count, size = 100_000, 1000  # 100 MB: far more than the kernel's socket buffers
    async with session.ws_connect(server.url) as ws:
        await ws.send_str(
            json.dumps({"type": "TRICKLE", "payload": {"count": count, "size": size}})
        )
        # The client reads nothing until the server gave up on it.
        await wait_for(app.overflowed.wait())
        await wait_for(finished.wait())
        assert len(samples) < count
        # The FIFO never exceeds max_buffered_bytes; FIFO + the socket's user-space
        # write buffer (bounded by aiohttp's flow control, a few 64 KiB windows)
        # stays far below the 100 MB the handler tried to send.
        assert max(fifo for fifo, _ in samples) <= LIMIT
        assert max(total for _, total in samples) <= LIMIT + 512 * 1024
        # Now read: whatever was in flight, in order, then close 1013.
        received = 0
        while True:
            msg = await wait_for(ws.receive())
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            assert json.loads(msg.data)["payload"]["i"] == received
            received += 1
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1013
        assert 0 < received < count
    await server.stop()
    assert [code for _, code, _ in app.closed] == [1013]


async def test_peer_that_never_reads_is_dropped_after_send_timeout(
    app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    closed = asyncio.Event()
    server = await start(
        app.router,
        max_buffered_bytes=LIMIT,
        overflow="drop",
        send_timeout=0.2,
        on_close=lambda conn: closed.set(),
    )

    @app.router.on(Trickle)
    async def trickle(ctx: Any) -> None:
        data = "x" * ctx.payload.size
        for i in range(ctx.payload.count):
            if ctx.connection.state != "open":
                break
            ctx.send(Chunk, {"i": i, "data": data})
            await asyncio.sleep(0)

    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "TRICKLE", "payload": {"count": 1000000, "size": 1000}}')
        await wait_for(closed.wait())
        assert server.handler.connections == []
        del ws
    [(_, code, _)] = app.closed
    assert code == 1006


async def test_direct_sends_use_aiohttp_sync_writer(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    # The direct path (core send_nowait) relies on aiohttp writer internals; if an
    # aiohttp upgrade removes them it silently falls back to driving send_str. This
    # test notices, so the fallback is a decision, not an accident.
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "PING", "payload": {"text": "direct"}}')
        assert await recv(ws) == {"type": "PONG", "meta": {}, "payload": {"reply": "direct"}}
        (session_state,) = server.handler._sessions.values()
        assert session_state.transport._writer not in (None, False)


async def _until(condition: Any) -> None:
    """Poll ``condition()`` every millisecond (callers bound it with wait_for)."""
    while not condition():
        await asyncio.sleep(0.001)
