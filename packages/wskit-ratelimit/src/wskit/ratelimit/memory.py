"""In-memory token bucket (one process), exactly the rule of the original.

Per decision, for the key ``prefix + key``::

    now = clock()                                   # ms
    tokens, last = bucket or (capacity, now)        # a new key starts full
    add = floor(max(0, (now - last) / 1000) * tokens_per_second)
    tokens = min(capacity, tokens + add)
    if add > 0: last = now                          # only then: sub-token time accumulates
    if tokens < cost:                               # refused: nothing taken, refill kept
        retry = None if cost > capacity else ceil((cost - tokens) / tokens_per_second * 1000)
        return Decision(False, floor(tokens), retry)
    tokens -= cost
    return Decision(True, floor(tokens))

Test vector: capacity 5, 2 tokens/s; consume 5, then consume 3 → refused with
``retry_after_ms == 1500``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from wskit.ratelimit.limiter import Decision, RateLimitPolicy, check_cost

__all__ = ["MemoryRateLimiter", "memory_rate_limiter", "monotonic_ms"]


def monotonic_ms() -> float:
    """The default clock: ``time.monotonic()`` in milliseconds."""
    return time.monotonic() * 1000.0


class MemoryRateLimiter:
    """Token buckets in a dict, for one process.

    ``clock`` returns milliseconds (default :func:`monotonic_ms`); pass the test
    harness's ``FakeClock.now`` to drive refills with ``harness.advance(ms)``.

    A decision reads and writes its bucket with no ``await`` in between, so
    decisions on one key are atomic and taken strictly in call order (the
    per-key FIFO serialization of the original, without a lock per key).

    Memory stays bounded by the keys that are actually limited: buckets that a
    fresh bucket would reproduce exactly (full, and at least one token interval
    since their last refill) are dropped in an amortized sweep.
    """

    __slots__ = ("_buckets", "_clock", "_policy", "_sweep_at")

    def __init__(
        self,
        *,
        capacity: int,
        tokens_per_second: float,
        prefix: str = "",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._policy = RateLimitPolicy(capacity, tokens_per_second, prefix)
        self._clock: Callable[[], float] = clock or monotonic_ms
        # key -> [tokens, last_refill_ms]
        self._buckets: dict[str, list[float]] = {}
        self._sweep_at = 1024

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    async def consume(self, key: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket, or refuse (see the module doc)."""
        return self.consume_now(key, cost)

    def consume_now(self, key: str, cost: int = 1) -> Decision:
        """The synchronous decision behind :meth:`consume`."""
        check_cost(cost)
        policy = self._policy
        k = policy.prefix + key if policy.prefix else key
        capacity = policy.capacity
        rate = policy.tokens_per_second
        now = self._clock()
        bucket = self._buckets.get(k)
        if bucket is None:
            bucket = [float(capacity), now]
            self._buckets[k] = bucket
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
        tokens, last = bucket
        add = math.floor(max(0.0, (now - last) / 1000.0) * rate)
        tokens = min(float(capacity), tokens + add)
        if add > 0:
            bucket[1] = now
        if tokens < cost:
            bucket[0] = tokens
            retry = None if cost > capacity else math.ceil((cost - tokens) / rate * 1000.0)
            return Decision(False, math.floor(tokens), retry, now)
        tokens -= cost
        bucket[0] = tokens
        return Decision(True, math.floor(tokens), None, now)

    def reset(self, key: str | None = None) -> None:
        """Forget one key's bucket (it starts full again), or every bucket."""
        if key is None:
            self._buckets.clear()
            return
        prefix = self._policy.prefix
        self._buckets.pop(prefix + key if prefix else key, None)

    def __len__(self) -> int:
        """Buckets currently held."""
        return len(self._buckets)

    def prune(self) -> int:
        """Drop buckets a fresh one would reproduce exactly; returns how many."""
        return self._sweep(self._clock())

    def _sweep(self, now: float) -> int:
        capacity = float(self._policy.capacity)
        rate = self._policy.tokens_per_second
        stale = [
            k
            for k, (tokens, last) in self._buckets.items()
            if (add := math.floor(max(0.0, (now - last) / 1000.0) * rate)) > 0
            and tokens + add >= capacity
        ]
        for k in stale:
            del self._buckets[k]
        # Amortized O(1): sweep again once the table has doubled.
        self._sweep_at = max(1024, 2 * len(self._buckets))
        return len(stale)

    def __repr__(self) -> str:
        p = self._policy
        return (
            f"<MemoryRateLimiter capacity={p.capacity} tokens_per_second={p.tokens_per_second}"
            f" buckets={len(self._buckets)}>"
        )


def memory_rate_limiter(
    *,
    capacity: int,
    tokens_per_second: float,
    prefix: str = "",
    clock: Callable[[], float] | None = None,
) -> MemoryRateLimiter:
    """An in-memory token-bucket limiter (see :class:`MemoryRateLimiter`)."""
    return MemoryRateLimiter(
        capacity=capacity, tokens_per_second=tokens_per_second, prefix=prefix, clock=clock
    )
