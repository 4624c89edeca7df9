"""Connection mechanics without a validator package: outbound FIFO and
overflow policies, heartbeat, the pump/transport contract, the fake clock and
the pytest fixtures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.core import (
    ErrorInfo,
    HeartbeatOptions,
    Router,
    any_object,
    create_router,
    define_message,
    define_rpc,
)
from wskit.core._outbox import Outbox
from wskit.core.testing import FakeClock, Harness

Ping = define_message("PING", any_object())
Blob = define_message("BLOB", any_object())
Echo = define_rpc("ECHO", any_object(), "ECHOED", any_object())


def _router(**options: Any) -> Router[dict[str, Any]]:
    router = create_router(**options)

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        for _ in range(ctx.payload.get("n", 1)):
            ctx.send(Blob, {"data": ctx.payload.get("data", "")})

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        ctx.reply(ctx.payload)

    return router


class _StalledTransport:
    """A socket whose peer stopped reading: send never completes."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.blocked = asyncio.Event()

    async def send(self, frame: str) -> None:
        self.sent.append(frame)
        self.blocked.set()
        await asyncio.Event().wait()

    async def ping(self) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_raw_json_object_codec_without_validator_plugin() -> None:
    router = _router()
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {"data": "x", "n": 2})
        assert await conn.request(Echo, {"any": ["thing"]}) == {"any": ["thing"]}
        assert conn.payloads(Blob) == [{"data": "x"}, {"data": "x"}]
        conn.send(Ping, [1])
        await h.flush()
        assert conn.errors[-1]["details"] == {
            "issues": [{"path": ["payload"], "message": "Expected an object"}]
        }


async def test_overflow_close_policy_closes_1013_and_bounds_memory() -> None:
    router = _router(max_buffered_bytes=1000)
    conn = router.connect()
    transport = _StalledTransport()
    pump = asyncio.create_task(conn.pump(transport))
    assert await conn.open()
    conn.receive('{"type":"PING","payload":{"data":"' + "x" * 90 + '","n":5}}')
    await conn.wait_idle()
    await asyncio.wait_for(transport.blocked.wait(), 5)  # the pump took the first frame
    assert len(transport.sent) == 1
    # the pump is stuck writing the first frame; the next burst overflows the buffer
    conn.receive('{"type":"PING","payload":{"data":"' + "x" * 90 + '","n":5}}')
    await conn.wait_idle()
    await asyncio.wait_for(pump, 5)  # interrupted: the stuck write is abandoned
    assert len(transport.sent) == 1
    assert conn.close_requested == (1013, "Outbound buffer full")
    assert transport.closed == (1013, "Outbound buffer full")
    assert conn.buffered_bytes == 0
    await conn.handle_close(1013, "Outbound buffer full")


async def test_overflow_drop_policy_drops_and_tells_the_client_once() -> None:
    router = _router(max_buffered_bytes=1000, overflow="drop")
    reported: list[BaseException] = []
    router.observe(lambda e, i: reported.append(e))
    conn = router.connect()
    assert await conn.open()
    conn.receive('{"type":"PING","payload":{"data":"' + "x" * 90 + '","n":50}}')
    await conn.wait_idle()
    frames: list[Any] = []
    while (item := conn.pop_outbound()) is not None:
        frames.append(item)
    blobs = [f for f in frames if '"BLOB"' in f]
    errors = [f for f in frames if '"ERROR"' in f]
    assert 0 < len(blobs) < 50
    assert sum(len(f) for f in blobs) <= 1000
    assert errors == [
        '{"type":"ERROR","meta":{},"payload":{"code":"RESOURCE_EXHAUSTED",'
        '"message":"Outbound buffer full: messages dropped","retryAfterMs":100}}'
    ]
    assert frames[-1] == errors[0]
    assert conn.buffered_bytes == 0
    assert conn.close_requested is None
    # drained: the next burst is accepted again
    conn.receive('{"type":"PING","payload":{"data":"y","n":1}}')
    await conn.wait_idle()
    assert conn.pop_outbound() == '{"type":"BLOB","meta":{},"payload":{"data":"y"}}'
    await conn.handle_close(1000, "")


async def test_a_single_frame_larger_than_the_buffer_still_goes_out() -> None:
    router = _router(max_buffered_bytes=100)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {"data": "z" * 500})
        await h.flush()
        assert conn.payloads(Blob) == [{"data": "z" * 500}]
        assert conn.server_close is None


async def test_heartbeat_pings_idle_peers_and_closes_stale_ones() -> None:
    stale: list[str] = []
    router = _router()
    hb = HeartbeatOptions(
        interval_ms=1000, timeout_ms=300, on_stale=lambda c: stale.append(c.client_id)
    )
    async with Harness(router, heartbeat=hb) as h:
        alive = await h.connect()
        silent = await h.connect()
        silent.auto_pong = False
        await h.advance(999)
        assert (alive.pings, silent.pings) == (0, 0)
        await h.advance(1)
        assert (alive.pings, silent.pings) == (1, 1)
        await h.advance(299)
        assert silent.server_close is None
        await h.advance(1)
        assert silent.server_close == (1011, "Heartbeat timeout")
        assert stale == [silent.client_id]
        assert silent.closed and not alive.closed
        # traffic counts as liveness: no ping while the peer talks
        for _ in range(3):
            await h.advance(600)
            alive.send(Ping, {})
            await h.flush()
        assert alive.pings == 1
        await h.advance(2000)
        assert alive.pings == 2 and alive.server_close is None


async def test_pump_writes_frames_in_order_then_closes() -> None:
    router = _router()
    conn = router.connect(client_id="c-1")
    sent: list[Any] = []

    class Recorder:
        async def send(self, frame: str) -> None:
            sent.append(frame)

        async def ping(self) -> None:
            sent.append("PING")

        async def close(self, code: int, reason: str) -> None:
            sent.append((code, reason))

    pump = asyncio.create_task(conn.pump(Recorder()))
    assert await conn.open()
    assert conn.client_id == "c-1" and router.connections == {"c-1": conn}
    conn.receive('{"type":"PING","payload":{"data":"a","n":2}}')
    conn.receive('{"type":"__heartbeat"}')
    await conn.wait_idle()
    conn.request_close(4000, "done")
    conn.send_frame("ignored after close request")
    await asyncio.wait_for(pump, 5)
    # the heartbeat is answered as it arrives, possibly before the PING's replies
    acks = [f for f in sent if isinstance(f, str) and f.startswith('{"type":"__heartbeat_ack"')]
    assert len(acks) == 1
    assert [f for f in sent if f not in acks] == [
        '{"type":"BLOB","meta":{},"payload":{"data":"a"}}',
        '{"type":"BLOB","meta":{},"payload":{"data":"a"}}',
        (4000, "done"),
    ]
    await conn.handle_close(4000, "done")
    assert conn.closed and router.connections == {}


async def test_fake_clock_orders_timers_and_cancels() -> None:
    clock = FakeClock(start_ms=100)
    fired: list[str] = []
    clock.call_later(50, lambda: fired.append("b"))
    clock.call_later(10, lambda: fired.append("a"))
    clock.call_later(50, lambda: fired.append("c"))
    cancelled = clock.call_later(20, lambda: fired.append("never"))
    cancelled.cancel()
    assert [t.due for t in clock.pending_timers()] == [110, 150, 150]
    await clock.advance(49)
    assert fired == ["a"] and clock.now() == 149
    await clock.advance(1)
    assert fired == ["a", "b", "c"]
    with pytest.raises(ValueError):
        await clock.advance(-1)


async def test_error_observer_sees_info(wskit_harness: Any) -> None:
    router = _router()
    h = wskit_harness(router)
    conn = await h.connect()
    conn.send_raw("{bad")
    await h.flush()
    (reported,) = h.reported
    assert isinstance(reported.info, ErrorInfo)
    assert reported.info.client_id == conn.client_id
    assert reported.code == "INVALID_ARGUMENT"


async def test_pytest_fixture_harness_uses_the_fake_clock(
    wskit_harness: Any, fake_clock: FakeClock
) -> None:
    router = _router()
    h = wskit_harness(router)
    assert router.clock is fake_clock
    await fake_clock.advance(42)
    conn = await h.connect()
    seen: list[float] = []
    router.on(define_message("T"), lambda ctx: seen.append(ctx.received_at))
    conn.send("T")
    await h.flush()
    assert seen == [42]


async def test_harness_reports_leaked_timers() -> None:
    router = _router()
    h = Harness(router)
    assert h.clock is not None
    h.clock.call_later(10, lambda: None)
    with pytest.raises(AssertionError, match="timers leaked"):
        async with h:
            pass


async def test_handlers_run_in_a_task_of_their_own() -> None:
    # Handlers may rely on asyncio.current_task() (asyncio.timeout() does): it must
    # be the connection's worker, never the adapter's (here: the test's) task.
    router = create_router()
    seen: list[Any] = []
    router.on(define_message("T"), lambda ctx: seen.append(asyncio.current_task()))
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send("T")
        await h.flush()
        (task,) = seen
        assert isinstance(task, asyncio.Task)
        assert task is not asyncio.current_task()
        assert task.done()


# ------------------------------------------------ waiting for the FIFO to drain


def _outbox_with(*sizes: int) -> Outbox:
    out = Outbox(max_bytes=10_000)
    for size in sizes:
        assert out.push("x" * size)
    return out


async def test_outbox_room_waiters_resolve_exactly_when_pop_reaches_their_limit() -> None:
    out = _outbox_with(100, 100, 100, 100, 100)
    assert out.wait_room(500).done()  # already there
    at_300, at_100, at_0 = out.wait_room(300), out.wait_room(100), out.wait_room(0)
    out.push_ping()  # a ping in the FIFO holds no bytes
    expected = [(400, ()), (300, (at_300,)), (200, ()), (100, (at_100,)), (0, (at_0,))]
    pending = {at_300, at_100, at_0}
    for size, resolved in expected:
        assert out.pop() == "x" * 100
        assert out.buffered_bytes == size
        assert {f for f in pending if f.done()} == set(resolved)
        pending -= set(resolved)
    assert out.pop() is not None  # the ping
    assert out._room_waiters is None and out._room_limit == -1  # pop() is back to one compare


async def test_outbox_room_waiters_resolve_on_clear_close_and_release() -> None:
    out = _outbox_with(100, 100)
    cleared = out.wait_room(0)
    out.clear()
    assert cleared.done()

    out = _outbox_with(100, 100)
    closed = out.wait_room(0)
    out.close(1000, "", discard=False)  # the frames stay queued, but a close is queued
    assert closed.done() and out.buffered_bytes == 200
    assert out.wait_room(0).done()

    out = _outbox_with(100, 100)
    released = out.wait_room(50)
    out.release_waiters()
    assert released.done() and out.wait_room(50).done()


async def test_outbox_forgets_cancelled_room_waiters() -> None:
    out = _outbox_with(100, 100, 100)
    gone = out.wait_room(250)
    gone.cancel()
    kept = out.wait_room(100)  # registering drops the cancelled one
    assert out._room_waiters == [(100, kept)] and out._room_limit == 100
    out.pop()
    assert not kept.done()
    out.pop()
    assert kept.done()


async def test_wait_buffered_at_most_follows_the_pump_with_several_waiters() -> None:
    router = _router(max_buffered_bytes=10_000)
    router.clock = clock = FakeClock()
    conn = router.connect()
    assert await conn.open()
    frame = '{"type":"BLOB","meta":{},"payload":{"data":"' + "y" * 53 + '"}}'
    assert len(frame) == 100
    for _ in range(4):
        assert conn.send_frame(frame)
    assert await conn.wait_buffered_at_most(400)  # already so: no wait
    at_200 = asyncio.create_task(conn.wait_buffered_at_most(200))
    at_0 = asyncio.create_task(conn.wait_buffered_at_most(0, timeout_ms=1_000))
    timed = asyncio.create_task(conn.wait_buffered_at_most(0, timeout_ms=500))
    await asyncio.sleep(0)  # one loop turn: every waiter registers
    assert conn.pop_outbound() == frame
    await asyncio.sleep(0)
    assert not (at_200.done() or at_0.done() or timed.done())  # 300 bytes left
    await clock.advance(500)
    assert await timed is False
    assert conn.pop_outbound() == frame
    assert await at_200 is True
    assert not at_0.done()
    conn.pop_outbound()
    conn.pop_outbound()
    assert await at_0 is True
    assert clock.pending_timers() == []  # the timeout's timer was cancelled
    await conn.handle_close(1000, "")


async def test_wait_buffered_at_most_returns_false_once_the_connection_closes() -> None:
    router = _router(max_buffered_bytes=10_000)
    router.clock = FakeClock()
    conn = router.connect()
    assert await conn.open()
    for _ in range(3):
        assert conn.send_frame("z" * 100)
    on_request = asyncio.create_task(conn.wait_buffered_at_most(0))
    await asyncio.sleep(0)
    conn.request_close(1000, "bye")  # the frames before the close stay queued
    assert await on_request is False
    assert await conn.wait_buffered_at_most(0) is False

    # The peer went away: nothing drains the FIFO, yet a waiter returns during the
    # close (here a close hook awaits it) rather than when the FIFO is dropped.
    seen: list[bool] = []

    @router.on_close
    async def wait_in_hook(ctx: Any) -> None:
        seen.append(await on_disconnect)

    conn = router.connect()
    assert await conn.open()
    assert conn.send_frame("z" * 100)
    on_disconnect = asyncio.create_task(conn.wait_buffered_at_most(0))
    await asyncio.sleep(0)
    await conn.handle_close(1006, "")
    assert seen == [False]
    assert await conn.wait_buffered_at_most(0) is True  # closed: the FIFO was emptied
    with pytest.raises(ValueError):
        await conn.wait_buffered_at_most(-1)


def _gated_router(gate: asyncio.Event) -> Router[dict[str, Any]]:
    # eager_start=False: the worker is a task on every Python version.
    router = create_router(eager_start=False)

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        await gate.wait()
        ctx.send(Blob, {"data": "done"})

    return router


async def test_wait_idle_resumes_when_the_worker_ends() -> None:
    gate = asyncio.Event()
    conn = _gated_router(gate).connect()
    assert await conn.open()
    conn.receive('{"type":"PING","payload":{}}')
    waits = [asyncio.create_task(conn.wait_idle()) for _ in range(2)]
    await asyncio.sleep(0)  # both waiting on the worker
    assert not any(w.done() for w in waits)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*waits), 5)
    assert conn.is_idle()
    assert conn.pop_outbound() == '{"type":"BLOB","meta":{},"payload":{"data":"done"}}'
    assert conn._idle_waiters is None  # nothing left behind
    await conn.handle_close(1000, "")


async def test_a_cancelled_wait_idle_leaves_nothing_behind() -> None:
    gate = asyncio.Event()
    conn = _gated_router(gate).connect()
    assert await conn.open()
    conn.receive('{"type":"PING","payload":{}}')
    wait = asyncio.create_task(conn.wait_idle())
    await asyncio.sleep(0)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    assert not conn._idle_waiters
    gate.set()
    await asyncio.wait_for(conn.wait_idle(), 5)
    assert conn.is_idle()
    await conn.handle_close(1000, "")


async def test_wait_idle_returns_for_a_worker_cancelled_before_it_ran() -> None:
    # The worker never runs, so it cannot wake the wait itself: the task's end does.
    conn = _gated_router(asyncio.Event()).connect()
    assert await conn.open()
    conn.receive('{"type":"PING","payload":{}}')
    worker = conn._worker
    assert worker is not None
    worker.cancel()
    # Awaited here, not in a task of its own: it starts waiting before the worker's
    # first step, which then only ends the task (pytest-timeout catches a hang).
    await conn.wait_idle()
    assert worker.cancelled()
    assert not conn._idle_waiters
