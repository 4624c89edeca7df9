"""One client connection as the router sees it: sans-I/O.

An adapter (``wskit.aiohttp``, the test harness) creates a connection with
:meth:`Router.connect`, then:

1. ``await conn.open()`` (runs ``on_open`` hooks; ``False`` means it was refused),
2. runs ``await conn.pump(transport)`` in a task: it writes the outbound FIFO
   to the socket (frames, pings and the final close),
3. hands every inbound frame to ``conn.receive(frame)`` (synchronous), and
4. calls ``await conn.handle_close(code, reason)`` once the socket is closed.

Inbound frames of one connection are handled in arrival order, one at a time
(``max_concurrency`` on the router allows more). ``$ws:abort`` and
``__heartbeat`` are handled as they arrive, so an abort reaches a running RPC.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Protocol, TypeVar, cast

from wskit.core.context import CloseContext, MessageContext, OpenContext, RpcContext
from wskit.core.envelope import (
    ABORT,
    ERROR,
    HEARTBEAT,
    HEARTBEAT_ACK,
    RPC_ERROR,
    decode_frame,
    encode_envelope,
    is_reserved_type,
)
from wskit.core.errors import (
    _UNSET,
    ERROR_CODE_META,
    CloseError,
    ErrorCode,
    OutboundValidationError,
    ProtocolError,
    RpcError,
    ValidationError,
    sanitize_details,
)
from wskit.core.validation import validate_envelope

if TYPE_CHECKING:
    from wskit.core.clock import TimerHandle
    from wskit.core.router import Route, Router
    from wskit.core.schema import MessageSchema, RpcSchema

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

_OUT_META_DROP: Final = frozenset({"type", "correlationId", "clientId", "receivedAt"})

#: Close codes used by the core.
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN_LATER: Final = 1013


@dataclass(frozen=True, slots=True)
class HeartbeatOptions:
    """Opt-in liveness checks driven by the router clock.

    Every ``interval_ms`` without inbound traffic the transport sends a ping;
    with no pong or frame within ``timeout_ms`` the connection is stale:
    ``on_stale(connection)`` runs and the connection is closed with 1011.
    """

    interval_ms: float = 30_000
    timeout_ms: float = 5_000
    on_stale: Callable[[Connection[Any]], Any] | None = None


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
    saving a task switch per frame (pub/sub fan-out, request/response).
    """

    async def send(self, frame: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class _Ping:
    __slots__ = ()


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


_PING: Final = _Ping()

OutboundItem = str | _Ping | _Close


def _frame_size(frame: str) -> int:
    return len(frame) if frame.isascii() else len(frame.encode("utf-8"))


class Connection(Generic[D]):
    """Router-side state of one connection. Create with ``router.connect()``."""

    __slots__ = (
        "_background",
        "_close_requested",
        "_closing",
        "_direct",
        "_hb_stale",
        "_hb_timer",
        "_inbox",
        "_inbox_waiter",
        "_last_seen",
        "_out_bytes",
        "_out_waiter",
        "_outbox",
        "_overflow_notified",
        "_pump_idle",
        "_pump_interrupted",
        "_pump_task",
        "_rpcs",
        "_worker",
        "client_id",
        "close_code",
        "close_reason",
        "connected_at",
        "data",
        "extensions",
        "headers",
        "heartbeat",
        "max_buffered_bytes",
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
    ) -> None:
        if overflow not in ("close", "drop"):
            raise ValueError(f"overflow must be 'close' or 'drop', not {overflow!r}")
        self.router = router
        self.data = data
        self.client_id = client_id or str(uuid.uuid4())
        self.headers: Mapping[str, str] = dict(headers or {})
        self.max_message_bytes = max_message_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.overflow: OverflowPolicy = overflow
        self.heartbeat = heartbeat
        self.state: ConnectionState = "connecting"
        self.connected_at = router.clock.now()
        self.close_code: int | None = None
        self.close_reason = ""
        self.extensions: dict[str, Any] = {}
        self._inbox: deque[tuple[float, dict[str, Any] | ProtocolError]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._outbox: deque[OutboundItem] = deque()
        self._out_bytes = 0
        self._out_waiter: asyncio.Future[None] | None = None
        self._overflow_notified = False
        self._pump_task: asyncio.Task[Any] | None = None
        self._pump_interrupted = False
        self._pump_idle = False
        self._direct: Callable[[str], bool] | None = None
        self._rpcs: dict[str, RpcContext[Any, Any, D]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._close_requested: _Close | None = None
        self._closing: asyncio.Task[None] | None = None
        self._hb_timer: TimerHandle | None = None
        self._hb_stale: TimerHandle | None = None
        self._last_seen = self.connected_at

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
    def buffered_bytes(self) -> int:
        """Bytes of outbound frames waiting in this connection's FIFO."""
        return self._out_bytes

    @property
    def close_requested(self) -> tuple[int, str] | None:
        """``(code, reason)`` once the router asked for the socket to be closed."""
        c = self._close_requested
        return (c.code, c.reason) if c is not None else None

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
        if self._close_requested is not None:
            return False
        self.state = "open"
        if self.heartbeat is not None:
            self._hb_schedule()
        if self._inbox and self._worker is None:
            self._start_worker()
        return True

    def request_close(self, code: int = 1000, reason: str = "", *, discard: bool = False) -> None:
        """Ask the transport to close the socket after the frames already queued
        (or at once with ``discard``: queued frames are dropped and a pump stuck
        writing to a peer that stopped reading is interrupted). Inbound frames are
        ignored from now on."""
        if self._close_requested is not None or self.state == "closed":
            return
        if discard:
            self._outbox.clear()
            self._out_bytes = 0
        self._close_requested = close = _Close(code, reason)
        self._outbox.append(close)
        self._wake()
        pump = self._pump_task
        if discard and pump is not None and not pump.done() and pump is not asyncio.current_task():
            self._pump_interrupted = True
            pump.cancel()

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
        self.close_code = code
        self.close_reason = reason
        self._inbox.clear()
        self._hb_cancel()
        for ctx in list(self._rpcs.values()):
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
        self._outbox.clear()
        self._out_bytes = 0
        router._connections.pop(self.client_id, None)
        self._wake()

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    # --------------------------------------------------------------- inbound

    def receive(self, frame: str | bytes | bytearray | memoryview) -> None:
        """Hand one inbound frame to the router (never raises, never blocks)."""
        state = self.state
        if (state != "open" and state != "connecting") or self._close_requested is not None:
            return
        now = self.router.clock.now()
        self._seen(now)
        limit = self.max_message_bytes
        size = len(frame)
        if size * 4 > limit and (
            size > limit or (isinstance(frame, str) and len(frame.encode("utf-8")) > limit)
        ):
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
            return
        item: dict[str, Any] | ProtocolError
        try:
            item = decode_frame(frame)
        except ProtocolError as exc:
            item = exc
        else:
            message_type = item["type"]
            if message_type == HEARTBEAT:
                self.send_frame(encode_envelope(HEARTBEAT_ACK, {"ts": int(now)}))
                return
            if message_type == ABORT:
                self._abort(item)
                return
        self._enqueue(now, item)

    def handle_pong(self) -> None:
        """The transport saw a pong (or other sign of life)."""
        self._seen(self.router.clock.now())

    def _seen(self, now: float) -> None:
        self._last_seen = now
        if self._hb_stale is not None:
            self._hb_stale.cancel()
            self._hb_stale = None

    def _enqueue(self, received_at: float, item: dict[str, Any] | ProtocolError) -> None:
        self._inbox.append((received_at, item))
        if self._worker is None:
            if self.state == "open":
                self._start_worker()
        elif self._inbox_waiter is not None and not self._inbox_waiter.done():
            self._inbox_waiter.set_result(None)

    def _abort(self, obj: dict[str, Any]) -> None:
        meta = obj.get("meta")
        cid = meta.get("correlationId") if type(meta) is dict else None
        if type(cid) is not str:
            self._enqueue(
                self.router.clock.now(),
                ProtocolError(
                    ErrorCode.INVALID_ARGUMENT,
                    "$ws:abort requires meta.correlationId",
                    message_type=ABORT,
                ),
            )
            return
        ctx = self._rpcs.get(cid)
        if ctx is not None:
            ctx._cancel("client-abort")
        else:
            # Not started yet: drop it from the queue so it never runs.
            for entry in self._inbox:
                queued = entry[1]
                if isinstance(queued, dict):
                    qmeta = queued.get("meta")
                    if type(qmeta) is dict and qmeta.get("correlationId") == cid:
                        self._inbox.remove(entry)
                        break
            else:
                return
        self._spawn(
            self._report(
                ProtocolError(ErrorCode.CANCELLED, "RPC cancelled by the client"),
                obj.get("type"),
                ctx,
            )
        )

    def _start_worker(self) -> None:
        # A plain task, not an eager one (3.12+): measured end to end over aiohttp,
        # eager start cost more server CPU per round trip than it saved.
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        inbox = self._inbox
        router = self.router
        try:
            if router.max_concurrency == 1:
                while inbox and self.state == "open":
                    received_at, item = inbox.popleft()
                    await self._dispatch(received_at, item)
            else:
                await self._work_concurrently(router.max_concurrency)
        finally:
            self._worker = None

    async def _work_concurrently(self, limit: int) -> None:
        inbox = self._inbox
        running: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        try:
            while True:
                while inbox and self.state == "open" and len(running) < limit:
                    received_at, item = inbox.popleft()
                    running.add(loop.create_task(self._dispatch(received_at, item)))
                if not running:
                    return
                # Wake on a finished handler, or on a new frame while below the limit.
                arrival: asyncio.Future[None] = loop.create_future()
                self._inbox_waiter = arrival
                waiting: set[asyncio.Future[Any]] = {*running}
                if len(running) < limit:
                    waiting.add(arrival)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                self._inbox_waiter = None
                running = {t for t in running if not t.done()}
        finally:
            self._inbox_waiter = None
            if running:
                await asyncio.wait(running)

    async def _dispatch(self, received_at: float, item: dict[str, Any] | ProtocolError) -> None:
        if type(item) is not dict:
            assert isinstance(item, ProtocolError)
            self.send_error(ERROR, item.code, item.message, item.details)
            await self._report(item, item.message_type, None)
            return
        router = self.router
        message_type: str = item["type"]
        route = router._routes.get(message_type)
        if route is None:
            await self._no_route(item, message_type)
            return
        schema = route.schema
        try:
            payload, meta = validate_envelope(schema, item)
        except ValidationError as exc:
            cid = _correlation_id(item)
            kind = RPC_ERROR if (route.is_rpc and cid is not None) else ERROR
            self.send_error(kind, exc.code, exc.message, exc.details, correlation_id=cid)
            await self._report(exc, message_type, None)
            return
        chain = route.chain if route.chain is not None else router._build_chain(route)
        if not route.is_rpc:
            ctx: MessageContext[Any, D] = MessageContext(self, schema, payload, meta, received_at)
            try:
                await chain(ctx)
            except Exception as exc:
                self._send_handler_error(ERROR, exc, meta.get("correlationId"))
                await self._report(exc, message_type, ctx)
            return
        await self._dispatch_rpc(route, chain, payload, meta, received_at)

    async def _dispatch_rpc(
        self,
        route: Route[D],
        chain: Callable[[Any], Any],
        payload: Any,
        meta: dict[str, Any],
        received_at: float,
    ) -> None:
        message_type = route.schema.type
        cid = meta.get("correlationId")
        if cid is None:
            exc = ValidationError(
                "RPC requests need meta.correlationId",
                [{"path": ["meta", "correlationId"], "message": "Required for RPC requests"}],
            )
            self.send_error(ERROR, exc.code, exc.message, exc.details)
            await self._report(exc, message_type, None)
            return
        if cid in self._rpcs:
            dup = ProtocolError(
                ErrorCode.ALREADY_EXISTS,
                "An RPC with this correlationId is already in flight",
                message_type=message_type,
            )
            self.send_error(RPC_ERROR, dup.code, dup.message, correlation_id=cid)
            await self._report(dup, message_type, None)
            return
        schema = cast("RpcSchema[Any, Any]", route.schema)
        ctx: RpcContext[Any, Any, D] = RpcContext(self, schema, payload, meta, received_at, cid)
        self._rpcs[cid] = ctx
        clock = self.router.clock
        if ctx.deadline is not None:
            ctx._timer = clock.call_later(ctx.deadline - clock.now(), lambda: self._expire(ctx))
        # The handler runs in this task; an abort or deadline cancels the task,
        # and the CancelledError is absorbed here (see RpcContext._cancel).
        ctx._task = asyncio.current_task()
        failure: Exception | None = None
        try:
            await chain(ctx)
        except asyncio.CancelledError:
            if not ctx._task_cancelled:  # cancelled from outside: the server is going away
                ctx._detach(self._rpcs)
                ctx._cancel("disconnect")
                raise
        except Exception as exc:
            failure = exc
        finally:
            ctx._detach(self._rpcs)
        if ctx._task_cancelled:
            _uncancel()
            return
        if failure is not None:
            if not ctx.terminal:
                ctx.terminal = True
                self._send_handler_error(RPC_ERROR, failure, cid)
            await self._report(failure, message_type, ctx)
        elif not ctx.terminal:
            ctx.terminal = True
            err = ProtocolError(
                ErrorCode.INTERNAL, "handler completed without a reply", message_type=message_type
            )
            self.send_error(RPC_ERROR, err.code, err.message, correlation_id=cid)
            await self._report(err, message_type, ctx)

    def _expire(self, ctx: RpcContext[Any, Any, D]) -> None:
        ctx._timer = None
        if ctx.terminal:
            return
        self.send_error(
            RPC_ERROR,
            ErrorCode.DEADLINE_EXCEEDED,
            "Deadline exceeded",
            correlation_id=ctx.correlation_id,
        )
        ctx._cancel("deadline")
        self._spawn(
            self._report(
                ProtocolError(
                    ErrorCode.DEADLINE_EXCEEDED, "Deadline exceeded", message_type=ctx.type
                ),
                ctx.type,
                ctx,
            )
        )

    async def _no_route(self, item: dict[str, Any], message_type: str) -> None:
        cid = _correlation_id(item)
        if is_reserved_type(message_type):
            err = ProtocolError(
                ErrorCode.INVALID_ARGUMENT,
                f"Reserved type cannot be handled by user code: {message_type!r}",
                message_type=message_type,
            )
            self.send_error(ERROR, err.code, err.message, correlation_id=cid)
        else:
            err = ProtocolError(
                ErrorCode.UNIMPLEMENTED,
                f"No handler registered for message type: {message_type!r}",
                message_type=message_type,
            )
            if self.router.on_unknown == "error":
                kind = RPC_ERROR if cid is not None else ERROR
                self.send_error(kind, err.code, err.message, correlation_id=cid)
        await self._report(err, message_type, None)

    def _send_handler_error(self, kind: str, exc: Exception, cid: Any) -> None:
        cid = cid if type(cid) is str else None
        if isinstance(exc, RpcError):
            self.send_error(
                kind,
                exc.code,
                exc.message,
                exc.details,
                retryable=exc.retryable,
                retry_after_ms=exc.retry_after_ms if exc.retry_after_ms is not None else _UNSET,
                correlation_id=cid,
                sanitize=True,
            )
            return
        message = "Internal server error"
        if self.router.debug:
            message = f"{type(exc).__name__}: {exc}"
        self.send_error(kind, ErrorCode.INTERNAL, message, correlation_id=cid)

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
                wire = codec.encode(payload, validate=validate)
            except ValidationError as exc:
                raise OutboundValidationError(schema.type, exc.issues) from None
        out_meta: dict[str, Any]
        out_meta = {k: v for k, v in meta.items() if k not in _OUT_META_DROP} if meta else {}
        if correlation_id is not None:
            out_meta["correlationId"] = correlation_id
        return encode_envelope(
            message_type or schema.type, out_meta, wire, has_payload=codec is not None
        )

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
        """Queue an ``ERROR``/``RPC_ERROR`` frame with the code's retry metadata."""
        return self.send_frame(
            _error_frame(
                kind,
                code,
                message,
                details,
                retryable=retryable,
                retry_after_ms=retry_after_ms,
                correlation_id=correlation_id,
                sanitize=sanitize,
            )
        )

    def send_frame(self, frame: str) -> bool:
        """Queue a serialized frame; ``False`` if dropped (closed or overflow)."""
        if self.state == "closed" or self._close_requested is not None:
            return False
        if (
            self._pump_idle
            and not self._outbox
            and self._direct is not None
            and self._direct(frame)
        ):
            return True  # written straight to the socket: FIFO empty, pump asleep
        size = _frame_size(frame)
        if self._out_bytes + size > self.max_buffered_bytes and self._outbox:
            return self._overflow()
        self._outbox.append(frame)
        self._out_bytes += size
        self._wake()
        return True

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
        if not self._overflow_notified:
            self._overflow_notified = True
            # Past the bound on purpose: one small frame tells the client what it lost.
            frame = _error_frame(
                ERROR, ErrorCode.RESOURCE_EXHAUSTED, "Outbound buffer full: messages dropped"
            )
            self._outbox.append(frame)
            self._out_bytes += _frame_size(frame)
            self._wake()
        return False

    def pop_outbound(self) -> OutboundItem | None:
        """Take the next outbound item (a frame, a ping or the final close)."""
        if not self._outbox:
            return None
        item = self._outbox.popleft()
        if type(item) is str:
            self._out_bytes -= _frame_size(item)
            if not self._outbox:
                self._out_bytes = 0
                self._overflow_notified = False
        return item

    def _wake(self) -> None:
        waiter = self._out_waiter
        if waiter is not None:
            self._out_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def pump(self, transport: Transport) -> None:
        """Write the outbound FIFO to ``transport`` until the connection closes.

        Returns after sending the requested close, or once the connection is
        closed. Transport errors propagate to the caller.
        """
        loop = asyncio.get_running_loop()
        outbox = self._outbox
        self._pump_task = asyncio.current_task()
        self._direct = getattr(transport, "send_nowait", None)
        try:
            while True:
                while outbox:
                    item = self.pop_outbound()
                    if type(item) is str:
                        await transport.send(item)
                    elif type(item) is _Ping:
                        await transport.ping()
                    elif isinstance(item, _Close):
                        await transport.close(item.code, item.reason)
                        return
                if self.state == "closed":
                    return
                waiter = loop.create_future()
                self._out_waiter = waiter
                self._pump_idle = True
                try:
                    await waiter
                finally:
                    self._pump_idle = False
        except asyncio.CancelledError:
            close = self._close_requested
            if not self._pump_interrupted or close is None:
                raise
            self._pump_interrupted = False
            _uncancel()
            await transport.close(close.code, close.reason)
        finally:
            self._pump_task = None
            self._direct = None

    # ------------------------------------------------------------- heartbeat

    def _hb_schedule(self) -> None:
        hb = self.heartbeat
        assert hb is not None
        self._hb_timer = self.router.clock.call_later(hb.interval_ms, self._hb_tick)

    def _hb_cancel(self) -> None:
        for timer in (self._hb_timer, self._hb_stale):
            if timer is not None:
                timer.cancel()
        self._hb_timer = self._hb_stale = None

    def _hb_tick(self) -> None:
        hb = self.heartbeat
        if hb is None or self.state != "open" or self._close_requested is not None:
            return
        clock = self.router.clock
        if self._hb_stale is None and clock.now() - self._last_seen >= hb.interval_ms:
            self._outbox.append(_PING)
            self._wake()
            self._hb_stale = clock.call_later(hb.timeout_ms, self._hb_expired)
        self._hb_schedule()

    def _hb_expired(self) -> None:
        self._hb_stale = None
        hb = self.heartbeat
        if hb is None or self.state != "open":
            return
        if hb.on_stale is not None:
            self.run_callback(lambda: hb.on_stale(self) if hb.on_stale else None)
        self._hb_cancel()
        self.request_close(CLOSE_INTERNAL_ERROR, "Heartbeat timeout", discard=True)

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
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
            pending = [t for t in (self._worker, self._closing) if t is not None and not t.done()]
            pending.extend(self._background)
            if not pending:
                return
            await asyncio.wait(pending)


def _error_frame(
    kind: str,
    code: str,
    message: str | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    retryable: bool | None = None,
    retry_after_ms: int | None = _UNSET,
    correlation_id: str | None = None,
    sanitize: bool = False,
) -> str:
    """An ``ERROR``/``RPC_ERROR`` frame with the code's retry metadata."""
    info = ERROR_CODE_META.get(code)
    body: dict[str, Any] = {
        "code": code,
        "message": message or (info.description if info is not None else code),
    }
    if details:
        clean = sanitize_details(details) if sanitize else dict(details)
        if clean:
            body["details"] = clean
    if retry_after_ms is _UNSET:
        if info is not None and info.suggest_backoff_ms is not None:
            body["retryAfterMs"] = info.suggest_backoff_ms
    elif info is None or info.retry_after != "forbidden":
        body["retryAfterMs"] = retry_after_ms
    if retryable is not None:
        body["retryable"] = retryable
    meta = {"correlationId": correlation_id} if correlation_id is not None else {}
    return encode_envelope(kind, meta, body, has_payload=True)


def _uncancel() -> None:
    # Python 3.11+ counts cancellation requests; balance the one we absorbed.
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


def _correlation_id(obj: dict[str, Any]) -> str | None:
    meta = obj.get("meta")
    if type(meta) is dict:
        cid = meta.get("correlationId")
        if type(cid) is str:
            return cid
    return None
