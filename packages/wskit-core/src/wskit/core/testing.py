"""Test harness: fake connections through the real router, and a fake clock.

No network: a :class:`FakeConnection` feeds frames to the real
:class:`~wskit.core.connection.Connection` and captures what the router's
outbound pump writes. :class:`FakeClock` replaces the router clock so RPC
deadlines, heartbeats and rate-limit refills run when the test says so::

    async with Harness(router) as h:
        conn = await h.connect(data={"user_id": "u1"})
        conn.send(Ping, {"text": "hi"})
        await h.flush()
        assert conn.frames == [{"type": "PONG", "meta": {}, "payload": {"reply": "hi"}}]

        reply = await conn.request(GetUser, {"user_id": "u1"})   # raises RpcError on RPC_ERROR
        await h.advance(5_000)                                     # fires due timers

The pytest plugin (``wskit.core.pytest_plugin``, auto-registered) exposes
``fake_clock`` and ``wskit_harness`` fixtures.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from wskit.core.connection import Connection, ErrorInfo, HeartbeatOptions
from wskit.core.envelope import ABORT, ERROR, RPC_ERROR, RPC_PROGRESS, dumps
from wskit.core.errors import ErrorCode, RpcError
from wskit.core.schema import MessageSchema, RpcSchema

if TYPE_CHECKING:
    from types import TracebackType

    from wskit.core.pubsub import PublishRecord
    from wskit.core.router import Router

__all__ = [
    "FakeClock",
    "FakeConnection",
    "FakeTimer",
    "Harness",
    "ReportedError",
    "RpcCall",
]

D = TypeVar("D")
T = TypeVar("T")


class FakeTimer:
    """A timer scheduled on a :class:`FakeClock`."""

    __slots__ = ("callback", "cancelled", "due", "seq")

    def __init__(self, due: float, seq: int, callback: Callable[[], None]) -> None:
        self.due = due
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: FakeTimer) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)

    def __repr__(self) -> str:
        return f"<FakeTimer due={self.due} {'cancelled' if self.cancelled else 'pending'}>"


class FakeClock:
    """A manual clock: ``now()`` only moves when ``advance()`` is awaited.

    Timers run in due order (ties in scheduling order); after each one the
    registered settle hooks run (the harness flushes its connections), so work
    a timer starts is finished before the next timer fires.
    """

    def __init__(self, start_ms: float = 0.0) -> None:
        self._now = float(start_ms)
        self._timers: list[FakeTimer] = []
        self._seq = itertools.count()
        self._settle: list[Callable[[], Awaitable[None]]] = []

    def now(self) -> float:
        return self._now

    def call_later(self, delay_ms: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self._now + max(0.0, delay_ms), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def on_settle(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await ``hook()`` after each timer fires (the harness uses this)."""
        self._settle.append(hook)

    async def advance(self, ms: float) -> None:
        """Move time forward by ``ms``, running every timer that falls due."""
        if ms < 0:
            raise ValueError("cannot move a clock backwards")
        target = self._now + ms
        for hook in self._settle:
            await hook()
        while self._timers and self._timers[0].due <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.due)
            timer.callback()
            for hook in self._settle:
                await hook()
        self._now = target

    def pending_timers(self) -> list[FakeTimer]:
        """Timers not yet fired nor cancelled, in due order."""
        return sorted(t for t in self._timers if not t.cancelled)


class ReportedError:
    """An error the router reported (what ``on_error`` hooks receive)."""

    __slots__ = ("error", "info")

    def __init__(self, error: BaseException, info: ErrorInfo) -> None:
        self.error = error
        self.info = info

    @property
    def code(self) -> str | None:
        code = getattr(self.error, "code", None)
        return code if isinstance(code, str) else None

    @property
    def expected(self) -> bool:
        """An error the client was answered with its own code (bad input, or an
        ``RpcError`` a handler raised on purpose), as opposed to a failure: an
        exception from user code or wskit itself, an ``INTERNAL`` answer, a
        crashed connection task."""
        error = self.error
        return isinstance(error, RpcError) and error.code != ErrorCode.INTERNAL

    def __repr__(self) -> str:
        return f"ReportedError({self.error!r}, type={self.info.message_type!r})"


class RpcCall:
    """An RPC sent through a fake connection; settles on the reply or RPC_ERROR."""

    def __init__(self, conn: FakeConnection[Any], correlation_id: str, response_type: str) -> None:
        self.connection = conn
        self.correlation_id = correlation_id
        self.response_type = response_type
        #: Payloads of ``$ws:rpc-progress`` frames, in order.
        self.progress: list[Any] = []
        #: The terminal frame (reply or RPC_ERROR) once settled.
        self.terminal: dict[str, Any] | None = None
        self._done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self.terminal is not None

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if self.terminal is not None:
            return
        if frame.get("type") == RPC_PROGRESS:
            self.progress.append(frame.get("payload"))
            return
        self.terminal = frame
        if not self._done.done():
            self._done.set_result(frame)

    async def result(self) -> Any:
        """The reply payload. Raises :class:`RpcError` for ``RPC_ERROR``; raises
        ``AssertionError`` if the RPC is still unsettled once the harness is idle."""
        await self.connection.harness.flush()
        if not self._done.done():
            raise AssertionError(
                f"RPC {self.correlation_id} has not settled and the router is idle "
                f"(the handler awaits something outside the harness?)"
            )
        frame = self._done.result()
        if frame.get("type") == RPC_ERROR:
            body = frame.get("payload") or {}
            raise RpcError(
                body.get("code", "INTERNAL"),
                body.get("message"),
                body.get("details"),
                retryable=body.get("retryable"),
                retry_after_ms=body.get("retryAfterMs"),
            )
        return frame.get("payload")

    async def abort(self) -> None:
        """Send ``$ws:abort`` for this RPC and flush."""
        self.connection.send_raw(
            dumps({"type": ABORT, "meta": {"correlationId": self.correlation_id}})
        )
        await self.connection.harness.flush()


class _FakeTransport:
    def __init__(self, conn: FakeConnection[Any]) -> None:
        self.conn = conn

    async def send(self, frame: str) -> None:
        self.conn._capture(frame)

    async def ping(self) -> None:
        self.conn.pings += 1
        if self.conn.auto_pong:
            self.conn.connection.handle_pong()

    async def close(self, code: int, reason: str) -> None:
        self.conn.server_close = (code, reason)
        await self.conn.connection.handle_close(code, reason)


class FakeConnection(Generic[D]):
    """A client connected to the router through the harness (no network)."""

    def __init__(self, harness: Harness[D], connection: Connection[D]) -> None:
        self.harness = harness
        self.connection = connection
        #: Parsed outbound frames, in order.
        self.frames: list[dict[str, Any]] = []
        #: Outbound frames exactly as serialized.
        self.raw_frames: list[str] = []
        #: ``(code, reason)`` when the server closed the connection.
        self.server_close: tuple[int, str] | None = None
        #: Transport pings the server sent; answered when ``auto_pong`` is true.
        self.pings = 0
        self.auto_pong = True
        self._calls: dict[str, RpcCall] = {}
        self._ids = itertools.count(1)
        self._pump: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- identity

    @property
    def client_id(self) -> str:
        return self.connection.client_id

    @property
    def data(self) -> D:
        return self.connection.data

    @property
    def closed(self) -> bool:
        return self.connection.closed

    @property
    def subscriptions(self) -> list[str]:
        """Topics this connection is subscribed to (needs a pub/sub plugin)."""
        pubsub = self.connection.router.pubsub
        if pubsub is None:
            return []
        return sorted(pubsub.readonly_topics(self.connection))

    # -------------------------------------------------------------- sending

    def send(
        self,
        message: MessageSchema[Any] | str,
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        omit_payload: bool | None = None,
    ) -> None:
        """Send a message as a client would (no client-side validation).

        ``message`` is a schema or a type string. The payload is written when
        given (or when the schema has one); ``omit_payload`` overrides that.
        """
        frame: dict[str, Any] = {"type": message if isinstance(message, str) else message.type}
        if meta is not None:
            frame["meta"] = dict(meta)
        has_payload = payload is not None or (
            isinstance(message, MessageSchema) and message.payload is not None
        )
        if omit_payload is not None:
            has_payload = not omit_payload
        if has_payload:
            frame["payload"] = _to_wire(message, payload)
        self.send_raw(dumps(frame))

    def send_raw(self, frame: str | bytes) -> None:
        """Hand a raw frame (text or binary) to the router."""
        self.connection.receive(frame)

    def call(
        self,
        schema: RpcSchema[Any, Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> RpcCall:
        """Send an RPC request; the returned :class:`RpcCall` collects progress
        and settles on the reply or ``RPC_ERROR``."""
        cid = correlation_id or f"rpc-{next(self._ids)}"
        call = RpcCall(self, cid, schema.response.type)
        self._calls[cid] = call
        self.send(schema, payload, meta={**(meta or {}), "correlationId": cid})
        return call

    async def request(
        self,
        schema: RpcSchema[Any, Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> Any:
        """``call()`` then ``result()``: the reply payload, or RpcError raised."""
        return await self.call(schema, payload, meta=meta).result()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client side; runs the router's close handling."""
        await self.connection.handle_close(code, reason)
        await self.harness.flush()

    # ------------------------------------------------------------- captured

    def _capture(self, raw: str) -> None:
        self.raw_frames.append(raw)
        frame = json.loads(raw)
        self.frames.append(frame)
        meta = frame.get("meta")
        cid = meta.get("correlationId") if isinstance(meta, dict) else None
        if cid is not None:
            call = self._calls.get(cid)
            if call is not None:
                call._on_frame(frame)

    def messages(self, message: MessageSchema[Any] | str) -> list[dict[str, Any]]:
        """Captured frames of one type."""
        wanted = message if isinstance(message, str) else message.type
        return [f for f in self.frames if f.get("type") == wanted]

    def payloads(self, message: MessageSchema[Any] | str) -> list[Any]:
        """Payloads of captured frames of one type."""
        return [f.get("payload") for f in self.messages(message)]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Captured ``ERROR`` and ``RPC_ERROR`` payloads, in order."""
        return [f["payload"] for f in self.frames if f.get("type") in (ERROR, RPC_ERROR)]

    @property
    def error_codes(self) -> list[str]:
        return [str(e.get("code")) for e in self.errors]

    def clear(self) -> None:
        """Forget captured frames."""
        self.frames.clear()
        self.raw_frames.clear()


def _to_wire(message: MessageSchema[Any] | str, payload: Any) -> Any:
    """Plain JSON values go out as given (invalid ones too: tests send bad input);
    model or class instances are dumped to wire form by the schema's codec."""
    if payload is None or isinstance(payload, (dict, list, str, int, float, bool)):
        return payload
    codec = message.payload if isinstance(message, MessageSchema) else None
    if codec is not None:
        return codec.encode(payload, validate=False)
    return payload


class Harness(Generic[D]):
    """Drives a real router with fake connections and (by default) a fake clock.

    ``Harness(router)`` replaces ``router.clock`` with a :class:`FakeClock`
    (pass ``clock=`` to choose one, or ``fake_clock=False`` to keep real time).
    Use as ``async with``: leaving closes every connection and checks that no
    router timer leaked and that nothing went wrong unnoticed.

    A test fails when the router reported an error the test did not expect: an
    exception raised by a handler, middleware or hook, an ``INTERNAL`` answer, a
    crashed connection task. Errors answered with their own code (bad input,
    an ``RpcError`` raised on purpose) are part of the protocol and expected.
    A test that provokes failures on purpose takes them with
    :meth:`take_reported` (which marks them seen), or passes
    ``allow_errors=True``.
    """

    def __init__(
        self,
        router: Router[D],
        *,
        clock: FakeClock | None = None,
        fake_clock: bool = True,
        heartbeat: HeartbeatOptions | None = None,
        allow_errors: bool = False,
    ) -> None:
        self.router = router
        self.allow_errors = allow_errors
        self._taken = 0
        self.clock: FakeClock | None = None
        if fake_clock:
            self.clock = clock or FakeClock()
            router.clock = self.clock
            self.clock.on_settle(self.flush)
        self.heartbeat = heartbeat
        self.connections: list[FakeConnection[D]] = []
        #: Every error the router reported (what ``on_error`` hooks see).
        self.reported: list[ReportedError] = []
        #: Every publish (with a pub/sub plugin installed).
        self.publishes: list[PublishRecord] = []
        self._unobserve = router.observe(lambda e, i: self.reported.append(ReportedError(e, i)))
        self._unobserve_pub = router.observe_publish(self.publishes.append)

    @property
    def reported_codes(self) -> list[str | None]:
        return [r.code for r in self.reported]

    def take_reported(self) -> list[ReportedError]:
        """The errors reported since the last call, now marked as seen (a test
        that provokes failures on purpose asserts on these)."""
        taken = self.reported[self._taken :]
        self._taken = len(self.reported)
        return taken

    def unexpected_errors(self) -> list[ReportedError]:
        """Reported failures not taken with :meth:`take_reported` (see the class
        docstring); empty when ``allow_errors`` is set."""
        if self.allow_errors:
            return []
        return [r for r in self.reported[self._taken :] if not r.expected]

    def check(self) -> None:
        """Raise ``AssertionError`` for unexpected errors and leaked timers."""
        unexpected = self.unexpected_errors()
        if unexpected:
            self._taken = len(self.reported)  # report them once
            details = "\n".join(
                f"- in {r.info.message_type!r}: "
                + "".join(traceback.format_exception(r.error)).rstrip()
                for r in unexpected
            )
            raise AssertionError(
                f"the router reported {len(unexpected)} unexpected error(s) (take them with "
                f"harness.take_reported() or pass allow_errors=True if they are the point "
                f"of the test):\n{details}"
            )
        leaked = self.leaked_timers()
        if leaked:
            raise AssertionError(f"router timers leaked after close: {leaked}")

    async def connect(
        self,
        data: D | None = None,
        *,
        client_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int | None = None,
        max_buffered_bytes: int | None = None,
        heartbeat: HeartbeatOptions | None = None,
    ) -> FakeConnection[D]:
        """Open a connection through the router (``on_open`` runs)."""
        conn = self.router.connect(
            data,
            client_id=client_id,
            headers=headers,
            max_message_bytes=max_message_bytes,
            max_buffered_bytes=max_buffered_bytes,
            heartbeat=heartbeat or self.heartbeat,
        )
        fake = FakeConnection(self, conn)
        self.connections.append(fake)
        fake._pump = asyncio.get_running_loop().create_task(conn.pump(_FakeTransport(fake)))
        await conn.open()
        await self.flush()
        return fake

    async def flush(self) -> None:
        """Run the event loop until the router is quiescent: every inbound frame
        handled (or its handler blocked on something outside the router), every
        outbound frame captured, every server-requested close carried out.

        A handler waiting on an event the test controls does not make flush
        hang: flush returns once nothing else can make progress.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        for _ in range(100_000):
            if all(self._settled(fake) for fake in self.connections):
                return
            if ready is not None and len(ready) == 0 and not self._writing():
                return  # nothing runnable: the rest waits on something external
            await asyncio.sleep(0)
        raise AssertionError("harness.flush(): the router did not settle")

    def _writing(self) -> bool:
        return any(fake.connection._out.writing for fake in self.connections)

    @staticmethod
    def _settled(fake: FakeConnection[Any]) -> bool:
        conn = fake.connection
        if not conn.is_idle() or len(conn._out):
            return False
        closing = conn._closing
        return closing is None or closing.done()

    async def advance(self, ms: float) -> None:
        """Advance the fake clock by ``ms``, firing due timers, then flush."""
        if self.clock is None:
            raise RuntimeError("this harness uses the real clock")
        await self.clock.advance(ms)
        await self.flush()

    async def close(self) -> None:
        """Close every open connection and stop capturing."""
        for fake in self.connections:
            if not fake.connection.closed:
                await fake.connection.handle_close(1001, "Harness closed")
        await self.flush()
        for fake in self.connections:
            if fake._pump is not None and not fake._pump.done():
                fake._pump.cancel()
                await asyncio.gather(fake._pump, return_exceptions=True)
        self._unobserve()
        self._unobserve_pub()

    def leaked_timers(self) -> list[FakeTimer]:
        return self.clock.pending_timers() if self.clock is not None else []

    async def __aenter__(self) -> Harness[D]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        if exc_type is None:
            self.check()
