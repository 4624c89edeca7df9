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
    """The FIFO of one connection, bounded by ``max_bytes`` of queued frames.

    Two ways to drive it: :meth:`pump` runs for the connection's whole life in a
    task of the adapter's; or :meth:`attach` gives it the transport, and a pump
    task is started only while something is queued (it ends when the FIFO is
    empty), so an idle connection holds no task for writing.
    """

    __slots__ = (
        "_bytes",
        "_direct",
        "_in_write",
        "_interrupted",
        "_items",
        "_on_error",
        "_pump_busy",
        "_pump_task",
        "_released",
        "_room_limit",
        "_room_waiters",
        "_transport",
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
        self._items: deque[OutboundItem] | None = None  # allocated on first use
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._pump_task: asyncio.Task[Any] | None = None
        # True while a pump writes (or, attached, while its task exists): frames
        # must then queue behind what it writes.
        self._pump_busy = True
        self._interrupted = False
        self._in_write = False
        self._direct: Callable[[str], bool] | None = None
        self._transport: Transport | None = None
        self._on_error: Callable[[BaseException], None] | None = None
        # Futures of wait_room(): (limit, future), allocated while someone waits.
        self._room_waiters: list[tuple[int, asyncio.Future[None]]] | None = None
        # The highest limit waited for, -1 when nobody waits: pop() compares the
        # bytes with it and does nothing more while they are above it.
        self._room_limit = -1
        self._released = False

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        items = self._items
        return len(items) if items is not None else 0

    def _queue(self) -> deque[OutboundItem]:
        items = self._items
        if items is None:
            items = self._items = deque()
        return items

    def push(self, frame: str, *, past_bound: bool = False) -> bool:
        """Write or queue ``frame``; ``False`` if the bound is reached (the frame
        is not queued). ``past_bound`` queues it anyway (small control frames)."""
        if not self._pump_busy and not self._items and self._direct is not None:
            try:
                if self._direct(frame):
                    return True  # written straight to the socket: FIFO empty, pump asleep
            except Exception:  # the pump meets the same failure and reports it
                pass
        size = frame_size(frame)
        if self._bytes + size > self.max_bytes and self._items and not past_bound:
            return False
        self._queue().append(frame)
        self._bytes += size
        self._wake()
        return True

    def push_ping(self) -> None:
        self._queue().append(PING)
        self._wake()

    def close(self, code: int, reason: str, *, discard: bool) -> None:
        """Queue the close; with ``discard``, drop what is queued and interrupt a
        pump stuck writing to a peer that stopped reading."""
        if discard:
            self.clear()
        self.closing = close = Close(code, reason)
        self._queue().append(close)
        self._wake()
        if self._room_waiters is not None:
            self._notify_room(everyone=True)
        pump = self._pump_task
        if discard and self._in_write and pump is not None and pump is not asyncio.current_task():
            self._interrupted = True  # stuck writing to a peer that stopped reading
            pump.cancel()

    def clear(self) -> None:
        if self._items:
            self._items.clear()
        self._bytes = 0
        if self._room_waiters is not None:
            self._notify_room()

    def pop(self) -> OutboundItem | None:
        """Take the next item (a frame, a ping or the final close)."""
        items = self._items
        if not items:
            return None
        item = items.popleft()
        if type(item) is str:
            self._bytes -= frame_size(item)
            if not items:
                self._bytes = 0
                self.overflow_notified = False
            if self._bytes <= self._room_limit:
                self._notify_room()
        return item

    # ------------------------------------------------------------ room waiters

    def wait_room(self, limit: int) -> asyncio.Future[None]:
        """A future done once the FIFO holds ``limit`` bytes or fewer (``limit`` >= 0),
        a close is queued, or :meth:`release_waiters` was called; done at once if
        so already. The caller checks which: the future only says "look again".
        Cancelling it stops the wait (several can wait at once)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._bytes <= limit or self.closing is not None or self._released:
            future.set_result(None)
            return future
        waiters = self._room_waiters
        if waiters is None:
            self._room_waiters = waiters = []
        elif any(w.done() for _, w in waiters):  # timed out or cancelled meanwhile
            waiters[:] = [(n, w) for n, w in waiters if not w.done()]
            self._room_limit = max((n for n, _ in waiters), default=-1)
        waiters.append((limit, future))
        if limit > self._room_limit:
            self._room_limit = limit
        return future

    def release_waiters(self) -> None:
        """The connection ends: resolve every :meth:`wait_room` future, now and later."""
        self._released = True
        if self._room_waiters is not None:
            self._notify_room(everyone=True)

    def _notify_room(self, *, everyone: bool = False) -> None:
        waiters = self._room_waiters
        assert waiters is not None
        size = self._bytes
        keep: list[tuple[int, asyncio.Future[None]]] = []
        top = -1
        for limit, future in waiters:
            if future.done():
                continue
            if everyone or size <= limit:
                future.set_result(None)
            else:
                keep.append((limit, future))
                if limit > top:
                    top = limit
        self._room_waiters = keep or None
        self._room_limit = top

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._transport is not None and self._items:
            pump = self._pump_task
            if pump is None or pump.done():
                self._start_pump()

    def wake(self) -> None:
        """Let a waiting pump check whether the connection is closed."""
        self._wake()

    # ----------------------------------------------------------- attached mode

    def attach(self, transport: Transport, on_error: Callable[[BaseException], None]) -> None:
        """Write through ``transport`` from now on: directly while nothing is
        queued, else from a pump task that runs only while the FIFO has items.
        ``on_error(exc)`` is called if a write fails (the adapter drops the socket)."""
        self._transport = transport
        self._on_error = on_error
        self._direct = getattr(transport, "send_nowait", None)
        self._pump_busy = False
        if self._items:
            self._start_pump()

    def _start_pump(self) -> None:
        self._pump_busy = True
        self._pump_task = asyncio.get_running_loop().create_task(self._pump_queued())

    async def _pump_queued(self) -> None:
        transport = self._transport
        assert transport is not None
        try:
            await self._write(transport, until_empty=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._on_error is not None:
                self._on_error(exc)
        finally:
            self._pump_task = None
            if self._transport is not None:
                self._pump_busy = False
                if self._items and self.closing is None:
                    self._start_pump()  # queued while the last write finished

    async def wait_written(self) -> None:
        """Wait until an attached pump has written what is queued (the close)."""
        pump = self._pump_task
        if pump is not None and not pump.done():
            await asyncio.wait((pump,))

    # ------------------------------------------------------------ pump mode

    async def pump(self, transport: Transport, is_closed: Callable[[], bool]) -> None:
        """Write the FIFO to ``transport`` until the close item is sent or
        ``is_closed()``. Transport errors propagate to the caller."""
        self._direct = getattr(transport, "send_nowait", None)
        try:
            await self._write(transport, until_empty=False, is_closed=is_closed)
        finally:
            self._direct = None
            self._pump_busy = True

    async def _write(
        self,
        transport: Transport,
        *,
        until_empty: bool,
        is_closed: Callable[[], bool] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._pump_task = asyncio.current_task()
        try:
            while True:
                while self._items:
                    item = self.pop()
                    if isinstance(item, Close):
                        await transport.close(item.code, item.reason)
                        return
                    self._in_write = True
                    try:
                        if type(item) is str:
                            await transport.send(item)
                        else:
                            await transport.ping()
                    finally:
                        self._in_write = False
                if until_empty or (is_closed is not None and is_closed()):
                    return
                waiter = loop.create_future()
                self._waiter = waiter
                self._pump_busy = False
                try:
                    await waiter
                finally:
                    self._pump_busy = True
        except asyncio.CancelledError:
            close = self.closing
            if not self._interrupted or close is None:
                raise
            self._interrupted = False
            uncancel()
            await transport.close(close.code, close.reason)
        finally:
            if not until_empty:
                self._pump_task = None

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
