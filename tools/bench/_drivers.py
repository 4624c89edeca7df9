"""In-process drivers shared by the benchmarks: they push frames through a
router's real connection and collect the replies, without a network, and count
what arrives (:class:`Sink`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class ListTransport:
    """A transport that appends every outbound frame to a list and calls
    ``done()`` once ``expected`` frames arrived (or the connection closed)."""

    def __init__(self, out: list[str], done: Callable[[], None]) -> None:
        self.out = out
        self.done = done
        self.expected = 0

    async def send(self, frame: str) -> None:
        self.out.append(frame)
        if len(self.out) >= self.expected:
            self.done()

    async def ping(self) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        self.done()  # never wait forever on a connection the server closed


def _check(conn: Any, frames: list[str], out: list[str]) -> None:
    if len(out) != len(frames):
        raise RuntimeError(f"expected {len(frames)} frames, got {len(out)} (closed: {conn.closed})")


async def pipelined(router: Any, frames: list[str], out: list[str]) -> None:
    """All frames handed over at once; the N replies collected through the pump."""
    conn = router.connect()
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    transport = ListTransport(out, lambda: finished.done() or finished.set_result(None))
    transport.expected = len(frames)
    pump = loop.create_task(conn.pump(transport))
    await conn.open()
    for raw in frames:
        conn.receive(raw)
    await finished
    await conn.handle_close(1000, "")
    await pump
    _check(conn, frames, out)


async def one_at_a_time_pumped(router: Any, frames: list[str], out: list[str]) -> None:
    """One frame, wait for its reply through the pump, repeat."""
    conn = router.connect()
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {}
    transport = ListTransport(out, lambda: state["f"].done() or state["f"].set_result(None))
    pump = loop.create_task(conn.pump(transport))
    await conn.open()
    for raw in frames:
        state["f"] = loop.create_future()
        transport.expected = len(out) + 1
        conn.receive(raw)
        await state["f"]
    await conn.handle_close(1000, "")
    await pump
    _check(conn, frames, out)


async def one_at_a_time_sans_io(router: Any, frames: list[str], out: list[str]) -> None:
    """The sans-I/O driver: hand one frame over, wait until the router is idle,
    take the reply off the outbound FIFO (what an adapter's pump does)."""
    conn = router.connect()
    await conn.open()
    for raw in frames:
        conn.receive(raw)
        if not conn.is_idle():
            await conn.wait_idle()
        while (frame := conn.pop_outbound()) is not None:
            out.append(frame)
    await conn.handle_close(1000, "")
    _check(conn, frames, out)


async def one_at_a_time_yielding(router: Any, frames: list[str], out: list[str]) -> None:
    """As :func:`one_at_a_time_sans_io`, but the driver yields to the event loop
    (``asyncio.sleep(0)``) until the router is idle instead of ``wait_idle()``: the
    least a task switch per message can cost (one loop iteration where the worker
    task does not start eagerly), without ``asyncio.wait()``'s futures and its extra
    iterations."""
    conn = router.connect()
    await conn.open()
    for raw in frames:
        conn.receive(raw)
        while not conn.is_idle():
            await asyncio.sleep(0)
        while (frame := conn.pop_outbound()) is not None:
            out.append(frame)
    await conn.handle_close(1000, "")
    _check(conn, frames, out)


def best_of(fn: Callable[[], Any], rounds: int) -> float:
    """Best wall time of ``rounds`` calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class Sink:
    """Counts hand-offs (``hit()``); ``await until(n)`` returns once the n-th
    arrived, and gives up after ``deadline_s`` seconds."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.count = 0
        self.last_at = 0.0
        self._target = 0
        self._event = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        self.last_at = time.perf_counter()
        if self.count >= self._target:
            self._event.set()

    async def until(self, n: int) -> None:
        if self.count >= n:
            return
        self._target = n
        self._event.clear()
        await asyncio.wait_for(self._event.wait(), self.deadline_s)
