"""Reconnect policy and the backoff formula (wire-compatible with WS-Kit TS 0.10).

``delay(n) = min(max_delay_ms, initial_delay_ms * 2 ** (n - 1))`` for attempt
``n = 1, 2, ...``; with full jitter the wait is a uniform integer in
``[0, delay(n)]`` (``floor(random() * (delay + 1))``). With the defaults the caps
are 300, 600, 1200, 2400, 4800, 9600, then 10000 ms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Jitter", "ReconnectOptions", "backoff_delay"]

Jitter = Literal["full", "none"]


@dataclass(frozen=True, slots=True)
class ReconnectOptions:
    """When and how fast the client reconnects after an unexpected close.

    - ``enabled``: reconnect at all (default ``True``).
    - ``max_attempts``: consecutive failed attempts before giving up
      (``None``: never give up). The counter resets on every successful open.
    - ``initial_delay_ms`` / ``max_delay_ms``: 300 / 10000, as in WS-Kit.
    - ``jitter``: ``"full"`` (default) or ``"none"``.
    """

    enabled: bool = True
    max_attempts: int | None = None
    initial_delay_ms: float = 300
    max_delay_ms: float = 10_000
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 or None")
        if self.initial_delay_ms < 0 or self.max_delay_ms < 0:
            raise ValueError("delays must be >= 0")
        if self.jitter not in ("full", "none"):
            raise ValueError(f"jitter must be 'full' or 'none', not {self.jitter!r}")

    def delay_ms(self, attempt: int, random: Callable[[], float]) -> float:
        """The wait before reconnect attempt ``attempt`` (1-based)."""
        return backoff_delay(
            attempt,
            initial_delay_ms=self.initial_delay_ms,
            max_delay_ms=self.max_delay_ms,
            jitter=self.jitter,
            random=random,
        )


def backoff_delay(
    attempt: int,
    *,
    initial_delay_ms: float,
    max_delay_ms: float,
    jitter: Jitter,
    random: Callable[[], float],
) -> float:
    """``min(max, initial * 2**(attempt-1))``, fully jittered unless ``jitter="none"``.

    ``random`` returns a float in ``[0, 1)`` (inject a fixed one in tests).
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    # Cap the exponent: 2**1100 overflows a float, and the cap is reached long before.
    cap = min(max_delay_ms, initial_delay_ms * 2.0 ** min(attempt - 1, 1000))
    if jitter == "none":
        return cap
    return float(math.floor(random() * (cap + 1)))
