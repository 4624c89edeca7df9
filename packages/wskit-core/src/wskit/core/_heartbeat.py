"""Heartbeat of one connection: a transport ping after ``interval_ms`` of
silence, and a close (1011) when nothing arrives within ``timeout_ms`` of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wskit.core.clock import TimerHandle
    from wskit.core.connection import Connection, HeartbeatOptions

__all__ = ["Heartbeat"]

CLOSE_INTERNAL_ERROR = 1011


class Heartbeat:
    """Timers on the router clock; ``seen()`` is called for every sign of life."""

    __slots__ = ("_conn", "_last_seen", "_stale", "_timer", "options")

    def __init__(self, conn: Connection[Any], options: HeartbeatOptions) -> None:
        self._conn = conn
        self.options = options
        self._last_seen = conn.router.clock.now()
        self._timer: TimerHandle | None = None
        self._stale: TimerHandle | None = None

    def start(self) -> None:
        self._timer = self._conn.router.clock.call_later(self.options.interval_ms, self._tick)

    def stop(self) -> None:
        for timer in (self._timer, self._stale):
            if timer is not None:
                timer.cancel()
        self._timer = self._stale = None

    def seen(self, now: float) -> None:
        self._last_seen = now
        if self._stale is not None:
            self._stale.cancel()
            self._stale = None

    def _tick(self) -> None:
        conn = self._conn
        if conn.state != "open" or conn.close_requested is not None:
            return
        clock = conn.router.clock
        if self._stale is None and clock.now() - self._last_seen >= self.options.interval_ms:
            conn._out.push_ping()
            self._stale = clock.call_later(self.options.timeout_ms, self._expired)
        self.start()

    def _expired(self) -> None:
        self._stale = None
        conn = self._conn
        if conn.state != "open":
            return
        on_stale = self.options.on_stale
        if on_stale is not None:
            conn.run_callback(lambda: on_stale(conn))
        self.stop()
        conn.request_close(CLOSE_INTERNAL_ERROR, "Heartbeat timeout", discard=True)
