"""Smoke test of the live feed example (``python -m examples.live_feed``): a
publishing server and a serving server on a private Redis, the example's
follower printing JSON lines. The serving server is SIGKILLed and restarted on
the same port (the follower recovers: every tick once, in order), then Redis
is SIGKILLed and restarted without persistence (the follower is told "gap",
reloads a snapshot, and goes on)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wskit.redis.testing import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0  # safety net only


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.live_feed",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )


async def first_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()


class Follower:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        for _ in range(1_000_000):  # bounded by the test's length
            line = await self.proc.stdout.readline()
            if not line:
                return
            self.events.append(json.loads(line))
            self._changed.set()

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not within {TIMEOUT}s: {what}; events: {self.events[-5:]}"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                continue

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.of("tick")]


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGINT) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def test_the_feed_survives_server_and_redis_restarts(redis_server: RedisServer) -> None:
    serving_port = free_port()
    common = ("--redis", redis_server.url, "--every-ms", "50")
    publisher = await spawn("serve", "--port", str(free_port()), "--publish", *common)
    serving = await spawn("serve", "--port", str(serving_port), *common)
    procs = [publisher, serving]
    try:
        assert (await first_line(publisher)).startswith("live feed server: ws://127.0.0.1:")
        assert (await first_line(serving)).startswith("live feed server: ws://")
        follower = Follower(await spawn("follow", f"ws://127.0.0.1:{serving_port}/ws", "--json"))
        procs.append(follower.proc)
        await follower.until(lambda: len(follower.of("tick")) >= 10, "ticks")
        assert follower.of("status")[0]["status"] == "subscribed"

        # The serving server dies and comes back: the follower recovers.
        serving.kill()
        await serving.wait()
        before = len(follower.of("tick"))
        serving = await spawn("serve", "--port", str(serving_port), *common)
        procs.append(serving)
        await first_line(serving)
        await follower.until(lambda: len(follower.of("status")) == 2, "recovered")
        await follower.until(lambda: len(follower.of("tick")) >= before + 10, "ticks again")
        assert follower.of("status")[1]["status"] == "recovered"
        seqs = follower.seqs()
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a tick missed or repeated"

        # Redis dies and comes back empty: a gap in a new epoch, then a snapshot.
        await redis_server.kill()
        await redis_server.start()
        await follower.until(lambda: len(follower.of("snapshot")) == 1, "gap and snapshot")
        gap = follower.of("status")[2]
        assert (gap["status"], gap["reason"]) == ("gap", "epoch")
        ticks_then = len(follower.of("tick"))
        await follower.until(lambda: len(follower.of("tick")) >= ticks_then + 5, "ticks after")
        after = [e for e in follower.events[follower.events.index(gap) :] if e["event"] == "tick"]
        assert all(e["epoch"] == gap["epoch"] for e in after)
        around = json.dumps(follower.events[follower.events.index(gap) - 3 :][:8])
        assert [e["offset"] for e in after] == list(range(1, len(after) + 1)), around
        first = after[0]["seq"]
        assert [e["seq"] for e in after] == list(range(first, first + len(after))), around
    finally:
        for proc in procs:
            await stop(proc)


pytestmark = pytest.mark.timeout(90)
