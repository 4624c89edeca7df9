"""Clocks: the only source of time and timers for the router.

Every router timer (RPC deadlines, heartbeat, progress throttling) goes through
a :class:`Clock`, so the test harness can swap in
:class:`wskit.core.testing.FakeClock` and drive them deterministically.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled (``asyncio.TimerHandle`` fits)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time source and timer scheduler.

    ``now()`` is wall-clock time in milliseconds since the epoch (used for
    ``ctx.received_at``, deadlines and timestamps). ``call_later`` runs a plain
    callback after ``delay_ms`` milliseconds on the event loop.
    """

    def now(self) -> float: ...

    def call_later(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle: ...


class SystemClock:
    """Real time: ``time.time()`` and the running event loop's timers."""

    __slots__ = ()

    def now(self) -> float:
        return time.time() * 1000.0

    def call_later(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay_ms) / 1000.0, callback)
