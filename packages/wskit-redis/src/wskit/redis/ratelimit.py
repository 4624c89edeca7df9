"""A token-bucket limiter in Redis, shared by every server instance.

One decision is one atomic ``EVALSHA`` of a Lua script that applies exactly the
rule of the in-memory limiter (:mod:`wskit.ratelimit.memory`) with Redis
``TIME`` as the clock: the refill time advances only when whole tokens are
added, so polling faster than one token interval does not starve the bucket
(the original TypeScript script reset it on every call). The script is run by
its SHA1; after ``NOSCRIPT`` (a restarted or flushed Redis) it is loaded once,
shared by concurrent callers, and the call is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import NoScriptError

from wskit.ratelimit.limiter import Decision, RateLimitPolicy, check_cost

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["TOKEN_BUCKET_LUA", "RedisRateLimiter", "redis_rate_limiter"]

#: KEYS[1] = bucket key; ARGV = cost, capacity, tokens_per_second, ttl_ms.
#: Returns {allowed (0|1), remaining, retry_after_ms (-1: never, -2: allowed), now_ms}.
TOKEN_BUCKET_LUA: Final = """
local cost = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last_ms')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = capacity
  last = now
end
local elapsed = (now - last) / 1000
if elapsed < 0 then elapsed = 0 end
local add = math.floor(elapsed * rate)
tokens = math.min(capacity, tokens + add)
if add > 0 then last = now end
local allowed = 0
local retry = -1
if tokens < cost then
  if cost <= capacity then retry = math.ceil((cost - tokens) / rate * 1000) end
else
  tokens = tokens - cost
  allowed = 1
  retry = -2
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'last_ms', last)
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, math.floor(tokens), retry, now}
"""

_SHA: Final = hashlib.sha1(TOKEN_BUCKET_LUA.encode()).hexdigest()


def default_ttl_ms(capacity: int, tokens_per_second: float) -> int:
    """``max(ceil(2 * capacity / tokens_per_second * 1000), 60000)``: long after a
    bucket would be full again, so expiry never changes a decision."""
    return max(math.ceil(2 * capacity / tokens_per_second * 1000), 60_000)


class RedisRateLimiter:
    """Token buckets in Redis hashes (``prefix + key`` → ``tokens``, ``last_ms``).

    ``client`` is a ``redis.asyncio.Redis``; decisions use its connection pool.
    Keys expire ``ttl_ms`` after their last use (default :func:`default_ttl_ms`).
    Redis errors propagate (``redis.exceptions.RedisError``); the
    ``rate_limit()`` middleware then answers ``INTERNAL``.
    """

    __slots__ = ("_args", "_client", "_load", "_policy", "_ttl_ms", "script_loads")

    def __init__(
        self,
        client: Redis,
        *,
        capacity: int,
        tokens_per_second: float,
        prefix: str = "",
        ttl_ms: int | None = None,
    ) -> None:
        self._client = client
        self._policy = RateLimitPolicy(capacity, tokens_per_second, prefix)
        ttl = default_ttl_ms(capacity, self._policy.tokens_per_second) if ttl_ms is None else ttl_ms
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ValueError("ttl_ms must be a positive integer")
        self._ttl_ms = ttl
        # repr() round-trips the float exactly, so Lua's tonumber() sees the same double.
        self._args = (str(capacity), repr(self._policy.tokens_per_second), str(ttl))
        self._load: asyncio.Future[None] | None = None
        #: How many times the script was (re)loaded (after NOSCRIPT).
        self.script_loads = 0

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    @property
    def ttl_ms(self) -> int:
        return self._ttl_ms

    async def consume(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket in one atomic script run."""
        check_cost(cost)
        prefix = self._policy.prefix
        k = prefix + key if prefix else key
        capacity, rate, ttl = self._args
        try:
            reply = await self._client.evalsha(_SHA, 1, k, str(cost), capacity, rate, ttl)
        except NoScriptError:
            await self._load_script()
            reply = await self._client.evalsha(_SHA, 1, k, str(cost), capacity, rate, ttl)
        return _decision(reply)

    async def _load_script(self) -> None:
        # Concurrent callers that all saw NOSCRIPT share one SCRIPT LOAD.
        load = self._load
        if load is None or load.done():
            load = self._load = asyncio.ensure_future(self._do_load())
        await asyncio.shield(load)

    async def _do_load(self) -> None:
        sha: Any = await self._client.script_load(TOKEN_BUCKET_LUA)
        self.script_loads += 1
        if (sha.decode() if isinstance(sha, bytes) else str(sha)) != _SHA:  # pragma: no cover
            raise RuntimeError("Redis returned an unexpected SHA1 for the token-bucket script")

    async def reset(self, key: str) -> None:
        """Delete one key's bucket (it starts full again)."""
        prefix = self._policy.prefix
        await self._client.delete(prefix + key if prefix else key)

    def __repr__(self) -> str:
        p = self._policy
        return (
            f"<RedisRateLimiter capacity={p.capacity} tokens_per_second={p.tokens_per_second}"
            f" prefix={p.prefix!r}>"
        )


def _decision(reply: Any) -> Decision:
    allowed, remaining, retry, now = (int(x) for x in reply)
    if allowed:
        return Decision(True, remaining, None, float(now))
    return Decision(False, remaining, None if retry < 0 else retry, float(now))


def redis_rate_limiter(
    client: Redis,
    *,
    capacity: int,
    tokens_per_second: float,
    prefix: str = "",
    ttl_ms: int | None = None,
) -> RedisRateLimiter:
    """A token-bucket limiter shared through Redis (see :class:`RedisRateLimiter`)."""
    return RedisRateLimiter(
        client,
        capacity=capacity,
        tokens_per_second=tokens_per_second,
        prefix=prefix,
        ttl_ms=ttl_ms,
    )
