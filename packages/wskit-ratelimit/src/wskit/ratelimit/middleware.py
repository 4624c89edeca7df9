"""The ``rate_limit()`` middleware and its key functions.

::

    from wskit.ratelimit import key_per_user, memory_rate_limiter, rate_limit

    limiter = memory_rate_limiter(capacity=10, tokens_per_second=2)
    router.use(rate_limit(limiter=limiter))                   # per user, per message type
    router.on(Upload, handler, middleware=[rate_limit(limiter=limiter, key=key_per_user,
                                                      cost=lambda ctx: 5)])

Key functions read the connection data (``ctx.data``, what ``authenticate()``
returned): ``tenant_id`` and ``user_id``, as dict keys or attributes (the
camelCase ``tenantId``/``userId`` are accepted too). A missing tenant is
``"public"``, a missing user ``"anon"``: **all anonymous connections share one
bucket** — use :func:`key_per_client` (or a custom key, e.g. by IP) for public
endpoints.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from wskit.core.context import MessageContext
from wskit.core.errors import ErrorCode
from wskit.core.router import Middleware, Next
from wskit.ratelimit.limiter import RateLimiter

__all__ = [
    "CostFunction",
    "KeyFunction",
    "key_per_client",
    "key_per_user",
    "key_per_user_per_type",
    "rate_limit",
]

Ctx = MessageContext[Any, Any]
#: ``key(ctx) -> str`` (or an awaitable of it): the bucket a message draws from.
KeyFunction = Callable[[Ctx], "str | Awaitable[str]"]
#: ``cost(ctx) -> int`` (or an awaitable of it): tokens a message takes (>= 0).
CostFunction = Callable[[Ctx], "int | Awaitable[int]"]

_MISSING = object()


def _data_field(data: Any, snake: str, camel: str) -> Any:
    if data is None:
        return None
    if isinstance(data, dict):
        value = data.get(snake, _MISSING)
        return data.get(camel) if value is _MISSING else value
    value = getattr(data, snake, _MISSING)
    return getattr(data, camel, None) if value is _MISSING else value


def _identity(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data
    tenant = _data_field(data, "tenant_id", "tenantId")
    user = _data_field(data, "user_id", "userId")
    return (
        "public" if tenant is None or tenant == "" else str(tenant),
        "anon" if user is None or user == "" else str(user),
    )


def key_per_user_per_type(ctx: Ctx) -> str:
    """``rl:{tenant_id or "public"}:{user_id or "anon"}:{ctx.type}`` (the default)."""
    tenant, user = _identity(ctx)
    return f"rl:{tenant}:{user}:{ctx.type}"


def key_per_user(ctx: Ctx) -> str:
    """``rl:{tenant_id or "public"}:{user_id or "anon"}``: one bucket per user for
    every message type."""
    tenant, user = _identity(ctx)
    return f"rl:{tenant}:{user}"


def key_per_client(ctx: Ctx) -> str:
    """``rl:client:{ctx.client_id}``: one bucket per connection (for anonymous
    traffic; a client that reconnects gets a new bucket)."""
    return f"rl:client:{ctx.client_id}"


def _one(ctx: Ctx) -> int:
    return 1


async def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def rate_limit(
    *,
    limiter: RateLimiter,
    key: KeyFunction = key_per_user_per_type,
    cost: CostFunction = _one,
) -> Middleware[Any]:
    """Middleware that takes ``cost(ctx)`` tokens from ``limiter`` under ``key(ctx)``.

    - cost not an ``int`` >= 0 → ``INVALID_ARGUMENT`` "Rate limit cost must be a
      non-negative integer"; the handler is skipped.
    - cost 0 → the handler runs; the limiter is not called.
    - refused → ``RESOURCE_EXHAUSTED`` "Rate limit exceeded", details
      ``{cost, capacity, remaining}`` and ``retryAfterMs``; the handler is skipped.
    - cost above the capacity → ``FAILED_PRECONDITION`` "Operation cost exceeds
      capacity", details ``{cost, capacity}`` (retrying cannot help).

    Errors go out as ``ERROR`` (``RPC_ERROR`` on RPC routes); the connection
    stays open. Register it after the validator plugin and it only sees
    messages that passed validation. An exception from ``key``, ``cost`` or the
    limiter (e.g. Redis down) propagates: the client gets ``INTERNAL`` and
    ``on_error`` hooks get the exception.
    """
    if not isinstance(limiter, RateLimiter):
        raise TypeError(f"rate_limit(limiter=...) needs a RateLimiter, got {limiter!r}")
    capacity = limiter.policy.capacity

    async def rate_limit_middleware(ctx: Ctx, next_: Next) -> None:
        c = await _resolve(cost(ctx))
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            ctx.error(ErrorCode.INVALID_ARGUMENT, "Rate limit cost must be a non-negative integer")
            return
        if c == 0:
            await next_()
            return
        bucket = await _resolve(key(ctx))
        decision = await limiter.consume(bucket, c)
        if decision.allowed:
            await next_()
            return
        if decision.retry_after_ms is None:
            ctx.error(
                ErrorCode.FAILED_PRECONDITION,
                "Operation cost exceeds capacity",
                {"cost": c, "capacity": capacity},
            )
        else:
            ctx.error(
                ErrorCode.RESOURCE_EXHAUSTED,
                "Rate limit exceeded",
                {"cost": c, "capacity": capacity, "remaining": decision.remaining},
                retry_after_ms=decision.retry_after_ms,
            )

    return rate_limit_middleware
