"""Backoff formula, jitter and the reconnect schedule driven by an injected clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.client import Client, ReconnectOptions, RetryPolicy, backoff_delay, is_retryable
from wskit.core.errors import RpcError
from wskit.core.testing import FakeClock


def test_default_caps_match_ws_kit() -> None:
    opts = ReconnectOptions(jitter="none")
    assert [opts.delay_ms(n, lambda: 0.0) for n in range(1, 9)] == [
        300,
        600,
        1200,
        2400,
        4800,
        9600,
        10_000,
        10_000,
    ]
    assert opts.delay_ms(5000, lambda: 0.0) == 10_000  # no overflow for huge attempts


def test_full_jitter_is_floor_random_times_cap_plus_one() -> None:
    def delay(n: int, r: float) -> float:
        return backoff_delay(
            n, initial_delay_ms=300, max_delay_ms=10_000, jitter="full", random=lambda: r
        )

    assert delay(1, 0.0) == 0
    assert delay(1, 0.5) == 150  # floor(0.5 * 301)
    assert delay(1, 0.999999) == 300  # the cap itself is reachable
    assert delay(3, 0.25) == 300  # floor(0.25 * 1201)
    assert delay(10, 0.5) == 5000  # floor(0.5 * 10001)
    with pytest.raises(ValueError):
        delay(0, 0.5)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ReconnectOptions(jitter="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ReconnectOptions(max_attempts=-1)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retryability_inference() -> None:
    assert is_retryable(RpcError("UNAVAILABLE"))
    assert is_retryable(RpcError("DEADLINE_EXCEEDED"))
    assert not is_retryable(RpcError("NOT_FOUND"))
    assert not is_retryable(RpcError("INTERNAL"))
    assert is_retryable(RpcError("INTERNAL"), retry_internal=True)
    assert not is_retryable(RpcError("CUSTOM"))
    assert is_retryable(RpcError("CUSTOM", retryable=True))
    assert not is_retryable(RpcError("UNAVAILABLE", retryable=False))
    assert not is_retryable(ValueError())
    policy = RetryPolicy(max_attempts=3, initial_delay_ms=100, jitter="none")
    assert policy.next_delay_ms(RpcError("UNAVAILABLE"), 1, lambda: 0.0) == 100
    assert policy.next_delay_ms(RpcError("UNAVAILABLE"), 2, lambda: 0.0) == 200
    assert policy.next_delay_ms(RpcError("UNAVAILABLE"), 3, lambda: 0.0) is None
    assert policy.next_delay_ms(RpcError("ABORTED", retry_after_ms=7), 1, lambda: 0.0) == 7
    too_long = RpcError("UNAVAILABLE", retry_after_ms=120_000)
    assert policy.next_delay_ms(too_long, 1, lambda: 0.0) is None


async def test_reconnect_schedule_with_fake_clock(server: Any, record_states: Any) -> None:
    clock = FakeClock(0)
    client = Client(server.url, clock=clock, random=lambda: 0.5, request_timeout_ms=None)
    rec = record_states(client)
    await client.connect()
    await server.stop()
    await rec.reached("reconnecting")

    def next_due() -> float:
        timers = clock.pending_timers()
        assert len(timers) == 1
        return timers[0].due - clock.now()

    # attempt 1: floor(0.5 * 301); the refused attempts then double the cap.
    assert next_due() == 150
    for expected in (300, 600, 1200):
        await clock.advance(next_due())
        await rec.reached("connecting")
        await rec.reached("reconnecting")  # refused: the server is down
        assert next_due() == expected
    await server.start()
    await clock.advance(next_due())
    await rec.reached("open")
    # A successful open resets the counter: the next drop starts at attempt 1 again.
    await server.stop()
    await rec.reached("reconnecting")
    assert next_due() == 150
    await client.close()
    assert clock.pending_timers() == []
    assert client.state == "closed"


async def test_close_cancels_a_pending_reconnect(server: Any, record_states: Any) -> None:
    clock = FakeClock(0)
    client = Client(server.url, clock=clock, random=lambda: 0.0)
    rec = record_states(client)
    await client.connect()
    await server.stop()
    await rec.reached("reconnecting")
    await asyncio.wait_for(client.close(), 10)
    assert rec.states[-2:] == ["closing", "closed"]
    assert clock.pending_timers() == []
