"""redis_rate_limiter on a real Redis: the §6.2 rule, EVALSHA/NOSCRIPT, TTL, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from wskit.core import any_object, create_router, define_message
from wskit.core.testing import Harness
from wskit.ratelimit import Decision, RateLimiter, rate_limit
from wskit.redis import redis_rate_limiter
from wskit.redis.ratelimit import default_ttl_ms
from wskit.redis.testing import RedisServer


async def settle(h: Harness[Any], conn: Any) -> None:
    # The handlers await a real Redis, which harness.flush() does not wait for.
    await conn.connection.wait_idle()
    await h.flush()


async def test_reference_vector(redis_client: redis.Redis) -> None:
    limiter = redis_rate_limiter(redis_client, capacity=5, tokens_per_second=2)
    assert isinstance(limiter, RateLimiter)
    assert await limiter.consume("k", 5) == Decision(True, 0)
    assert await limiter.consume("k", 3) == Decision(False, 0, 1500)


async def test_cost_above_capacity_and_zero_cost(redis_client: redis.Redis) -> None:
    limiter = redis_rate_limiter(redis_client, capacity=5, tokens_per_second=0.001)
    assert await limiter.consume("k", 6) == Decision(False, 5, None)
    assert await limiter.consume("k", 0) == Decision(True, 5)
    assert await limiter.consume("k", 2) == Decision(True, 3)


async def test_state_ttl_and_prefix(redis_client: redis.Redis) -> None:
    limiter = redis_rate_limiter(redis_client, capacity=3, tokens_per_second=1, prefix="rl:")
    d = await limiter.consume("user", 1)
    assert d == Decision(True, 2)
    assert d.at_ms is not None
    state = await redis_client.hgetall("rl:user")
    assert state == {b"tokens": b"2", b"last_ms": str(int(d.at_ms)).encode()}
    assert 0 < await redis_client.pttl("rl:user") <= 60_000
    assert limiter.ttl_ms == default_ttl_ms(3, 1.0) == 60_000
    assert default_ttl_ms(100, 0.5) == 400_000
    await limiter.reset("user")
    assert await redis_client.exists("rl:user") == 0


async def test_noscript_reloads_once_then_retries(redis_client: redis.Redis) -> None:
    limiter = redis_rate_limiter(redis_client, capacity=100, tokens_per_second=1)
    assert (await limiter.consume("a")).allowed
    assert limiter.script_loads == 1  # first call: NOSCRIPT, load, retry
    assert (await limiter.consume("a")).allowed
    assert limiter.script_loads == 1
    await redis_client.script_flush()
    results = await asyncio.gather(*(limiter.consume("a") for _ in range(20)))
    # Concurrent calls reach Redis in any order; each one is atomic.
    assert sorted(d.remaining for d in results) == list(range(78, 98))
    assert limiter.script_loads == 2  # 20 concurrent NOSCRIPTs shared one load


async def test_buckets_survive_a_new_limiter_instance(redis_client: redis.Redis) -> None:
    one = redis_rate_limiter(redis_client, capacity=2, tokens_per_second=0.001)
    two = redis_rate_limiter(redis_client, capacity=2, tokens_per_second=0.001)
    assert (await one.consume("shared")).allowed
    assert await two.consume("shared") == Decision(True, 0)
    assert (await one.consume("shared")).allowed is False


@pytest.mark.parametrize("cost", [-1, 1.5, True])
async def test_invalid_cost_raises_before_redis(redis_client: redis.Redis, cost: Any) -> None:
    limiter = redis_rate_limiter(redis_client, capacity=2, tokens_per_second=1)
    with pytest.raises(ValueError, match="non-negative integer"):
        await limiter.consume("k", cost)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"capacity": 0, "tokens_per_second": 1}, "capacity"),
        ({"capacity": 1, "tokens_per_second": 0}, "tokens_per_second"),
        ({"capacity": 1, "tokens_per_second": 1, "ttl_ms": 0}, "ttl_ms"),
    ],
)
def test_bad_options(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        redis_rate_limiter(redis.Redis(), **kw)


async def test_redis_down_raises_and_middleware_answers_internal(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    limiter = redis_rate_limiter(client, capacity=1, tokens_per_second=1)
    Ping = define_message("PING", any_object())
    router = create_router()
    router.use(rate_limit(limiter=limiter))

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(Ping, {})

    try:
        await redis_server.kill()
        with pytest.raises(RedisConnectionError):
            await limiter.consume("k")
        async with Harness(router) as h:
            conn = await h.connect({"user_id": "u"})
            conn.send(Ping, {})
            await settle(h, conn)
            assert conn.error_codes == ["INTERNAL"]
            assert [r.code for r in h.take_reported()] == [None]
    finally:
        await client.aclose()


async def test_shared_limit_through_the_middleware(redis_client: redis.Redis) -> None:
    limiter = redis_rate_limiter(redis_client, capacity=2, tokens_per_second=0.001)
    Ping = define_message("PING", any_object())
    routers = []
    for _ in range(2):  # two "instances", one Redis
        router = create_router()
        router.use(rate_limit(limiter=limiter))

        async def ping(ctx: Any) -> None:
            ctx.send(Ping, {"ok": True})

        router.on(Ping, ping)
        routers.append(router)
    async with Harness(routers[0]) as h1, Harness(routers[1]) as h2:
        a = await h1.connect({"user_id": "u1"})
        b = await h2.connect({"user_id": "u1"})
        a.send(Ping, {})
        await settle(h1, a)
        b.send(Ping, {})
        b.send(Ping, {})
        await settle(h2, b)
        assert a.error_codes == []
        assert b.payloads(Ping) == [{"ok": True}]
        assert b.errors[0]["code"] == "RESOURCE_EXHAUSTED"
        assert b.errors[0]["details"] == {"cost": 1, "capacity": 2, "remaining": 0}
        assert b.errors[0]["retryAfterMs"] == 1_000_000
