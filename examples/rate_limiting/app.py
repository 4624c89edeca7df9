"""Rate limiting, in memory or in Redis: each user may post 5 messages at once and 10 a
second after that; beyond it the server answers ``RESOURCE_EXHAUSTED`` with ``retryAfterMs``
and the handler does not run. With the Redis limiter, every server instance shares the same
buckets, so a user gets the same allowance whichever instance they reach."""

from __future__ import annotations

import asyncio
from typing import Any

from wskit.client import Client, RetryPolicy
from wskit.core import RpcError
from wskit.pydantic import create_router, rpc, with_pydantic
from wskit.ratelimit import RateLimiter, key_per_user, memory_rate_limiter, rate_limit

CAPACITY = 5
PER_SECOND = 10

Post = rpc("POST", {"text": str}, "POSTED", {"count": int})


def memory_limiter() -> RateLimiter:
    return memory_rate_limiter(capacity=CAPACITY, tokens_per_second=PER_SECOND)


def redis_limiter(client: Any) -> RateLimiter:
    """The same policy in Redis (``client`` is a ``redis.asyncio.Redis``; close it when done)."""
    from wskit.redis import redis_rate_limiter

    return redis_rate_limiter(client, capacity=CAPACITY, tokens_per_second=PER_SECOND)


def build_router(limiter: RateLimiter) -> Any:
    router = create_router().plugin(with_pydantic())
    router.use(rate_limit(limiter=limiter, key=key_per_user))  # one bucket per user
    counts: dict[str, int] = {}

    @router.rpc(Post)
    async def post(ctx: Any) -> None:
        user = ctx.data["user_id"]
        counts[user] = counts.get(user, 0) + 1
        ctx.reply({"count": counts[user]})

    return router


def authenticate(request: Any) -> dict[str, str]:
    return {"user_id": request.query.get("user", "anon")}


async def burst(client: Client, n: int) -> tuple[int, list[int]]:
    """Post ``n`` messages at once: (how many passed, the retryAfterMs of the refused)."""
    results = await asyncio.gather(
        *(client.request(Post, payload={"text": f"m{i}"}) for i in range(n)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, RpcError)]
    assert all(r.code == "RESOURCE_EXHAUSTED" for r in refused), refused
    return n - len(refused), [r.retry_after_ms for r in refused if r.retry_after_ms]


async def demo(url: str) -> list[str]:
    async with Client(url + "?user=ada") as client:
        passed, waits = await burst(client, 8)
        lines = [f"8 at once: {passed} passed, {len(waits)} refused with retryAfterMs"]
        patient = RetryPolicy(max_attempts=3)  # waits retryAfterMs, then tries again
        for i in range(8):  # one after the other: each waits only as long as it must
            await client.request(Post, payload={"text": f"n{i}"}, retry=patient)
        lines.append("8 more, one at a time with a RetryPolicy: all 8 passed")
    return lines
