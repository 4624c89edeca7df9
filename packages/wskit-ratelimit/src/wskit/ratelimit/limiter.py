"""The limiter contract: a policy, a decision, and the :class:`RateLimiter` protocol.

Every limiter (the in-memory :class:`~wskit.ratelimit.memory.MemoryRateLimiter`,
``wskit.redis.redis_rate_limiter``) implements the same token bucket: a bucket
per key holds up to ``capacity`` tokens, refills at ``tokens_per_second`` whole
tokens, and a call of cost ``n`` takes ``n`` tokens or is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Decision", "RateLimitPolicy", "RateLimiter", "check_cost"]


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """A token-bucket policy.

    ``capacity``: tokens a full bucket holds (an integer >= 1; a new key
    starts full). ``tokens_per_second``: refill rate (> 0, may be fractional).
    ``prefix``: prepended to every key (namespaces one limiter's buckets).
    """

    capacity: int
    tokens_per_second: float
    prefix: str = ""

    def __post_init__(self) -> None:
        cap = self.capacity
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError("Rate limit capacity must be >= 1 (an integer)")
        rate = self.tokens_per_second
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ValueError("tokens_per_second must be > 0")
        object.__setattr__(self, "tokens_per_second", float(rate))
        if not isinstance(self.prefix, str):
            raise TypeError("prefix must be a string")


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one :meth:`RateLimiter.consume`.

    ``allowed``: the tokens were taken. ``remaining``: whole tokens left in the
    bucket after the decision. ``retry_after_ms``: when refused, the
    milliseconds until enough whole tokens will be there; ``None`` when the cost
    exceeds the capacity (it never will). Always ``None`` when allowed.
    ``at_ms``: the limiter's clock reading the decision was taken at (the
    memory limiter's clock, Redis ``TIME`` for the Redis limiter); it is
    informational and not part of equality.
    """

    allowed: bool
    remaining: int
    retry_after_ms: int | None = None
    at_ms: float | None = field(default=None, compare=False)


@runtime_checkable
class RateLimiter(Protocol):
    """What :func:`~wskit.ratelimit.rate_limit` needs from a limiter."""

    @property
    def policy(self) -> RateLimitPolicy:
        """The limiter's policy (immutable)."""
        ...

    async def consume(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket, or refuse; never partial.

        Each decision is atomic per key (the memory limiter decides in call
        order; a shared limiter in the order calls reach its backend).
        ``cost`` is an integer >= 0 (see :func:`check_cost`).
        """
        ...


def check_cost(cost: object) -> int:
    """Return ``cost`` if it is a non-negative ``int`` (not a ``bool``), else raise
    ``ValueError``. Limiters call it before touching a bucket."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise ValueError(f"Rate limit cost must be a non-negative integer, got {cost!r}")
    return cost
