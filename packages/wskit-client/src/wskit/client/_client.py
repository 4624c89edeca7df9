"""The reconnecting, typed client (``wskit.client.Client``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random as _random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from wskit.client._follow import SubscribeFn, TopicFollow, parse_position
from wskit.client._message import (
    ClientErrorInfo,
    Compat,
    Message,
    SendStatus,
    build_meta,
    encode_envelope,
    encode_message,
    error_from_frame,
)
from wskit.client.auth import AuthOptions, apply_token
from wskit.client.backoff import ReconnectOptions
from wskit.client.errors import ConnectError, QueueOverflowError, RequestTimeoutError, StateError
from wskit.client.retry import RetryPolicy
from wskit.core.clock import Clock, SystemClock
from wskit.core.envelope import (
    ABORT,
    ERROR,
    HEARTBEAT_ACK,
    RPC_ERROR,
    RPC_PROGRESS,
    decode_frame,
)
from wskit.core.errors import (
    ConnectionClosedError,
    ErrorCode,
    Issue,
    ProtocolError,
    RpcError,
    ValidationError,
)
from wskit.core.pubsub import TOPIC_POSITION, TOPIC_STATUS, StreamPosition, TopicStatus
from wskit.core.schema import MessageSchema, RpcSchema
from wskit.core.validation import validate_envelope

if TYPE_CHECKING:
    from wskit.core.clock import TimerHandle

__all__ = ["Call", "Client", "ClientState", "QueuePolicy", "Stream", "create_client"]

P = TypeVar("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Any])

_log = logging.getLogger("wskit.client")

ClientState = Literal["closed", "connecting", "open", "closing", "reconnecting"]
QueuePolicy = Literal["drop-newest", "drop-oldest", "off"]

Unsubscribe = Callable[[], None]
ErrorCallback = Callable[[BaseException, ClientErrorInfo], Any]

_UNSET: Any = object()
_Entry = tuple[str, "Call[Any] | None"]

#: How many abandoned (timed-out or cancelled) correlationIds are remembered, so that
#: the server's late frames for them are recognised and dropped quietly.
_ABANDONED_MEMORY = 1024


# ----------------------------------------------------------------------------- Call


class Call(Generic[R]):
    """One in-flight request, returned by :meth:`Client.call`.

    - ``await call`` (or ``await call.result()``) gives the validated reply
      payload (type ``R``); ``await call.reply()`` the whole :class:`Message`.
    - ``async for update in call.progress()`` yields progress updates (validated
      against the response schema) and ends when the call completes. Updates are
      buffered from the start, so the iterator may be opened at any time.
    - ``call.cancel()`` — or cancelling the task awaiting the call — cancels it:
      if it was already sent, ``$ws:abort`` tells the server to cancel the handler.
    """

    __slots__ = (
        "_client",
        "_deadline",
        "_entry",
        "_future",
        "_idempotent",
        "_on_progress",
        "_progress",
        "_progress_waiter",
        "_resent",
        "_schema",
        "_sent",
        "_timeout_ms",
        "correlation_id",
    )

    def __init__(
        self,
        client: Client,
        schema: RpcSchema[Any, R],
        correlation_id: str,
        frame: str,
        *,
        timeout_ms: float | None,
        idempotent: bool,
        on_progress: Callable[[R], Any] | None,
        buffer_progress: bool,
    ) -> None:
        self._client = client
        self._schema = schema
        self.correlation_id = correlation_id
        self._entry: _Entry = (frame, self)
        self._timeout_ms = timeout_ms
        self._deadline: float | None = None
        self._idempotent = idempotent
        self._on_progress = on_progress
        self._progress: deque[R] | None = deque() if buffer_progress else None
        self._progress_waiter: asyncio.Future[None] | None = None
        self._sent = False
        self._resent = False
        self._future: asyncio.Future[Message[R]] = asyncio.get_running_loop().create_future()

    # -- public

    @property
    def sent(self) -> bool:
        """Whether the request is written to the current connection."""
        return self._sent

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        """Cancel the request (sends ``$ws:abort`` if it was sent). False if already done."""
        if self._future.done():
            return False
        self._future.cancel()
        self._cancelled()
        return True

    async def reply(self) -> Message[R]:
        """The full validated reply message."""
        try:
            return await self._future
        except asyncio.CancelledError:
            self._cancelled()
            raise

    async def result(self) -> R:
        """The validated reply payload."""
        return (await self.reply()).payload

    def __await__(self) -> Generator[Any, None, R]:
        return self.result().__await__()

    def progress(self) -> AsyncIterator[R]:
        """Progress updates, in order, until the call completes (success or not)."""
        if self._progress is None:
            raise StateError("progress() is only available on calls made with Client.call()")
        return self._iter_progress()

    async def _iter_progress(self) -> AsyncIterator[R]:
        buf = self._progress
        assert buf is not None
        while True:
            while buf:
                yield buf.popleft()
            if self._future.done():
                return
            waiter = asyncio.get_running_loop().create_future()
            self._progress_waiter = waiter
            await waiter

    def __repr__(self) -> str:
        state = "done" if self._future.done() else ("sent" if self.sent else "queued")
        return f"<Call {self._schema.type} {self.correlation_id} {state}>"

    # -- client side

    def _mark_sent(self) -> None:
        self._sent = True
        if self._deadline is None and self._timeout_ms is not None:
            client = self._client
            self._deadline = deadline = client._clock.now() + self._timeout_ms
            client._arm_sweep(deadline)

    def _finish(self) -> None:
        pending = self._client._pending
        if pending.get(self.correlation_id) is self:
            del pending[self.correlation_id]
        self._deadline = None
        if self._progress_waiter is not None:
            self._wake_progress()

    def _resolve(self, msg: Message[R]) -> None:
        if not self._future.done():
            self._future.set_result(msg)
            self._finish()

    def _fail(self, exc: BaseException) -> None:
        fut = self._future
        if not fut.done():
            fut.set_exception(exc)
            # The caller may have stopped listening (call() never awaited): do not
            # let asyncio log "exception was never retrieved" for that.
            fut.exception()
            self._finish()

    def _expire(self) -> None:
        if not self._future.done():
            self._client._send_abort(self)
            self._fail(RequestTimeoutError(cast(float, self._timeout_ms)))

    def _cancelled(self) -> None:
        """The future was cancelled (``cancel()`` or the awaiting task): clean up, abort."""
        if not self._future.done():
            self._future.cancel()
        if self._client._pending.get(self.correlation_id) is self:
            self._finish()
            self._client._send_abort(self)

    def _push_progress(self, value: R) -> None:
        if self._progress is not None:
            self._progress.append(value)
            self._wake_progress()
        cb = self._on_progress
        if cb is not None:
            self._client._run_callback(cb, value, RPC_PROGRESS)

    def _wake_progress(self) -> None:
        waiter = self._progress_waiter
        if waiter is not None:
            self._progress_waiter = None
            if not waiter.done():
                waiter.set_result(None)


# --------------------------------------------------------------------------- Stream


class Stream(Generic[P]):
    """``async for msg in client.stream(Schema)``: every valid message of one type.

    Registered at creation, so nothing is missed before the first ``__anext__``.
    Ends after :meth:`aclose`, or when the client closes. Holds at most
    ``max_buffer`` unread messages (the oldest is dropped beyond that and an
    ``overflow`` error is reported). Also an async context manager.
    """

    __slots__ = ("_buffer", "_client", "_closed", "_max", "_schema", "_unsubscribe", "_waiter")

    def __init__(self, client: Client, schema: MessageSchema[P], max_buffer: int) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be >= 1")
        self._client = client
        self._schema = schema
        self._max = max_buffer
        self._buffer: deque[Message[P]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._unsubscribe = client.on(schema, self._push)
        client._streams.add(self)

    def _push(self, msg: Message[P]) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self._max:
            self._buffer.popleft()
            self._client._report(
                QueueOverflowError(
                    f"Stream buffer full: dropping oldest {self._schema.type} message",
                    policy="drop-oldest",
                    max_size=self._max,
                ),
                ClientErrorInfo("overflow", self._schema.type),
            )
        self._buffer.append(msg)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving; buffered messages are still yielded, then iteration ends."""
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            self._client._streams.discard(self)
            self._wake()

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> Stream[P]:
        return self

    async def __anext__(self) -> Message[P]:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            await waiter

    async def __aenter__(self) -> Stream[P]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- routes


class _Handler:
    __slots__ = ("fn", "once")

    def __init__(self, fn: Callable[[Message[Any]], Any], once: bool) -> None:
        self.fn = fn
        self.once = once


class _Route:
    __slots__ = ("handlers", "schema")

    def __init__(self, schema: MessageSchema[Any]) -> None:
        self.schema = schema
        self.handlers: list[_Handler] = []


# --------------------------------------------------------------------------- Client


class Client:
    """A reconnecting, typed WebSocket client for wskit (and WS-Kit TS) servers.

    ::

        async with Client("ws://localhost:3000/ws") as client:
            client.on(Pong, lambda msg: print(msg.payload.reply))
            client.send(Ping, payload={"text": "hi"})
            user = await client.request(GetUser, payload={"user_id": "u1"})

    Options (keyword-only, defaults as in WS-Kit):

    - ``protocols``: subprotocols to offer.
    - ``reconnect``: :class:`ReconnectOptions` (or ``False`` to disable).
    - ``queue`` / ``queue_size``: offline queue policy (``"drop-newest"``,
      ``"drop-oldest"``, ``"off"``) and capacity (1000).
    - ``auto_connect``: the first ``send``/``request`` on a never-connected
      client starts ``connect()``.
    - ``pending_requests_limit``: requests pending at once (1000).
    - ``request_timeout_ms``: default request timeout (30000), counted from when
      the request is actually written to the socket; ``None`` disables it.
    - ``auth``: :class:`AuthOptions` (token by query parameter or subprotocol).
    - ``retry``: default :class:`RetryPolicy` for ``request()`` (off by default).
    - ``headers``: extra handshake headers (not available in browsers).
    - ``max_message_bytes``: largest inbound frame (1 MiB; ``None``: no limit).
    - ``open_timeout_ms``: handshake timeout (10000).
    - ``websocket_options``: passed to ``websockets.asyncio.client.connect``.
    - ``compat``: ``"wskit"`` (default) or ``"ws-kit-ts"`` for WS-Kit TypeScript
      servers, which drop requests carrying meta they do not know: the client then
      never writes ``meta.timeoutMs`` (its own timeout still applies), refuses
      idempotency keys (``ValidationError`` at the call) and sends no ``$ws:abort``.
    - ``clock`` / ``random``: time source and jitter source (inject in tests).

    A frame the client cannot use never stops it: it is reported to ``on_error``
    and the next frame is read. If the connection's reader or writer fails, the
    error is reported, the socket closed (1011) and the client reconnects.
    """

    def __init__(
        self,
        url: str,
        *,
        protocols: Sequence[str] | None = None,
        reconnect: ReconnectOptions | bool = True,
        queue: QueuePolicy = "drop-newest",
        queue_size: int = 1000,
        auto_connect: bool = False,
        pending_requests_limit: int = 1000,
        request_timeout_ms: float | None = 30_000,
        auth: AuthOptions | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int | None = 1 << 20,
        open_timeout_ms: float | None = 10_000,
        websocket_options: Mapping[str, Any] | None = None,
        compat: Compat = "wskit",
        clock: Clock | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if compat not in ("wskit", "ws-kit-ts"):
            raise ValueError(f"compat must be 'wskit' or 'ws-kit-ts', not {compat!r}")
        if queue not in ("drop-newest", "drop-oldest", "off"):
            raise ValueError(f"queue must be 'drop-newest', 'drop-oldest' or 'off', not {queue!r}")
        if queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        if pending_requests_limit < 1:
            raise ValueError("pending_requests_limit must be >= 1")
        if isinstance(reconnect, bool):
            reconnect = ReconnectOptions(enabled=reconnect)
        self.url = url
        self.protocols: list[str] = list(protocols or [])
        self.reconnect = reconnect
        self.queue_policy: QueuePolicy = queue
        self.queue_size = queue_size
        self.auto_connect = auto_connect
        self.pending_requests_limit = pending_requests_limit
        self.request_timeout_ms = request_timeout_ms
        self.auth = auth
        self.retry = retry
        self.headers = dict(headers or {})
        self.max_message_bytes = max_message_bytes
        self.open_timeout_ms = open_timeout_ms
        self.websocket_options = dict(websocket_options or {})
        self.compat: Compat = compat
        self._clock: Clock = clock or SystemClock()
        self._random = random

        self._state: ClientState = "closed"
        self._protocol = ""
        self._ws: ClientConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._manual_close = False
        self._connect_attempted = False
        self._open_waiters: list[asyncio.Future[None]] = []
        self._pending: dict[str, Call[Any]] = {}
        self._queue: deque[_Entry] = deque()
        self._outbox: deque[_Entry] = deque()
        self._writer_waiter: asyncio.Future[None] | None = None
        self._routes: dict[str, list[_Route]] = {}
        self._streams: set[Stream[Any]] = set()
        self._state_callbacks: list[Callable[[ClientState], Any]] = []
        self._error_callbacks: list[ErrorCallback] = []
        self._unhandled: Callable[[dict[str, Any]], Any] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._sweep_timer: TimerHandle | None = None
        self._sweep_due: float | None = None
        self._abandoned: dict[str, None] = {}
        self._follows: dict[str, TopicFollow] = {}
        self.close_code: int | None = None
        self.close_reason = ""

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ClientState:
        """``closed`` (initial), ``connecting``, ``open``, ``closing`` or ``reconnecting``."""
        return self._state

    @property
    def is_connected(self) -> bool:
        return self._state == "open"

    @property
    def protocol(self) -> str:
        """The subprotocol the server selected (``""`` when none)."""
        return self._protocol

    @property
    def pending_requests(self) -> int:
        """Requests waiting for a reply (queued or sent)."""
        return len(self._pending)

    @property
    def queued(self) -> int:
        """Messages and requests waiting in the offline queue."""
        return sum(1 for e in self._queue if e[1] is None or not e[1].done())

    def on_state(self, callback: Callable[[ClientState], Any]) -> Unsubscribe:
        """Call ``callback(state)`` on every state change; returns an unsubscribe function."""
        self._state_callbacks.append(callback)
        return lambda: _remove(self._state_callbacks, callback)

    def _set_state(self, state: ClientState) -> None:
        if state == self._state:
            return
        self._state = state
        for cb in tuple(self._state_callbacks):
            try:
                result = cb(state)
                if inspect.isawaitable(result):
                    self._spawn(_swallow(result))
            except Exception:
                _log.exception("wskit.client: on_state callback failed")

    async def wait_open(self) -> None:
        """Wait until the connection is open (at once if it is). Raises the
        connection error if the client closes (or gives up) first."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise StateError("Client is closed; call connect() first")
        waiter = asyncio.get_running_loop().create_future()
        self._open_waiters.append(waiter)
        await waiter

    # -------------------------------------------------------------- lifecycle

    async def connect(self) -> None:
        """Open the connection; idempotent (returns once open).

        While connecting or reconnecting it waits for that attempt. A failed
        *initial* connect raises :class:`ConnectError` and leaves the client
        ``closed`` (no reconnect loop); drops after a successful open reconnect
        per ``reconnect``.
        """
        if self._state == "open":
            return
        if self._state == "closing" and self._closing is not None:
            await asyncio.shield(self._closing)
        if self._state == "closed":
            self._start()
        await self.wait_open()

    def _start(self) -> None:
        self._manual_close = False
        self._connect_attempted = True
        self._set_state("connecting")
        self._supervisor = asyncio.get_running_loop().create_task(self._run())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good: cancel reconnects, clear the offline queue, fail pending
        requests with :class:`ConnectionClosedError`. Idempotent; never raises."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))
        closing = self._closing
        try:
            if asyncio.current_task() is not self._supervisor:
                await asyncio.shield(closing)
        finally:
            if closing.done() and self._closing is closing:
                self._closing = None

    async def _close(self, code: int, reason: str) -> None:
        self._manual_close = True
        queued, self._queue = self._queue, deque()
        supervisor = self._supervisor
        if self._state != "closed":
            self._set_state("closing")
        ws = self._ws
        if ws is not None:
            try:
                await ws.close(code, reason)
            except Exception:  # pragma: no cover - close() must never raise
                _log.debug("wskit.client: error while closing", exc_info=True)
        elif supervisor is not None:
            supervisor.cancel()
        if supervisor is not None and supervisor is not asyncio.current_task():
            await asyncio.wait((supervisor,))
        self._to_closed(ConnectionClosedError("Client closed"), queued)

    def _to_closed(self, exc: BaseException, dropped: Sequence[_Entry] = ()) -> None:
        """Enter ``closed``: fail every pending request, open waiters and streams."""
        self._supervisor = None if self._supervisor is asyncio.current_task() else self._supervisor
        if self._supervisor is not None and self._supervisor.done():
            self._supervisor = None
        self._set_state("closed")
        for _, call in dropped:
            if call is not None:
                call._fail(exc)
        # Queued plain messages survive a give-up (a later connect() sends them);
        # queued requests do not, or they could wait forever.
        if any(call is not None for _, call in self._queue):
            self._queue = deque(e for e in self._queue if e[1] is None)
        self._outbox.clear()
        for call in list(self._pending.values()):
            call._fail(exc)
        self._disarm_sweep()
        waiters, self._open_waiters = self._open_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # a connect() that nobody awaits must not log
        for stream in list(self._streams):
            stream.close()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------- supervisor

    async def _run(self) -> None:
        attempt = 0
        initial = True
        try:
            while True:
                self._set_state("connecting")
                try:
                    ws = await self._open_socket()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = exc if isinstance(exc, ConnectError) else _connect_error(exc)
                    if initial:
                        self._to_closed(error)
                        return
                    attempt += 1
                    if not await self._backoff(attempt, error):
                        return
                    continue
                if self._manual_close:
                    await ws.close()
                    return
                initial = False
                attempt = 0
                await self._session(ws)
                if self._closed_by_user():
                    return
                self._on_disconnect()
                lost = ConnectionClosedError(
                    f"Connection closed ({self.close_code} {self.close_reason})".rstrip()
                )
                if not self.reconnect.enabled:
                    self._to_closed(lost)
                    return
                attempt += 1
                if not await self._backoff(attempt, lost):
                    return
        except asyncio.CancelledError:
            if not self._manual_close:
                raise
        except Exception as exc:
            # A bug in the supervisor itself: never stay "open" with nobody reading.
            self._report(exc, ClientErrorInfo("internal", None, "supervisor"))
            failure = ConnectionClosedError(f"Client failed: {exc!r}")
            failure.__cause__ = exc
            self._to_closed(failure)

    def _closed_by_user(self) -> bool:
        # A method, not the attribute: close() flips it while _run() awaits.
        return self._manual_close

    async def _backoff(self, attempt: int, error: BaseException) -> bool:
        limit = self.reconnect.max_attempts
        if limit is not None and attempt > limit:
            self._to_closed(error)
            return False
        self._set_state("reconnecting")
        await self._sleep(self.reconnect.delay_ms(attempt, self._random))
        return True

    async def _sleep(self, delay_ms: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self._clock.call_later(delay_ms, wake)
        try:
            await fut
        finally:
            timer.cancel()

    async def _open_socket(self) -> ClientConnection:
        token: str | None = None
        auth = self.auth
        if auth is not None:
            try:
                got = auth.get_token()
                token = await got if inspect.isawaitable(got) else got
            except Exception as exc:
                raise ConnectError(f"Token provider failed: {exc!r}") from exc
        url, protocols = apply_token(self.url, self.protocols, token, auth)
        options: dict[str, Any] = {
            "subprotocols": cast("list[Subprotocol] | None", protocols),
            "max_size": self.max_message_bytes,
            "open_timeout": None if self.open_timeout_ms is None else self.open_timeout_ms / 1000,
        }
        if self.headers:
            options["additional_headers"] = self.headers
        options.update(self.websocket_options)
        return await ws_connect(url, **options)

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._protocol = ws.subprotocol or ""
        self.close_code = None
        self.close_reason = ""
        self._set_state("open")
        # Resent idempotent requests, then frames not yet written, then the offline queue.
        outbox = self._outbox
        queue, self._queue = self._queue, deque()
        outbox.extend(queue)
        waiters, self._open_waiters = self._open_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._abandoned.clear()
        for follow in tuple(self._follows.values()):  # resume where each one stopped
            follow._resubscribe()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read_loop(ws))
        writer = loop.create_task(self._write_loop(ws))
        tasks = (reader, writer)
        try:
            # The reader ends when the socket closes; the writer only by failing.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            failed = False
            for task, name in ((reader, "reader"), (writer, "writer")):
                if task.done() and not task.cancelled():
                    exc = task.exception()
                    if exc is not None and not isinstance(exc, ConnectionClosed):
                        failed = True
                        self._report(exc, ClientErrorInfo("internal", None, name))
            if failed:
                # Stay truthful: close the socket, so the client reconnects (or closes).
                try:
                    await ws.close(1011, "client error")
                except Exception:  # pragma: no cover - close() should not raise
                    ws.transport.abort()
            await asyncio.wait((reader,))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            if ws.close_code is None:  # left early (cancelled): nobody reads it any more
                ws.transport.abort()
            self._ws = None
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""

    async def _read_loop(self, ws: ClientConnection) -> None:
        """Every inbound frame, each inside its own failure boundary."""
        on_frame = self._on_frame
        async for frame in ws:
            try:
                on_frame(frame)
            except Exception as exc:
                self._report(exc, ClientErrorInfo("internal", None, frame))

    async def _write_loop(self, ws: ClientConnection) -> None:
        outbox = self._outbox
        loop = asyncio.get_running_loop()
        while True:
            while outbox:
                frame, call = outbox.popleft()
                if call is not None:
                    if call._future.done():
                        continue
                    call._mark_sent()
                await ws.send(frame)
            waiter = loop.create_future()
            self._writer_waiter = waiter
            await waiter

    def _arm_sweep(self, deadline: float) -> None:
        """One timer per client for every request timeout, due at the earliest deadline."""
        due = self._sweep_due
        if due is not None and due <= deadline:
            return
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        self._sweep_due = deadline
        self._sweep_timer = self._clock.call_later(deadline - self._clock.now(), self._sweep)

    def _sweep(self) -> None:
        self._sweep_timer = self._sweep_due = None
        # Loop timers may fire a hair early against the wall clock: allow 1 ms.
        now = self._clock.now() + 1.0
        earliest: float | None = None
        for call in list(self._pending.values()):
            deadline = call._deadline
            if deadline is None:
                continue
            if deadline <= now:
                call._expire()
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm_sweep(earliest)

    def _disarm_sweep(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        self._sweep_timer = self._sweep_due = None

    def _wake_writer(self) -> None:
        waiter = self._writer_waiter
        if waiter is not None:
            self._writer_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _on_disconnect(self) -> None:
        """The socket dropped (not a manual close): requeue what was not written,
        resend idempotent requests once, fail the rest."""
        requeue: list[_Entry] = []
        for call in list(self._pending.values()):
            if not call._sent:
                continue
            call._sent = False
            if call._idempotent and not call._resent:
                call._resent = True
                requeue.append(call._entry)
            else:
                call._fail(ConnectionClosedError())
        requeue.extend(e for e in self._outbox if e[1] is None or not e[1].done())
        self._outbox.clear()
        if requeue:
            requeue.extend(self._queue)
            self._queue = deque(requeue)

    # ---------------------------------------------------------------- inbound

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            obj = decode_frame(frame)
        except Exception as exc:  # ProtocolError; RecursionError and others from older cores
            self._report(exc, ClientErrorInfo("parse", None, frame))
            return
        message_type: str = obj["type"]
        if message_type == TOPIC_STATUS and self._on_topic_status(obj):
            return
        topic: str | None = None
        position: StreamPosition | None = None
        meta = obj.get("meta")
        if type(meta) is dict and TOPIC_POSITION in meta:
            # A topic with history: the position is the client's, not the schema's.
            raw = meta[TOPIC_POSITION]
            obj["meta"] = {k: v for k, v in meta.items() if k != TOPIC_POSITION}
            try:
                topic, position = parse_position(raw)
            except ValueError as exc:
                issues = [Issue(["meta", TOPIC_POSITION], str(exc))]
                self._report(
                    ValidationError(f"Invalid {message_type} message", issues),
                    ClientErrorInfo("validation", message_type, issues),
                )
            else:
                follow = self._follows.get(topic)
                if follow is not None and not follow._on_message(position):
                    _log.debug("wskit.client: dropping a message seen already: %s", position)
                    return
        if self._pending:
            meta = obj.get("meta")
            if type(meta) is dict:
                cid = meta.get("correlationId")
                if type(cid) is str:
                    call = self._pending.get(cid)
                    if call is not None:
                        self._on_reply(call, message_type, obj)
                        return
        routes = self._routes.get(message_type)
        if routes:
            for route in tuple(routes):
                self._dispatch(route, obj, topic, position)
            return
        self._on_unrouted(message_type, obj)

    def _on_topic_status(self, obj: dict[str, Any]) -> bool:
        """A ``$ws:topic-status`` frame: ``True`` when a followed topic took it."""
        try:
            status = TopicStatus.from_payload(obj.get("payload"))
        except ValueError as exc:
            issues = [Issue(["payload"], str(exc))]
            self._report(
                ValidationError(f"Invalid {TOPIC_STATUS} message", issues),
                ClientErrorInfo("validation", TOPIC_STATUS, issues),
            )
            return True
        follow = self._follows.get(status.topic)
        if follow is None:
            return False  # to on_unhandled, if set
        follow._on_status(status)
        return True

    def _on_unrouted(self, message_type: str, obj: dict[str, Any]) -> None:
        """A frame no request and no handler takes."""
        if message_type == HEARTBEAT_ACK:
            return
        if message_type == ERROR:
            self._report(error_from_frame(ERROR, obj), ClientErrorInfo("server", ERROR, obj))
            return
        meta = obj.get("meta")
        cid = meta.get("correlationId") if type(meta) is dict else None
        if type(cid) is not str:
            cid = None
        late = cid is not None and cid in self._abandoned  # timed out or cancelled
        if message_type not in (RPC_PROGRESS, RPC_ERROR):
            if self._unhandled is not None:
                self._run_callback(self._unhandled, obj, message_type)
                return
            if cid is None or late:
                return  # a type nobody listens to, or a late reply
        elif late:
            _log.debug("wskit.client: dropping late %s for %s", message_type, cid)
            return
        what = f"correlationId {cid!r}" if cid is not None else "no correlationId"
        self._report(
            ProtocolError(
                ErrorCode.NOT_FOUND,
                f"{message_type} frame with {what} matches no pending request",
                message_type=message_type,
            ),
            ClientErrorInfo("unmatched", message_type, obj),
        )

    def _dispatch(
        self,
        route: _Route,
        obj: dict[str, Any],
        topic: str | None = None,
        position: StreamPosition | None = None,
    ) -> None:
        schema = route.schema
        try:
            payload, meta = validate_envelope(schema, obj)
        except ValidationError as exc:
            self._report(exc, ClientErrorInfo("validation", schema.type, exc.issues))
            return
        except Exception as exc:  # a codec that cannot process this input
            err = _unvalidatable(schema.type, exc)
            self._report(err, ClientErrorInfo("validation", schema.type, err.issues))
            return
        msg: Message[Any] = Message(schema.type, meta, payload, topic, position)
        for handler in tuple(route.handlers):
            if handler.once:
                if handler not in route.handlers:
                    continue
                self._remove_handler(schema, handler)
            self._run_callback(handler.fn, msg, schema.type)

    def _on_reply(self, call: Call[Any], message_type: str, obj: dict[str, Any]) -> None:
        response = call._schema.response
        if message_type == RPC_PROGRESS:
            data = obj["payload"] if "payload" in obj else obj.get("data")
            codec = response.payload
            try:
                value = codec.decode(data) if codec is not None else data
            except ValidationError as exc:
                self._report(exc, ClientErrorInfo("validation", RPC_PROGRESS, exc.issues))
                return
            except Exception as exc:  # a codec that cannot process this input
                err = _unvalidatable(RPC_PROGRESS, exc)
                self._report(err, ClientErrorInfo("validation", RPC_PROGRESS, err.issues))
                return
            call._push_progress(value)
            return
        if message_type in (RPC_ERROR, ERROR):
            call._fail(error_from_frame(message_type, obj))
            return
        if message_type != response.type:
            call._fail(ValidationError(f"Expected type {response.type}, got {message_type}", []))
            return
        try:
            payload, meta = validate_envelope(response, obj)
        except ValidationError as exc:
            call._fail(ValidationError("Reply validation failed", exc.issues))
            return
        except Exception as exc:  # a codec that cannot process this input
            call._fail(_unvalidatable(message_type, exc, "Reply validation failed"))
            return
        call._resolve(Message(message_type, meta, payload))

    def _run_callback(self, fn: Callable[[Any], Any], arg: Any, message_type: str | None) -> None:
        try:
            result = fn(arg)
        except Exception as exc:
            self._report(exc, ClientErrorInfo("handler", message_type))
            return
        if inspect.isawaitable(result):
            self._spawn(self._await_callback(result, message_type))

    async def _await_callback(self, result: Awaitable[Any], message_type: str | None) -> None:
        try:
            await result
        except Exception as exc:
            self._report(exc, ClientErrorInfo("handler", message_type))

    def _report(self, exc: BaseException, info: ClientErrorInfo) -> None:
        if not self._error_callbacks:
            if info.kind == "internal":
                _log.error("wskit.client: internal error", exc_info=exc)
            else:
                _log.warning("wskit.client: %s error: %s", info.kind, exc)
            return
        for cb in tuple(self._error_callbacks):
            try:
                result = cb(exc, info)
                if inspect.isawaitable(result):
                    self._spawn(_swallow(result))
            except Exception:
                _log.exception("wskit.client: on_error callback failed")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---------------------------------------------------------- registration

    @overload
    def on(
        self, schema: MessageSchema[P], handler: Callable[[Message[P]], Any], /
    ) -> Unsubscribe: ...

    @overload
    def on(self, schema: MessageSchema[P], /) -> Callable[[H], H]: ...

    def on(
        self, schema: MessageSchema[P], handler: Callable[[Message[P]], Any] | None = None, /
    ) -> Unsubscribe | Callable[[H], H]:
        """Call ``handler(msg)`` for every valid inbound ``schema`` message.

        Handlers may be sync or async; errors go to ``on_error`` (kind
        ``"handler"``). Replies to pending requests are not dispatched here.
        Returns an unsubscribe function; without ``handler`` it is a decorator.
        """
        if handler is None:

            def decorator(fn: H) -> H:
                self._add_handler(schema, fn, once=False)
                return fn

            return decorator
        return self._add_handler(schema, handler, once=False)

    def once(
        self, schema: MessageSchema[P], handler: Callable[[Message[P]], Any], /
    ) -> Unsubscribe:
        """Like :meth:`on`, removed after the first valid message."""
        return self._add_handler(schema, handler, once=True)

    def off(
        self, schema: MessageSchema[Any], handler: Callable[[Message[Any]], Any] | None = None, /
    ) -> int:
        """Remove ``handler`` (or every handler) for ``schema``; returns how many."""
        removed = 0
        for route in list(self._routes.get(schema.type, ())):
            if route.schema is not schema:
                continue
            for h in list(route.handlers):
                if handler is None or h.fn == handler:
                    self._remove_handler(schema, h)
                    removed += 1
        return removed

    def stream(self, schema: MessageSchema[P], *, max_buffer: int = 1000) -> Stream[P]:
        """``async for msg in client.stream(Schema)``; see :class:`Stream`."""
        return Stream(self, schema, max_buffer)

    def on_unhandled(self, callback: Callable[[dict[str, Any]], Any] | None) -> Unsubscribe:
        """``callback(raw)`` for messages of a type with no handler (one slot)."""
        self._unhandled = callback

        def unsubscribe() -> None:
            if self._unhandled is callback:
                self._unhandled = None

        return unsubscribe

    def on_error(self, callback: ErrorCallback) -> Unsubscribe:
        """``callback(exc, info)`` for errors no caller can see (see :class:`ClientErrorInfo`)."""
        self._error_callbacks.append(callback)
        return lambda: _remove(self._error_callbacks, callback)

    def follow(
        self,
        topic: str,
        subscribe: SubscribeFn,
        *,
        since: StreamPosition | Mapping[str, Any] | None = None,
        on_status: Callable[[TopicStatus], Any] | None = None,
    ) -> TopicFollow:
        """Follow a topic with history across reconnects.

        ``subscribe(since)`` sends your own subscribe message (for example
        ``lambda since: client.send(Join, payload={"room": "r1", "since": since})``,
        whose handler calls ``ctx.topics.subscribe(topic, since=...)``). It is
        called now if the client is open, and on every (re)connect, with the
        position of the last message received on ``topic`` (``None`` the first
        time, or ``since`` when given: a position saved earlier). The server
        then replays what was missed. Messages seen already are dropped.

        ``on_status(status)`` (or :meth:`TopicFollow.on_status`) gets each
        :class:`~wskit.core.pubsub.TopicStatus`: ``recovered`` (nothing lost),
        ``gap`` (lost for good: reload; ``reason`` says why), ``subscribed``.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        if topic in self._follows:
            raise StateError(f"topic {topic!r} is followed already")
        position = StreamPosition.parse(since) if since is not None else None
        follow = TopicFollow(self, topic, subscribe, position)
        if on_status is not None:
            follow.on_status(on_status)
        self._follows[topic] = follow
        if self._state == "open":
            follow._resubscribe()
        return follow

    def followed(self, topic: str) -> TopicFollow | None:
        """The :class:`TopicFollow` of ``topic``, if it is followed."""
        return self._follows.get(topic)

    def _unfollow(self, follow: TopicFollow) -> None:
        if self._follows.get(follow.topic) is follow:
            del self._follows[follow.topic]

    def _add_handler(
        self, schema: MessageSchema[Any], fn: Callable[[Message[Any]], Any], *, once: bool
    ) -> Unsubscribe:
        if not isinstance(schema, MessageSchema):
            raise TypeError(f"expected a message schema, got {schema!r}")
        routes = self._routes.setdefault(schema.type, [])
        for route in routes:
            if route.schema is schema:
                break
        else:
            route = _Route(schema)
            routes.append(route)
        handler = _Handler(fn, once)
        route.handlers.append(handler)
        return lambda: self._remove_handler(schema, handler)

    def _remove_handler(self, schema: MessageSchema[Any], handler: _Handler) -> None:
        routes = self._routes.get(schema.type)
        if not routes:
            return
        for route in routes:
            if route.schema is schema and handler in route.handlers:
                route.handlers.remove(handler)
                if not route.handlers:
                    routes.remove(route)
                    if not routes:
                        del self._routes[schema.type]
                return

    # --------------------------------------------------------------- outbound

    def _auto_connect(self) -> None:
        if self.auto_connect and self._state == "closed" and not self._connect_attempted:
            self._start()

    def send(
        self,
        schema: MessageSchema[P],
        *,
        payload: P | Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> SendStatus:
        """Validate and send one message; returns :class:`SendStatus`.

        ``SENT`` when the connection is open, ``QUEUED`` when it went to the
        offline queue, ``DROPPED`` when the queue is off or full. An invalid
        payload or meta raises :class:`~wskit.core.errors.ValidationError`.
        """
        out_meta = build_meta(
            schema,
            meta,
            timestamp=int(self._clock.now()),
            correlation_id=correlation_id,
            idempotency_key=None,
            compat=self.compat,
        )
        frame = encode_message(schema, payload, out_meta)
        self._auto_connect()
        if self._state == "open":
            self._outbox.append((frame, None))
            self._wake_writer()
            return SendStatus.SENT
        return SendStatus.QUEUED if self._enqueue((frame, None)) else SendStatus.DROPPED

    def _enqueue(self, entry: _Entry) -> bool:
        policy = self.queue_policy
        if policy == "off":
            return False
        queue = self._queue
        if len(queue) >= self.queue_size:
            # Finished requests (cancelled, timed out) leave dead entries behind.
            queue = self._queue = deque(e for e in queue if e[1] is None or not e[1].done())
        if len(queue) >= self.queue_size:
            if policy == "drop-newest" or not queue:
                self._report_overflow("Queue overflow: dropping newest message")
                return False
            _, evicted = queue.popleft()
            if evicted is not None:
                evicted._fail(
                    QueueOverflowError(
                        "Queue overflow: request dropped from the offline queue",
                        policy=policy,
                        max_size=self.queue_size,
                    )
                )
            self._report_overflow("Queue overflow: dropping oldest message")
        queue.append(entry)
        return True

    def _report_overflow(self, message: str) -> None:
        self._report(
            QueueOverflowError(message, policy=self.queue_policy, max_size=self.queue_size),
            ClientErrorInfo(
                "overflow", None, {"policy": self.queue_policy, "max_size": self.queue_size}
            ),
        )

    def _send_abort(self, call: Call[Any]) -> None:
        # Never written: the writer and the queue skip finished calls.
        if not call._sent:
            return
        call._sent = False
        abandoned = self._abandoned
        abandoned[call.correlation_id] = None
        if len(abandoned) > _ABANDONED_MEMORY:
            del abandoned[next(iter(abandoned))]
        # WS-Kit TS servers refuse reserved types ($ws:...) and cannot cancel a handler.
        if self._state == "open" and self.compat == "wskit":
            self._outbox.append(
                (encode_envelope(ABORT, {"correlationId": call.correlation_id}), None)
            )
            self._wake_writer()

    def call(
        self,
        schema: RpcSchema[P, R],
        *,
        payload: P | Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout_ms: float | None = _UNSET,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        on_progress: Callable[[R], Any] | None = None,
    ) -> Call[R]:
        """Start a request and return its :class:`Call` (progress iterator, cancel).

        Same arguments as :meth:`request` (no retries). Raises at once for an
        invalid payload, a closed client, a disabled queue while disconnected or
        the pending-request limit.
        """
        return self._start_call(
            schema,
            payload,
            meta,
            timeout_ms,
            idempotency_key,
            correlation_id,
            on_progress,
            buffer_progress=True,
        )

    async def request(
        self,
        schema: RpcSchema[P, R],
        *,
        payload: P | Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout_ms: float | None = _UNSET,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        on_progress: Callable[[R], Any] | None = None,
        retry: RetryPolicy | None = _UNSET,
    ) -> R:
        """Send an RPC request and return the validated reply payload (type ``R``).

        - ``timeout_ms`` (default ``request_timeout_ms``) counts from when the
          request is written to the socket, not while it waits offline; on expiry
          ``$ws:abort`` is sent and :class:`RequestTimeoutError` raised.
        - ``on_progress(update)`` gets each progress update (sync or async).
        - ``idempotency_key`` goes out as ``meta.idempotencyKey``; such requests are
          resent once after a reconnect, others fail with ``ConnectionClosedError``
          (with ``compat="ws-kit-ts"`` a key raises ``ValidationError``).
        - ``retry`` (default: the client's ``retry``) retries retryable
          :class:`RpcError` replies, waiting ``retryAfterMs`` when given.
        - Cancelling the awaiting task sends ``$ws:abort``.

        Raises :class:`RpcError` (``RPC_ERROR`` reply), :class:`ServerError`,
        ``ValidationError`` (bad payload or reply), :class:`RequestTimeoutError`,
        ``ConnectionClosedError``, :class:`StateError` or :class:`QueueOverflowError`.
        """
        if self.auto_connect and self._state == "closed" and not self._connect_attempted:
            await self.connect()
        policy = self.retry if retry is _UNSET else retry
        attempt = 1
        while True:
            call = self._start_call(
                schema,
                payload,
                meta,
                timeout_ms,
                idempotency_key,
                correlation_id,
                on_progress,
                buffer_progress=False,
            )
            try:
                return (await call._future).payload
            except asyncio.CancelledError:
                call._cancelled()
                raise
            except RpcError as exc:
                if policy is None:
                    raise
                delay = policy.next_delay_ms(exc, attempt, self._random)
                if delay is None:
                    raise
            attempt += 1
            await self._sleep(delay)

    def _start_call(
        self,
        schema: RpcSchema[P, R],
        payload: Any,
        meta: Mapping[str, Any] | None,
        timeout_ms: float | None,
        idempotency_key: str | None,
        correlation_id: str | None,
        on_progress: Callable[[R], Any] | None,
        *,
        buffer_progress: bool,
    ) -> Call[R]:
        if not isinstance(schema, RpcSchema):
            raise TypeError(f"request() needs an RPC schema (rpc(...)), got {schema!r}")
        cid = correlation_id if correlation_id is not None else str(uuid.uuid4())
        if idempotency_key is None and meta:
            key = meta.get("idempotencyKey")
            if isinstance(key, str):
                idempotency_key = key
        out_meta = build_meta(
            schema,
            meta,
            timestamp=int(self._clock.now()),
            correlation_id=cid,
            idempotency_key=idempotency_key,
            compat=self.compat,
        )
        frame = encode_message(schema, payload, out_meta)
        self._auto_connect()
        state = self._state
        if state == "closed":
            raise StateError("Client is closed; call connect() first (or enable auto_connect)")
        if state != "open" and self.queue_policy == "off":
            raise StateError("Cannot send request while disconnected with queue disabled")
        if len(self._pending) >= self.pending_requests_limit:
            raise StateError(
                f"Pending request limit exceeded (max: {self.pending_requests_limit}). "
                f"Consider adding application-level throttling."
            )
        if cid in self._pending:
            raise StateError(f"A request with correlationId {cid!r} is already pending")
        call: Call[R] = Call(
            self,
            schema,
            cid,
            frame,
            timeout_ms=self.request_timeout_ms if timeout_ms is _UNSET else timeout_ms,
            idempotent=idempotency_key is not None,
            on_progress=on_progress,
            buffer_progress=buffer_progress,
        )
        if state == "open":
            self._pending[cid] = call
            self._outbox.append(call._entry)
            self._wake_writer()
        else:
            if not self._enqueue(call._entry):
                raise QueueOverflowError(
                    "Queue overflow: request not queued",
                    policy=self.queue_policy,
                    max_size=self.queue_size,
                )
            self._pending[cid] = call
        return call

    def __repr__(self) -> str:
        return f"<Client {self.url} {self._state}>"


def create_client(url: str, **options: Any) -> Client:
    """``Client(url, **options)`` (the WS-Kit ``createClient`` spelling)."""
    return Client(url, **options)


def _remove(items: list[Any], item: Any) -> None:
    with contextlib.suppress(ValueError):
        items.remove(item)


async def _swallow(result: Awaitable[Any]) -> None:
    try:
        await result
    except Exception:
        _log.exception("wskit.client: callback failed")


def _unvalidatable(
    message_type: str, exc: Exception, message: str | None = None
) -> ValidationError:
    """A ``ValidationError`` for input a codec failed on with another exception
    (a serializer's depth limit, a lone surrogate...); the cause is chained."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > 200:
        text = text[:197] + "..."
    err = ValidationError(
        message or f"Invalid {message_type} message", [Issue([], f"Could not validate: {text}")]
    )
    err.__cause__ = exc
    return err


def _connect_error(exc: BaseException) -> ConnectError:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        err = ConnectError(f"WebSocket handshake rejected: HTTP {status}", status=status)
    elif isinstance(exc, (InvalidHandshake, InvalidURI)):
        err = ConnectError(f"WebSocket handshake failed: {exc}")
    elif isinstance(exc, (OSError, TimeoutError)):
        err = ConnectError(f"WebSocket connection failed: {exc!r}")
    else:
        err = ConnectError(f"WebSocket connection failed: {exc!r}")
    err.__cause__ = exc
    return err
