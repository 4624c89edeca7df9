"""One client connection as the router sees it: sans-I/O.

An adapter (``wskit.aiohttp``, the test harness) creates a connection with
:meth:`Router.connect`, then:

1. ``await conn.open()`` (runs ``on_open`` hooks; ``False`` means it was refused),
2. runs ``await conn.pump(transport)`` in a task: it writes the outbound FIFO
   to the socket (frames, pings and the final close),
3. hands every inbound frame to ``conn.receive(frame)`` (synchronous); when it
   returns ``False`` the inbound queue is full and the adapter stops reading
   from the socket until ``await conn.inbound_room()`` returns (so a client
   that sends faster than its handlers run is slowed down by TCP itself),
4. calls ``await conn.handle_close(code, reason)`` once the socket is closed.

Inbound frames of one connection are handled in arrival order, one at a time
(``max_concurrency`` on the router allows more). ``$ws:abort`` and
``__heartbeat`` are handled as they arrive, so an abort reaches a running RPC.

The pieces live in their own modules: :mod:`wskit.core._dispatch` (the worker
and the failure boundary of each frame), :mod:`wskit.core._outbox` (the
outbound FIFO, its bound and the pump) and :mod:`wskit.core._heartbeat`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import sys
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Protocol, TypeVar

from wskit.core._dispatch import abort_queued, run_worker
from wskit.core._heartbeat import Heartbeat
from wskit.core._outbox import OutboundItem, Outbox
from wskit.core.context import CloseContext, MessageContext, OpenContext, RpcContext
from wskit.core.envelope import (
    ABORT,
    ERROR,
    HEARTBEAT,
    HEARTBEAT_ACK,
    correlation_id,
    decode_frame,
    dumps,
    encode_envelope,
    encode_error,
)
from wskit.core.errors import (
    _UNSET,
    CloseError,
    ErrorCode,
    OutboundValidationError,
    ProtocolError,
    ValidationError,
)

if TYPE_CHECKING:
    from wskit.core.clock import TimerHandle
    from wskit.core.router import Router
    from wskit.core.schema import MessageSchema

__all__ = [
    "Connection",
    "ConnectionState",
    "ErrorInfo",
    "HeartbeatOptions",
    "OverflowPolicy",
    "Transport",
]

D = TypeVar("D")

_log = logging.getLogger("wskit.core")

ConnectionState = Literal["connecting", "open", "closing", "closed"]
OverflowPolicy = Literal["close", "drop"]

#: A queued inbound frame: the decoded envelope, or the error that answers it.
InboundItem = dict[str, Any] | ProtocolError

#: Python 3.12+ can start a task eagerly (``asyncio.Task(..., eager_start=True)``).
_EAGER_TASKS: Final = sys.version_info >= (3, 12)
#: The name of every connection's worker task. Given, so that asyncio does not
#: format a "Task-<n>" name for each one (Python 3.11 does so eagerly, per task).
_WORKER_TASK_NAME: Final = "wskit: connection worker"
#: Marks the worker as started while an eager worker task runs its first step.
_STARTING: Final[Any] = object()

#: A queued inbound frame with its receipt time and size.
_Inbound = tuple[float, InboundItem, int]
#: Inbound queue length at which the list becomes a deque (until it drains).
_DEEP_INBOX: Final = 32

_OUT_META_DROP: Final = frozenset({"type", "correlationId", "clientId", "receivedAt"})

_HEADS: dict[str, str] = {}  # message type -> '{"type":"...","meta":'


def _frame_head(message_type: str) -> str:
    """The start of an outbound frame, up to the meta object (cached per type)."""
    head = _HEADS.get(message_type)
    if head is None:
        if len(_HEADS) >= 1024:
            _HEADS.clear()
        head = _HEADS[message_type] = f'{{"type":{dumps(message_type)},"meta":'
    return head


#: Close codes used by the core and the server adapters.
CLOSE_GOING_AWAY: Final = 1001
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN_LATER: Final = 1013


@dataclass(frozen=True, slots=True)
class HeartbeatOptions:
    """Opt-in liveness checks driven by the router clock.

    Every ``interval_ms`` without inbound traffic the transport sends a ping;
    with no pong or frame within ``timeout_ms`` the connection is stale:
    ``on_stale(connection)`` runs and the connection is closed with 1011.
    Both must be positive, finite numbers of milliseconds.
    """

    interval_ms: float = 30_000
    timeout_ms: float = 5_000
    on_stale: Callable[[Connection[Any]], Any] | None = None

    def __post_init__(self) -> None:
        for name in ("interval_ms", "timeout_ms"):
            value = getattr(self, name)
            if not _positive_number(value):
                raise ValueError(
                    f"HeartbeatOptions.{name} must be a positive, finite number of "
                    f"milliseconds, not {value!r}"
                )
        if self.on_stale is not None and not callable(self.on_stale):
            raise TypeError(f"HeartbeatOptions.on_stale must be callable, not {self.on_stale!r}")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Where an error reported to ``on_error`` hooks happened.

    ``message_type`` is the inbound frame's type when known, ``"$ws:open"`` /
    ``"$ws:close"`` for lifecycle hooks, else ``None``. ``context`` is the
    handler context when one had been built.
    """

    connection: Connection[Any] | None
    message_type: str | None = None
    context: MessageContext[Any, Any] | None = None

    @property
    def client_id(self) -> str | None:
        return self.connection.client_id if self.connection is not None else None


class Transport(Protocol):
    """The socket side of a connection, as :meth:`Connection.pump` drives it.

    A transport may also offer ``send_nowait(frame: str) -> bool``: write the
    frame at once if that cannot block, else return ``False``. The connection
    then writes frames directly while its FIFO is empty and the pump is idle,
    saving a task switch per frame (pub/sub fan-out, request/response). Such a
    transport may collect direct sends and write them together, at the latest
    at the start of the next event-loop iteration: what every connection's
    handlers answered in one iteration then leaves together, after the loop has
    read every socket that was ready, one write per connection.
    """

    async def send(self, frame: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Connection(Generic[D]):
    """Router-side state of one connection. Create with ``router.connect()``."""

    __slots__ = (
        "_background",
        "_closing",
        "_extensions",
        "_hb",
        "_idle_waiters",
        "_inbox",
        "_inbox_bytes",
        "_inbox_waiter",
        "_out",
        "_room_waiter",
        "_rpcs",
        "_worker",
        "client_id",
        "close_code",
        "close_reason",
        "connected_at",
        "data",
        "headers",
        "heartbeat",
        "max_inbound_bytes",
        "max_inbound_messages",
        "max_message_bytes",
        "overflow",
        "router",
        "state",
    )

    def __init__(
        self,
        router: Router[D],
        data: D,
        *,
        client_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int,
        max_buffered_bytes: int,
        overflow: OverflowPolicy,
        heartbeat: HeartbeatOptions | None,
        max_inbound_messages: int | None = None,
        max_inbound_bytes: int | None = None,
    ) -> None:
        if overflow not in ("close", "drop"):
            raise ValueError(f"overflow must be 'close' or 'drop', not {overflow!r}")
        self.router = router
        self.data = data
        self.client_id = client_id or str(uuid.uuid4())
        #: The upgrade request's headers as the adapter passed them (not copied).
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.max_message_bytes = max_message_bytes
        self.max_inbound_messages = max_inbound_messages or router.max_inbound_messages
        self.max_inbound_bytes = max_inbound_bytes or router.max_inbound_bytes
        self.overflow: OverflowPolicy = overflow
        self.heartbeat = heartbeat
        self.state: ConnectionState = "connecting"
        self.connected_at = router.clock.now()
        self.close_code: int | None = None
        self.close_reason = ""
        # Allocated on first use: an idle connection holds as little as possible.
        self._extensions: dict[str, Any] | None = None
        self._inbox: list[_Inbound] | deque[_Inbound] | None = None
        self._inbox_bytes = 0
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._room_waiter: asyncio.Future[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] | None = None  # wait_idle()
        self._out = Outbox(max_buffered_bytes)
        self._hb: Heartbeat | None = None
        self._rpcs: dict[str, RpcContext[Any, Any, D]] | None = None
        self._background: set[asyncio.Task[Any]] | None = None
        self._closing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ data

    def assign_data(self, changes: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Shallow-merge ``changes`` into ``data`` (dict keys, else attributes)."""
        items = {**(changes or {}), **more}
        data: Any = self.data
        if isinstance(data, dict):
            data.update(items)
        else:
            for key, value in items.items():
                setattr(data, key, value)

    @property
    def extensions(self) -> dict[str, Any]:
        """Per-connection storage for plugins."""
        extensions = self._extensions
        if extensions is None:
            extensions = self._extensions = {}
        return extensions

    @property
    def buffered_bytes(self) -> int:
        """Bytes of outbound frames waiting in this connection's FIFO."""
        return self._out.buffered_bytes

    @property
    def max_buffered_bytes(self) -> int:
        """The bound of the outbound FIFO (see the ``overflow`` policy)."""
        return self._out.max_bytes

    async def wait_buffered_at_most(self, limit: int, timeout_ms: float | None = None) -> bool:
        """Wait until :attr:`buffered_bytes` is ``limit`` or less, as the transport
        takes the queued frames (no polling: the outbound FIFO wakes the waiter).

        Returns whether ``buffered_bytes <= limit`` holds when it returns: at once
        if it already does, as soon as it does, after ``timeout_ms`` milliseconds
        of the router clock (``None``: no timeout), or as soon as the connection
        is closing or closed (nothing will drain it any more; a closed
        connection's FIFO is empty). Several tasks may wait at once, each with
        its own ``limit``.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit!r}")
        out = self._out
        if out.buffered_bytes <= limit:
            return True
        if timeout_ms is not None and timeout_ms <= 0:
            return False
        timer: TimerHandle | None = None
        waiting: asyncio.Future[None] | None = None
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

        try:
            if timeout_ms is not None:
                timer = self.router.clock.call_later(timeout_ms, expire)
            while True:
                if out.buffered_bytes <= limit:
                    return True
                if timed_out or self.state == "closing" or self.state == "closed":
                    return False
                if out.closing is not None:
                    return False
                # Done when the bytes reached the limit, but frames may have been
                # queued since: the loop looks again.
                waiting = out.wait_room(limit)
                await waiting
        finally:
            if timer is not None:
                timer.cancel()
            if waiting is not None and not waiting.done():
                waiting.cancel()  # the outbox forgets it on its next look

    @property
    def close_requested(self) -> tuple[int, str] | None:
        """``(code, reason)`` once the router asked for the socket to be closed."""
        c = self._out.closing
        return (c.code, c.reason) if c is not None else None

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def __repr__(self) -> str:
        return f"<Connection {self.client_id} {self.state}>"

    # ------------------------------------------------------------- lifecycle

    async def open(self) -> bool:
        """Run plugin and ``on_open`` hooks. ``False`` if the connection was refused
        (a hook raised ``CloseError`` or failed); the close is then queued."""
        router = self.router
        router._connections[self.client_id] = self
        pubsub = router.pubsub
        try:
            if pubsub is not None:
                await pubsub.connection_opened(self)
            if router._open_hooks:
                ctx = OpenContext(self)
                for hook in router._open_hooks:
                    result = hook(ctx)
                    if inspect.isawaitable(result):
                        await result
        except CloseError as exc:
            self.request_close(exc.code, exc.reason)
            return False
        except Exception as exc:
            await self._report(exc, "$ws:open", None)
            self.request_close(CLOSE_INTERNAL_ERROR, "Internal error")
            return False
        if self._out.closing is not None:
            return False
        self.state = "open"
        if self.heartbeat is not None:
            self._hb = Heartbeat(self, self.heartbeat)
            self._hb.start()
        if self._inbox and self._worker is None:
            self._start_worker()
        return True

    def request_close(self, code: int = 1000, reason: str = "", *, discard: bool = False) -> None:
        """Ask the transport to close the socket after the frames already queued
        (or at once with ``discard``: queued frames are dropped and a pump stuck
        writing to a peer that stopped reading is interrupted). Inbound frames are
        ignored from now on."""
        if self._out.closing is not None or self.state == "closed":
            return
        self._out.close(code, reason, discard=discard)
        self._wake_reader()

    async def handle_close(self, code: int | None = None, reason: str = "") -> None:
        """Tell the router the socket is closed. Idempotent; awaits the cleanup.

        Queued inbound frames are dropped, running RPCs are cancelled (reason
        ``"disconnect"``), a running event handler finishes, then ``on_close``
        hooks and plugin cleanup run once.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))
        await asyncio.shield(self._closing)

    async def _close(self, code: int | None, reason: str) -> None:
        was_open = self.state == "open"
        self.state = "closing"
        self._out.release_waiters()  # the FIFO will not drain: wait_buffered_at_most() returns
        self.close_code = code
        self.close_reason = reason
        self._inbox = None
        self._inbox_bytes = 0
        self._wake_reader()
        if self._hb is not None:
            self._hb.stop()
        for ctx in list(self._rpcs.values()) if self._rpcs else ():
            ctx._cancel("disconnect")
        worker = self._worker
        if worker is not None:
            await asyncio.wait((worker,))
        router = self.router
        if was_open and router._close_hooks:
            close_ctx = CloseContext(self, code, reason)
            for hook in router._close_hooks:
                try:
                    result = hook(close_ctx)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    await self._report(exc, "$ws:close", None)
        pubsub = router.pubsub
        if pubsub is not None:
            try:
                await pubsub.connection_closed(self)
            except Exception as exc:
                await self._report(exc, "$ws:close", None)
        if self._background:
            await asyncio.wait(tuple(self._background))
        self.state = "closed"
        self._out.clear()
        router._connections.pop(self.client_id, None)
        self._out.wake()

    # --------------------------------------------------------------- inbound

    def receive(self, frame: str | bytes | bytearray | memoryview) -> bool:
        """Hand one inbound frame to the router. Never raises, never blocks.

        Returns ``False`` when the inbound queue is full (more than
        ``max_inbound_messages`` frames or ``max_inbound_bytes`` bytes waiting for
        their handlers): the adapter should stop reading from the socket until
        :meth:`inbound_room` returns. Frames handed over anyway are still queued.
        """
        state = self.state
        if (state != "open" and state != "connecting") or self._out.closing is not None:
            return True
        now = self.router.clock.now()
        if self._hb is not None:
            self._hb.seen(now)
        limit = self.max_message_bytes
        size = len(frame)
        if size * 4 > limit and _over_limit(frame, size, limit):
            self._spawn(
                self._report(
                    ProtocolError(
                        ErrorCode.RESOURCE_EXHAUSTED,
                        f"Message exceeds max size: {limit} bytes",
                    ),
                    None,
                    None,
                )
            )
            self.request_close(CLOSE_MESSAGE_TOO_BIG, "Message too big")
            return True
        item: InboundItem
        try:
            item = decode_frame(frame)
        except ProtocolError as exc:
            item = exc
        except Exception as exc:  # decode_frame should only raise ProtocolError
            item = ProtocolError(ErrorCode.INVALID_ARGUMENT, "Invalid message: not decodable")
            item.__cause__ = exc
        else:
            message_type = item["type"]
            if message_type == HEARTBEAT:
                self.send_frame(encode_envelope(HEARTBEAT_ACK, {"ts": int(now)}))
                return True
            if message_type == ABORT:
                self._abort(item)
                return True
        return self._enqueue(now, item, size)

    def _enqueue(self, received_at: float, item: InboundItem, size: int) -> bool:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = []
        inbox.append((received_at, item, size))
        if len(inbox) == _DEEP_INBOX and type(inbox) is list:
            # A burst: a deque takes from the front in O(1) (list.pop(0) moves the rest).
            self._inbox = deque(inbox)
        self._inbox_bytes += size
        if self._worker is None:
            if self.state == "open":
                self._start_worker()
        else:
            waiter = self._inbox_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return len(inbox) < self.max_inbound_messages and self._inbox_bytes < self.max_inbound_bytes

    @property
    def inbound_full(self) -> bool:
        """The inbound queue is at its bound (the adapter should pause reading)."""
        inbox = self._inbox
        return inbox is not None and (
            len(inbox) >= self.max_inbound_messages or self._inbox_bytes >= self.max_inbound_bytes
        )

    async def inbound_room(self) -> None:
        """Wait until the inbound queue has drained to half its bound, or the
        connection is closing (then the adapter reads on, to see the close)."""
        while self._inbound_backlogged() and self.state in ("connecting", "open"):
            if self._out.closing is not None:
                return
            waiter = self._room_waiter
            if waiter is None or waiter.done():
                waiter = self._room_waiter = asyncio.get_running_loop().create_future()
            await waiter

    def _inbound_backlogged(self) -> bool:
        inbox = self._inbox
        return inbox is not None and (
            len(inbox) * 2 > self.max_inbound_messages
            or self._inbox_bytes * 2 > self.max_inbound_bytes
        )

    def _take_inbound(self) -> tuple[float, InboundItem]:
        inbox = self._inbox
        assert inbox is not None
        if isinstance(inbox, list):  # short queues (the usual case): a list beats a deque
            received_at, item, size = inbox.pop(0)
        else:
            received_at, item, size = inbox.popleft()
            if not inbox:
                self._inbox = None  # the burst is over: a list again next time
        self._inbox_bytes -= size
        if self._room_waiter is not None and not self._inbound_backlogged():
            self._wake_reader()
        return received_at, item

    def _wake_reader(self) -> None:
        waiter = self._room_waiter
        if waiter is not None:
            self._room_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def handle_pong(self) -> None:
        """The transport saw a pong (or other sign of life)."""
        if self._hb is not None:
            self._hb.seen(self.router.clock.now())

    def _abort(self, obj: dict[str, Any]) -> None:
        cid = correlation_id(obj)
        now = self.router.clock.now()
        if cid is None:
            err = ProtocolError(
                ErrorCode.INVALID_ARGUMENT,
                "$ws:abort requires meta.correlationId",
                message_type=ABORT,
            )
            self._enqueue(now, err, 0)
            return
        ctx = self._rpcs.get(cid) if self._rpcs else None
        if ctx is not None:
            ctx._cancel("client-abort")
        elif not abort_queued(self, cid):
            return
        self._spawn(
            self._report(
                ProtocolError(ErrorCode.CANCELLED, "RPC cancelled by the client"),
                ABORT,
                ctx,
            )
        )

    def _start_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if _EAGER_TASKS and self.router.eager_start:
            # The worker task starts at once, inside this call: a handler that does
            # not wait for anything has answered before receive() returns, without an
            # event-loop round trip. It still runs in its own task (current_task() is
            # the worker), so cancellation and asyncio.timeout() behave as usual.
            self._worker = _STARTING  # frames arriving meanwhile queue behind it
            worker = asyncio.Task(  # type: ignore[call-arg, unused-ignore]
                run_worker(self), loop=loop, name=_WORKER_TASK_NAME, eager_start=True
            )
            if not worker.done():
                self._worker = worker  # it waits for something: it is the worker now
            # (done: run_worker has already cleared _worker, or started a successor)
        else:
            self._worker = loop.create_task(run_worker(self), name=_WORKER_TASK_NAME)

    # -------------------------------------------------------------- outbound

    def encode(
        self,
        schema: MessageSchema[Any],
        payload: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        message_type: str | None = None,
    ) -> str:
        """Build one outbound frame for ``schema`` (validating the payload unless
        outbound validation is off). Raises ``OutboundValidationError``."""
        codec = schema.payload
        text: str | None = None
        if codec is None:
            if payload is not None:
                raise TypeError(f"Message {schema.type!r} has no payload")
            wire: Any = None
        else:
            if payload is None:
                raise TypeError(f"Message {schema.type!r} needs a payload")
            validate = schema.validate_outgoing
            if validate is None:
                validate = self.router.validate_outgoing
            try:
                if validate and schema._encode_json is not None:
                    text = schema._encode_json(payload)  # the codec's own JSON writer
                else:
                    wire = codec.encode(payload, validate=validate)
            except ValidationError as exc:
                raise OutboundValidationError(schema.type, exc.issues) from None
        out_meta: dict[str, Any]
        out_meta = {k: v for k, v in meta.items() if k not in _OUT_META_DROP} if meta else {}
        if correlation_id is not None:
            out_meta["correlationId"] = correlation_id
        if text is not None:
            head = _frame_head(message_type or schema.type)
            if not out_meta:
                return f'{head}{{}},"payload":{text}}}'
            if correlation_id is not None and len(out_meta) == 1 and correlation_id.isascii():
                cid = encode_basestring(correlation_id)
                return f'{head}{{"correlationId":{cid}}},"payload":{text}}}'
            return f'{head}{dumps(out_meta)},"payload":{text}}}'
        if codec is None:
            return dumps({"type": message_type or schema.type, "meta": out_meta})
        return dumps({"type": message_type or schema.type, "meta": out_meta, "payload": wire})

    def send(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Validate, serialize and queue one message (see ``ctx.send``)."""
        self.send_frame(self.encode(schema, payload, meta=meta, correlation_id=correlation_id))

    def send_error(
        self,
        kind: str,
        code: str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = _UNSET,
        correlation_id: str | None = None,
        sanitize: bool = False,
    ) -> bool:
        """Queue an ``ERROR``/``RPC_ERROR`` frame with the code's retry metadata
        (bounded in size; never raises, see :func:`wskit.core.encode_error`)."""
        frame = encode_error(
            kind,
            code,
            message,
            details,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            correlation_id=correlation_id,
            sanitize=sanitize,
        )
        return self.send_frame(frame, terminal=kind != ERROR)

    def send_frame(self, frame: str, *, terminal: bool = False) -> bool:
        """Queue a serialized frame; ``False`` if dropped (closed or overflow).

        ``terminal`` marks the last frame of an RPC (reply or ``RPC_ERROR``): under
        the ``"drop"`` policy it is queued even past the bound, so a request that
        got this far always gets its answer. Never raises.
        """
        if self.state == "closed" or self._out.closing is not None:
            return False
        out = self._out
        if out.push(frame):
            return True
        if terminal and self.overflow == "drop":
            return out.push(frame, past_bound=True)
        return self._overflow()

    def _overflow(self) -> bool:
        if self.overflow == "close":
            self._spawn(
                self._report(
                    ProtocolError(
                        ErrorCode.RESOURCE_EXHAUSTED, "Outbound buffer full: closing (1013)"
                    ),
                    None,
                    None,
                )
            )
            self.request_close(CLOSE_TRY_AGAIN_LATER, "Outbound buffer full", discard=True)
            return False
        out = self._out
        if not out.overflow_notified:
            out.overflow_notified = True
            # Past the bound on purpose: one small frame tells the client what it lost.
            notice = encode_error(
                ERROR, ErrorCode.RESOURCE_EXHAUSTED, "Outbound buffer full: messages dropped"
            )
            out.push(notice, past_bound=True)
        return False

    def pop_outbound(self) -> OutboundItem | None:
        """Take the next outbound item (a frame, a ping or the final close)."""
        return self._out.pop()

    async def pump(self, transport: Transport) -> None:
        """Write the outbound FIFO to ``transport`` until the connection closes.

        Returns after sending the requested close, or once the connection is
        closed. Transport errors propagate to the caller.
        """
        await self._out.pump(transport, lambda: self.state == "closed")

    def attach(self, transport: Transport, *, on_error: Callable[[BaseException], None]) -> None:
        """The alternative to :meth:`pump`: write through ``transport`` without a
        task of the adapter's. Frames go out directly while nothing is queued;
        a pump task runs only while the FIFO has items (a slow peer, pings, the
        close). ``on_error(exc)`` is called if a write fails (drop the socket)."""
        self._out.attach(transport, on_error)

    async def wait_written(self) -> None:
        """With :meth:`attach`: wait until what is queued was written (for the
        adapter, before it finishes a close the router requested)."""
        await self._out.wait_written()

    # ------------------------------------------------------------- plumbing

    def run_callback(self, callback: Callable[[], Any]) -> None:
        """Run a user callback now; await it in the background if it is async.
        Failures go to ``on_error`` hooks."""
        try:
            result = callback()
        except Exception as exc:
            self._spawn(self._report(exc, None, None))
            return
        if inspect.isawaitable(result):

            async def _await() -> None:
                try:
                    await result
                except Exception as exc:
                    await self._report(exc, None, None)

            self._spawn(_await())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        background = self._background
        if background is None:
            background = self._background = set()
        background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        if self._background is not None:
            self._background.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._crashed(exc)

    def _crashed(self, exc: BaseException) -> None:
        """A task of this connection ended with an exception wskit did not catch
        (a bug): log it and tell the router's error observers."""
        _log.error("wskit: a task of connection %s crashed", self.client_id, exc_info=exc)
        self.router._notify_observers(exc, ErrorInfo(self, "$ws:crash", None))

    async def _report(
        self, exc: BaseException, message_type: str | None, ctx: MessageContext[Any, Any] | None
    ) -> None:
        await self.router._report(exc, ErrorInfo(self, message_type, ctx))

    def is_idle(self) -> bool:
        """No inbound work queued or running, no background callbacks pending."""
        return not self._inbox and self._worker is None and not self._background

    async def wait_idle(self) -> None:
        """Wait until queued inbound frames and their handlers are done."""
        while True:
            worker = self._worker
            pending = [t for t in (worker, self._closing) if t is not None and not t.done()]
            pending.extend(self._background or ())
            if not pending:
                return
            if len(pending) == 1 and pending[0] is worker:
                await self._wait_worker(worker)
            else:
                await asyncio.wait(pending)

    async def _wait_worker(self, worker: asyncio.Task[None]) -> None:
        # The worker wakes this wait itself as it ends (_worker_ended), so the
        # waiter resumes at the next loop iteration; waiting for the task to be done
        # takes two more. Its done callback stays as a fallback (a task cancelled
        # before it first ran ends without running run_worker at all).
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._idle_waiters
        if waiters is None:
            waiters = self._idle_waiters = []
        waiters.append(waiter)

        def fallback(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        worker.add_done_callback(fallback)
        try:
            await waiter
        finally:
            worker.remove_done_callback(fallback)
            waiters = self._idle_waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    def _worker_ended(self) -> None:
        """The worker cleared ``_worker``: wake every :meth:`wait_idle`."""
        waiters = self._idle_waiters
        if waiters is not None:
            self._idle_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


def _over_limit(frame: str | bytes | bytearray | memoryview, size: int, limit: int) -> bool:
    """The frame is larger than ``limit`` UTF-8 bytes (``size`` is its ``len``)."""
    if size > limit:
        return True
    return isinstance(frame, str) and len(frame.encode("utf-8", "replace")) > limit


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
