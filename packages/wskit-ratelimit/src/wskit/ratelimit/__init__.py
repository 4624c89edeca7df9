"""wskit-ratelimit: token-bucket rate limiting for wskit routers.

::

    from wskit.ratelimit import memory_rate_limiter, rate_limit

    limiter = memory_rate_limiter(capacity=10, tokens_per_second=2)
    router.use(rate_limit(limiter=limiter))        # key_per_user_per_type, cost 1

Limited messages get ``RESOURCE_EXHAUSTED`` with ``retryAfterMs``; a cost above
the capacity gets ``FAILED_PRECONDITION``; an invalid cost ``INVALID_ARGUMENT``.
``wskit.redis.redis_rate_limiter`` shares buckets across server instances with
the same refill rule.
"""

from __future__ import annotations

from wskit.ratelimit.limiter import Decision, RateLimiter, RateLimitPolicy, check_cost
from wskit.ratelimit.memory import MemoryRateLimiter, memory_rate_limiter, monotonic_ms
from wskit.ratelimit.middleware import (
    CostFunction,
    KeyFunction,
    key_per_client,
    key_per_user,
    key_per_user_per_type,
    rate_limit,
)

__all__ = [
    "CostFunction",
    "Decision",
    "KeyFunction",
    "MemoryRateLimiter",
    "RateLimitPolicy",
    "RateLimiter",
    "check_cost",
    "key_per_client",
    "key_per_user",
    "key_per_user_per_type",
    "memory_rate_limiter",
    "monotonic_ms",
    "rate_limit",
]
