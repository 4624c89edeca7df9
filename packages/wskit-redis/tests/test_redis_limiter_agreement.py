"""The Redis limiter and the memory limiter take the same decisions.

Two complementary designs (docs/decisions/0040-limiter-agreement-and-redis-adapter.md):

1. Replay: each step goes to Redis first; its decision carries the Redis ``TIME``
   reading the script used (``Decision.at_ms``); the memory limiter is then fed
   that exact reading through its injectable clock. Real sub-second timing
   varies from run to run, but both limiters see the same clock, so every
   decision must be equal — deterministic whatever the timing.
2. Timing-free: rates so low that no token can be added during the test, so the
   decisions are fixed in advance, compared step by step (including the §6.2
   vector) without relying on any clock.
"""

from __future__ import annotations

import random

import pytest
import redis.asyncio as redis

from wskit.ratelimit import Decision, memory_rate_limiter
from wskit.redis import redis_rate_limiter


class ReplayClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sequence(seed: int, steps: int, keys: int, max_cost: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"k{rng.randrange(keys)}", rng.randrange(max_cost + 1)) for _ in range(steps)]


async def replay(
    client: redis.Redis, capacity: int, rate: float, steps: list[tuple[str, int]], prefix: str
) -> list[Decision]:
    remote = redis_rate_limiter(client, capacity=capacity, tokens_per_second=rate, prefix=prefix)
    clock = ReplayClock()
    local = memory_rate_limiter(capacity=capacity, tokens_per_second=rate, clock=clock)
    decisions = []
    for i, (key, cost) in enumerate(steps):
        r = await remote.consume(key, cost)
        assert r.at_ms is not None
        clock.now = r.at_ms
        m = await local.consume(key, cost)
        assert (m.allowed, m.remaining, m.retry_after_ms) == (
            r.allowed,
            r.remaining,
            r.retry_after_ms,
        ), f"step {i} {key} cost={cost} at {r.at_ms}: redis={r} memory={m}"
        decisions.append(r)
    return decisions


@pytest.mark.parametrize(
    ("capacity", "rate", "seed"),
    [
        (5, 2.0, 1),  # the §6.2 policy
        (3, 1000.0, 2),  # one token per ms: refills between most steps
        (10, 250.0, 3),  # a token every 4 ms: sub-token polling in between
        (7, 0.3, 4),  # fractional rate: retry rounding
        (1, 50.0, 5),
        (20, 333.3, 6),
    ],
)
async def test_replayed_random_sequences_agree(
    redis_client: redis.Redis, capacity: int, rate: float, seed: int
) -> None:
    steps = sequence(seed, 400, keys=3, max_cost=capacity + 1)
    decisions = await replay(redis_client, capacity, rate, steps, prefix=f"agree:{seed}:")
    # The sequences exercise every branch.
    assert any(d.allowed for d in decisions)
    assert any(not d.allowed and d.retry_after_ms is not None for d in decisions)
    assert any(not d.allowed and d.retry_after_ms is None for d in decisions)


async def test_polling_faster_than_a_token_does_not_starve(redis_client: redis.Redis) -> None:
    # One token per 20 ms, polled back to back (far more often than every 20 ms):
    # the original Lua reset last_ms on every call and would refuse forever.
    capacity, rate = 1, 50.0
    remote = redis_rate_limiter(redis_client, capacity=capacity, tokens_per_second=rate)
    clock = ReplayClock()
    local = memory_rate_limiter(capacity=capacity, tokens_per_second=rate, clock=clock)
    first = await remote.consume("p")
    clock.now = first.at_ms or 0.0
    assert await local.consume("p") == first == Decision(True, 0)
    polls = 0
    while True:
        d = await remote.consume("p")
        clock.now = d.at_ms or 0.0
        assert await local.consume("p") == d
        polls += 1
        assert d.at_ms is not None and first.at_ms is not None
        if d.allowed:
            break
        assert d.at_ms - first.at_ms < 20, "refused after a full token interval: starved"
        assert polls < 100_000
    assert d.at_ms - first.at_ms >= 20
    assert polls > 1  # refused polls in between did not reset the refill


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_timing_free_sequences_agree(redis_client: redis.Redis, seed: int) -> None:
    # 1 token per 1000 s: no refill can happen during the test, so both limiters
    # are compared on the same sequence with no clock coupling at all.
    steps = sequence(seed, 300, keys=4, max_cost=9)
    remote = redis_rate_limiter(redis_client, capacity=8, tokens_per_second=0.001, prefix="tf:")
    local = memory_rate_limiter(capacity=8, tokens_per_second=0.001, clock=lambda: 0.0)
    for key, cost in steps:
        assert await remote.consume(key, cost) == await local.consume(key, cost)


async def test_reference_vector_on_both(redis_client: redis.Redis) -> None:
    remote = redis_rate_limiter(redis_client, capacity=5, tokens_per_second=2)
    local = memory_rate_limiter(capacity=5, tokens_per_second=2, clock=lambda: 0.0)
    expected = [Decision(True, 0), Decision(False, 0, 1500)]
    assert [await remote.consume("v", 5), await remote.consume("v", 3)] == expected
    assert [await local.consume("v", 5), await local.consume("v", 3)] == expected
