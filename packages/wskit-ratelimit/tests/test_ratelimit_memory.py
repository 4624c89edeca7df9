"""The in-memory token bucket, rule by rule, on an injected clock: a new key starts full,
refill is floor(elapsed * rate) capped at capacity, the refill time advances only when tokens
are added, a refused call takes nothing."""

from __future__ import annotations

import asyncio

import pytest

from wskit.core.testing import FakeClock
from wskit.ratelimit import (
    Decision,
    MemoryRateLimiter,
    RateLimiter,
    RateLimitPolicy,
    memory_rate_limiter,
)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(capacity: int = 5, rate: float = 2.0, **kw: object) -> tuple[MemoryRateLimiter, Clock]:
    clock = Clock(1_000_000.0)
    return memory_rate_limiter(capacity=capacity, tokens_per_second=rate, clock=clock, **kw), clock  # type: ignore[arg-type]


async def test_reference_vector() -> None:
    limiter, _ = make(5, 2)
    assert await limiter.consume("k", 5) == Decision(True, 0)
    assert await limiter.consume("k", 3) == Decision(False, 0, 1500)


async def test_new_key_starts_full_and_keys_are_independent() -> None:
    limiter, _ = make(3, 1)
    assert [await limiter.consume("a") for _ in range(4)] == [
        Decision(True, 2),
        Decision(True, 1),
        Decision(True, 0),
        Decision(False, 0, 1000),
    ]
    assert await limiter.consume("b") == Decision(True, 2)


async def test_refill_is_whole_tokens_and_capped_at_capacity() -> None:
    limiter, clock = make(5, 2)
    await limiter.consume("k", 5)
    clock.now += 499  # < one token (500 ms)
    assert await limiter.consume("k") == Decision(False, 0, 500)
    clock.now += 1  # 500 ms since the drain: one token
    assert await limiter.consume("k") == Decision(True, 0)
    clock.now += 60_000
    assert await limiter.consume("k", 0) == Decision(True, 5)


async def test_sub_token_time_accumulates_across_polls() -> None:
    # The original's Redis script reset last_refill on every call, so polling
    # faster than one token interval starved the bucket forever. Ours does not.
    limiter, clock = make(1, 1)  # one token per 1000 ms
    assert (await limiter.consume("k")).allowed
    for _ in range(9):
        clock.now += 100
        assert not (await limiter.consume("k")).allowed
    clock.now += 100  # 1000 ms after the drain
    assert await limiter.consume("k") == Decision(True, 0)


async def test_remainder_is_dropped_when_a_token_is_added() -> None:
    limiter, clock = make(10, 1)
    await limiter.consume("k", 10)
    clock.now += 1_900  # 1 token added, 900 ms dropped
    assert await limiter.consume("k", 0) == Decision(True, 1)
    clock.now += 100  # only 100 ms since the refill
    assert await limiter.consume("k", 2) == Decision(False, 1, 1000)


async def test_blocked_call_takes_nothing_but_keeps_the_refill() -> None:
    limiter, clock = make(4, 1)
    await limiter.consume("k", 4)
    clock.now += 2_000
    assert await limiter.consume("k", 3) == Decision(False, 2, 1000)
    assert await limiter.consume("k", 2) == Decision(True, 0)


async def test_cost_above_capacity_has_no_retry() -> None:
    limiter, _ = make(5, 2)
    assert await limiter.consume("k", 6) == Decision(False, 5, None)
    assert await limiter.consume("k", 5) == Decision(True, 0)


async def test_fractional_rate_retry_rounds_up() -> None:
    limiter, _ = make(2, 0.3)
    await limiter.consume("k", 2)
    assert await limiter.consume("k") == Decision(False, 0, 3334)  # ceil(1 / 0.3 * 1000)


async def test_clock_going_backwards_is_clamped() -> None:
    limiter, clock = make(2, 1)
    await limiter.consume("k", 2)
    clock.now -= 10_000
    assert await limiter.consume("k") == Decision(False, 0, 1000)


async def test_prefix_namespaces_buckets_and_reset() -> None:
    clock = Clock()
    a = memory_rate_limiter(capacity=1, tokens_per_second=1, prefix="a:", clock=clock)
    assert a.policy == RateLimitPolicy(1, 1.0, "a:")
    assert (await a.consume("k")).allowed
    assert not (await a.consume("k")).allowed
    a.reset("k")
    assert (await a.consume("k")).allowed
    a.reset()
    assert len(a) == 0


async def test_decisions_report_the_clock_reading() -> None:
    limiter, clock = make()
    d = await limiter.consume("k")
    assert d.at_ms == clock.now
    assert d == Decision(True, 4, None, at_ms=-1)  # at_ms is not part of equality


async def test_concurrent_calls_are_decided_in_call_order() -> None:
    limiter, _ = make(3, 1)
    results = await asyncio.gather(*(limiter.consume("k") for _ in range(5)))
    assert [d.remaining for d in results] == [2, 1, 0, 0, 0]
    assert [d.allowed for d in results] == [True, True, True, False, False]


async def test_fake_clock_drives_refill() -> None:
    fake = FakeClock()
    limiter = memory_rate_limiter(capacity=1, tokens_per_second=10, clock=fake.now)
    assert (await limiter.consume("k")).allowed
    assert await limiter.consume("k") == Decision(False, 0, 100)
    await fake.advance(100)
    assert (await limiter.consume("k")).allowed


async def test_prune_drops_only_buckets_a_fresh_one_reproduces() -> None:
    limiter, clock = make(2, 1)
    await limiter.consume("idle", 1)
    await limiter.consume("busy", 2)
    clock.now += 1_000  # idle: back to full with a token added; busy: 1 of 2
    assert limiter.prune() == 1
    assert len(limiter) == 1
    assert await limiter.consume("busy", 0) == Decision(True, 1)


async def test_sweep_keeps_memory_bounded() -> None:
    limiter, clock = make(1, 1000)
    for i in range(5000):
        clock.now += 1
        await limiter.consume(f"k{i}")
    assert len(limiter) < 2048


@pytest.mark.parametrize("cost", [-1, 1.5, "1", True, None])
async def test_invalid_cost_raises(cost: object) -> None:
    limiter, _ = make()
    with pytest.raises(ValueError, match="non-negative integer"):
        await limiter.consume("k", cost)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("capacity", "rate", "message"),
    [
        (0, 1, "capacity must be >= 1"),
        (1.5, 1, "capacity must be >= 1"),
        (True, 1, "capacity must be >= 1"),
        (1, 0, "tokens_per_second must be > 0"),
        (1, -1, "tokens_per_second must be > 0"),
        (1, float("inf"), "tokens_per_second must be > 0"),
        (1, float("nan"), "tokens_per_second must be > 0"),
    ],
)
def test_bad_policy_is_rejected(capacity: object, rate: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryRateLimiter(capacity=capacity, tokens_per_second=rate)  # type: ignore[arg-type]


def test_memory_limiter_satisfies_the_protocol() -> None:
    limiter, _ = make()
    assert isinstance(limiter, RateLimiter)
    assert "capacity=5" in repr(limiter)
