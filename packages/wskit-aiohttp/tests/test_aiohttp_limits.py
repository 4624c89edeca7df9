"""Backpressure details of the aiohttp adapter beyond the conformance suite: the
socket's own write buffer, the send watchdog, the direct write path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

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


async def test_frames_of_one_iteration_leave_in_one_write(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    # The progress update and the reply of an RPC are produced in one loop iteration;
    # they reach the socket in a single write, in order.
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "PING", "payload": {"text": "warm"}}')
        assert await recv(ws) == {"type": "PONG", "meta": {}, "payload": {"reply": "warm"}}
        (state,) = server.handler._sessions.values()
        socket = state.transport.socket
        writes: list[bytes] = []
        real_write = socket.write

        def spy(data: bytes) -> None:
            writes.append(bytes(data))
            real_write(data)

        socket.write = spy  # type: ignore[method-assign]
        try:
            await ws.send_str(
                '{"type": "GET_USER", "meta": {"correlationId": "c1"}, "payload": {"userId": "7"}}'
            )
            first, second = await recv(ws), await recv(ws)
        finally:
            socket.write = real_write  # type: ignore[method-assign]
        assert first["type"] == "$ws:rpc-progress"
        assert second == {
            "type": "USER_DATA",
            "meta": {"correlationId": "c1"},
            "payload": {"name": "user 7"},
        }
        assert len(writes) == 1
        # Data frames came straight from aiohttp's parser (no read-loop wake-up each).
        assert type(state.transport._ws._reader).__name__ == "FrameQueue"
        assert b"$ws:rpc-progress" in writes[0] and b"USER_DATA" in writes[0]
        assert writes[0].index(b"$ws:rpc-progress") < writes[0].index(b"USER_DATA")


Hold = message("HOLD")
Sink = message("SINK", i=int, data=str)


@pytest.mark.parametrize("direct", [True, False], ids=["direct-reads", "read-loop"])
async def test_both_read_paths_pause_on_a_full_inbound_queue(
    make_app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any, direct: bool
) -> None:
    app = make_app(max_inbound_messages=100)
    release = asyncio.Event()
    held = asyncio.Event()
    handled: list[int] = []

    @app.router.on(Hold)
    async def hold(ctx: Any) -> None:
        held.set()
        await release.wait()

    @app.router.on(Sink)
    async def sink(ctx: Any) -> None:
        handled.append(ctx.payload.i)

    server = await start(app.router)
    server.handler.direct_reads = direct
    count, data = 20_000, "y" * 1000  # 20 MB: more than the kernel's socket buffers hold
    async with session.ws_connect(server.url) as ws:
        await ws.send_str(json.dumps({"type": "HOLD"}))
        await wait_for(held.wait())
        (conn,) = server.handler.connections

        async def flood() -> None:
            for i in range(count):
                await ws.send_str(json.dumps({"type": "SINK", "payload": {"i": i, "data": data}}))

        sender = asyncio.create_task(flood())
        # The server queues up to its bound, then stops reading that socket.
        await wait_for(_until(lambda: conn.inbound_full))
        # The sender is slowed down by TCP: its own write buffer fills up and it waits.
        writer = ws._writer.transport
        await wait_for(_until(lambda: writer.get_write_buffer_size() > 64 * 1024))
        assert not sender.done()
        assert len(conn._inbox) == 100
        assert handled == []
        release.set()
        await wait_for(sender)
        await wait_for(_until(lambda: len(handled) == count))
        assert handled == list(range(count))
        assert conn._inbox_bytes == 0
        assert app.errors == []


async def _until(condition: Any) -> None:
    """Poll ``condition()`` every millisecond (callers bound it with wait_for)."""
    while not condition():
        await asyncio.sleep(0.001)


def test_fast_paths_hold_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    from wskit.aiohttp import create_app
    from wskit.aiohttp.testing import loopback_server
    from wskit.pydantic import create_router, rpc, with_pydantic

    Get = rpc("GET", {"n": int}, "GOT", {"n": int})
    router = create_router().plugin(with_pydantic())

    @router.rpc(Get)
    async def get(ctx: Any) -> None:
        ctx.progress({"n": 0})
        ctx.reply({"n": ctx.payload.n})

    async def scenario() -> None:
        app = create_app(router, path="/ws")
        async with (
            loopback_server(app, path="/ws") as server,
            aiohttp.ClientSession() as session,
            session.ws_connect(server.url) as ws,
        ):
            request = '{"type": "GET", "meta": {"correlationId": "c"}, "payload": {"n": 5}}'
            await ws.send_str(request)
            await asyncio.wait_for(ws.receive(), 5)
            assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["type"] == "GOT"
            (state,) = server.handler._sessions.values()
            # uvloop's transports are not asyncio.Transport subclasses: the direct
            # write path and the direct read path must still be in use.
            assert state.transport._socket is not None
            assert type(state.transport._ws._reader).__name__ == "FrameQueue"
            assert "uvloop" in type(asyncio.get_running_loop()).__module__

    uvloop.run(scenario())


class _RecordingSocket:
    """Stands in for the asyncio transport under an ``AiohttpTransport``."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class _Open:
    closed = False


class _Request:
    def __init__(self, transport: _RecordingSocket) -> None:
        self.transport = transport


async def test_collected_frames_are_written_once_per_iteration_in_order() -> None:
    from wskit.aiohttp._transport import AiohttpTransport, WriteCoalescer, text_frame

    sockets = [_RecordingSocket(), _RecordingSocket()]
    coalescer = WriteCoalescer()
    one, many = (
        AiohttpTransport(_Open(), _Request(s), send_timeout=None, coalescer=coalescer)  # type: ignore[arg-type]
        for s in sockets
    )
    shared = '{"type":"NEWS","meta":{}}'  # a fan-out: the same string to both
    assert one.send_nowait(shared)
    assert many.send_nowait(shared)
    assert many.send_nowait('{"type":"A"}')
    assert many.send_nowait('{"type":"B"}')
    assert one.collected_bytes == len(text_frame(shared))
    assert sockets[0].writes == [] and sockets[1].writes == []  # not before the iteration ends
    await asyncio.sleep(0)
    assert sockets[0].writes == [text_frame(shared)]
    assert sockets[1].writes == [
        text_frame(shared) + text_frame('{"type":"A"}') + text_frame('{"type":"B"}')
    ]
    assert one.collected_bytes == 0 and many.collected_bytes == 0
    # The next iteration's frames form a new write.
    assert one.send_nowait('{"type":"C"}')
    one.flush()  # (what the worker does after a batch)
    assert sockets[0].writes[1:] == [text_frame('{"type":"C"}')]
    await asyncio.sleep(0)
    assert len(sockets[0].writes) == 2


async def test_an_open_connection_holds_one_response_object(
    app: Any, start: Any, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    # The upgrade check builds a throwaway response; it must not stay alive (with its
    # headers and state) for as long as the connection is open.
    import gc

    from aiohttp import web

    def responses() -> int:
        gc.collect()
        return sum(isinstance(o, web.WebSocketResponse) for o in gc.get_objects())

    server = await start(app.router)
    before = responses()
    async with session.ws_connect(server.url) as ws:
        await ws.send_str(json.dumps({"type": "PING", "payload": {"text": "hi"}}))
        reply = json.loads((await wait_for(ws.receive())).data)
        assert reply["type"] == "PONG"
        assert responses() == before + 1
    await server.stop()
