"""The outbound side of a connection: one FIFO of serialized frames, its byte
bound, and the pump that writes it to a transport.

Every frame a connection sends goes through :meth:`Outbox.push`, in one strict
order. While the FIFO is empty and the pump is waiting, a transport that offers
``send_nowait`` gets the frame at once (no task switch per frame); otherwise
the frame is queued and the pump task writes it. What happens when the bound
is reached is the connection's overflow policy, decided by the caller.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from wskit.core.connection import Transport

__all__ = ["PING", "Close", "OutboundItem", "Outbox", "frame_size"]


class _Ping:
    __slots__ = ()


class Close:
    """The last outbound item: close the socket with ``code``/``reason``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


PING: Final = _Ping()

OutboundItem = str | _Ping | Close


def frame_size(frame: str) -> int:
    """Size of a frame on the wire, in UTF-8 bytes."""
    return len(frame) if frame.isascii() else len(frame.encode("utf-8", "surrogatepass"))


class Outbox:
    """The FIFO of one connection, bounded by ``max_bytes`` of queued frames."""

    __slots__ = (
        "_bytes",
        "_direct",
        "_interrupted",
        "_items",
        "_pump_idle",
        "_pump_task",
        "_waiter",
        "closing",
        "max_bytes",
        "overflow_notified",
    )

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        #: The close item once one was queued (nothing is queued after it).
        self.closing: Close | None = None
        #: The "messages dropped" notice went out since the FIFO last drained.
        self.overflow_notified = False
        self._items: deque[OutboundItem] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._pump_task: asyncio.Task[Any] | None = None
        self._pump_idle = False
        self._interrupted = False
        self._direct: Callable[[str], bool] | None = None

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def push(self, frame: str, *, past_bound: bool = False) -> bool:
        """Write or queue ``frame``; ``False`` if the bound is reached (the frame
        is not queued). ``past_bound`` queues it anyway (small control frames)."""
        if self._pump_idle and not self._items and self._direct is not None:
            try:
                if self._direct(frame):
                    return True  # written straight to the socket: FIFO empty, pump asleep
            except Exception:  # the pump meets the same failure and reports it
                pass
        size = frame_size(frame)
        if self._bytes + size > self.max_bytes and self._items and not past_bound:
            return False
        self._items.append(frame)
        self._bytes += size
        self._wake()
        return True

    def push_ping(self) -> None:
        self._items.append(PING)
        self._wake()

    def close(self, code: int, reason: str, *, discard: bool) -> None:
        """Queue the close; with ``discard``, drop what is queued and interrupt a
        pump stuck writing to a peer that stopped reading."""
        if discard:
            self.clear()
        self.closing = close = Close(code, reason)
        self._items.append(close)
        self._wake()
        pump = self._pump_task
        if discard and pump is not None and not pump.done() and pump is not asyncio.current_task():
            self._interrupted = True
            pump.cancel()

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def pop(self) -> OutboundItem | None:
        """Take the next item (a frame, a ping or the final close)."""
        if not self._items:
            return None
        item = self._items.popleft()
        if type(item) is str:
            self._bytes -= frame_size(item)
            if not self._items:
                self._bytes = 0
                self.overflow_notified = False
        return item

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake(self) -> None:
        """Let a waiting pump check whether the connection is closed."""
        self._wake()

    async def pump(self, transport: Transport, is_closed: Callable[[], bool]) -> None:
        """Write the FIFO to ``transport`` until the close item is sent or
        ``is_closed()``. Transport errors propagate to the caller."""
        loop = asyncio.get_running_loop()
        items = self._items
        self._pump_task = asyncio.current_task()
        self._direct = getattr(transport, "send_nowait", None)
        try:
            while True:
                while items:
                    item = self.pop()
                    if type(item) is str:
                        await transport.send(item)
                    elif type(item) is _Ping:
                        await transport.ping()
                    elif isinstance(item, Close):
                        await transport.close(item.code, item.reason)
                        return
                if is_closed():
                    return
                waiter = loop.create_future()
                self._waiter = waiter
                self._pump_idle = True
                try:
                    await waiter
                finally:
                    self._pump_idle = False
        except asyncio.CancelledError:
            close = self.closing
            if not self._interrupted or close is None:
                raise
            self._interrupted = False
            uncancel()
            await transport.close(close.code, close.reason)
        finally:
            self._pump_task = None
            self._direct = None

    @property
    def writing(self) -> bool:
        """A pump is running and has frames to write."""
        pump = self._pump_task
        return bool(self._items) and pump is not None and not pump.done()


def uncancel() -> None:
    """Balance a cancellation request the current task absorbed (3.11+ counts them)."""
    task = asyncio.current_task()
    undo = getattr(task, "uncancel", None)
    if undo is not None:
        undo()
