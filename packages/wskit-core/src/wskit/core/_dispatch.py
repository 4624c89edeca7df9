"""Handling of queued inbound frames: the worker loop and the failure boundary.

Each queued frame goes through :func:`handle_frame`, the one place where a
frame's failures are turned into answers: bad input gets ``INVALID_ARGUMENT``
(or the row's code: ``UNIMPLEMENTED``, ``ALREADY_EXISTS``...), an exception in
a handler or middleware gets ``INTERNAL`` (or the ``RpcError``'s own code), a
failure of wskit itself gets ``INTERNAL``; every one is reported to the
router's ``on_error`` hooks, and the worker carries on with the next frame. An
RPC always ends with exactly one terminal frame (reply or ``RPC_ERROR``),
unless it was cancelled (abort, deadline, disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wskit.core._outbox import uncancel
from wskit.core.context import MessageContext, RpcContext
from wskit.core.envelope import ERROR, RPC_ERROR, correlation_id, is_reserved_type
from wskit.core.errors import _UNSET, ErrorCode, ProtocolError, RpcError, ValidationError
from wskit.core.validation import validate_envelope

if TYPE_CHECKING:
    from wskit.core.connection import Connection, InboundItem
    from wskit.core.router import Route
    from wskit.core.schema import RpcSchema

__all__ = ["abort_queued", "expire_rpc", "handle_frame", "run_worker"]


async def run_worker(conn: Connection[Any]) -> None:
    """Handle queued frames until the queue is empty (one at a time, or up to
    the router's ``max_concurrency``)."""
    limit = conn.router.max_concurrency
    try:
        try:
            if limit == 1:
                while conn._inbox and conn.state == "open":
                    received_at, item = conn._take_inbound()
                    await handle_frame(conn, received_at, item)
            else:
                await _run_concurrently(conn, limit)
        finally:
            conn._worker = None  # however it ends (before a successor starts below)
    except Exception as exc:
        # A bug in wskit itself: report it, and never leave frames behind a dead worker.
        conn._crashed(exc)
        if conn._inbox and conn.state == "open":
            conn._start_worker()
    finally:
        # However the worker ends, wait_idle() looks again (a successor may run).
        if conn._idle_waiters is not None:
            conn._worker_ended()


async def _run_concurrently(conn: Connection[Any], limit: int) -> None:
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    try:
        while True:
            while conn._inbox and conn.state == "open" and len(running) < limit:
                received_at, item = conn._take_inbound()
                running.add(loop.create_task(handle_frame(conn, received_at, item)))
            if not running:
                return
            # Wake on a finished handler, or on a new frame while below the limit.
            arrival: asyncio.Future[None] = loop.create_future()
            conn._inbox_waiter = arrival
            waiting: set[asyncio.Future[Any]] = {*running}
            if len(running) < limit:
                waiting.add(arrival)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            conn._inbox_waiter = None
            running = {t for t in running if not t.done()}
    finally:
        conn._inbox_waiter = None
        if running:
            await asyncio.wait(running)


async def handle_frame(conn: Connection[Any], received_at: float, item: InboundItem) -> None:
    """The failure boundary of one inbound frame (see the module docstring)."""
    message_type: str | None = None
    try:
        if type(item) is not dict:
            assert isinstance(item, ProtocolError)
            conn.send_error(ERROR, item.code, item.message, item.details)
            await conn._report(item, item.message_type, None)
            return
        message_type = item["type"]
        router = conn.router
        route = router._routes.get(message_type)
        if route is None:
            await _no_route(conn, item, message_type)
            return
        schema = route.schema
        try:
            payload, meta = validate_envelope(schema, item)
        except ValidationError as exc:
            cid = correlation_id(item)
            kind = RPC_ERROR if (route.is_rpc and cid is not None) else ERROR
            conn.send_error(kind, exc.code, exc.message, exc.details, correlation_id=cid)
            await conn._report(exc, message_type, None)
            return
        chain = route.chain if route.chain is not None else router._build_chain(route)
        if route.is_rpc:
            await _dispatch_rpc(conn, route, chain, payload, meta, received_at)
            return
        ctx: MessageContext[Any, Any] = MessageContext(conn, schema, payload, meta, received_at)
        try:
            await chain(ctx)
        except Exception as exc:  # the handler or a middleware failed
            _answer_handler_error(conn, ERROR, exc, meta.get("correlationId"))
            await conn._report(exc, message_type, ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # wskit itself (or a codec) failed on this frame: never the client's fault.
        cid = correlation_id(item) if type(item) is dict else None
        kind = ERROR
        if cid is not None and message_type is not None:
            route = conn.router._routes.get(message_type)
            if route is not None and route.is_rpc:
                kind = RPC_ERROR
        conn.send_error(kind, ErrorCode.INTERNAL, _internal_message(conn, exc), correlation_id=cid)
        await conn._report(exc, message_type, None)


async def _dispatch_rpc(
    conn: Connection[Any],
    route: Route[Any],
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
        conn.send_error(ERROR, exc.code, exc.message, exc.details)
        await conn._report(exc, message_type, None)
        return
    rpcs = conn._rpcs
    if rpcs is None:
        rpcs = conn._rpcs = {}
    if cid in rpcs:
        dup = ProtocolError(
            ErrorCode.ALREADY_EXISTS,
            "An RPC with this correlationId is already in flight",
            message_type=message_type,
        )
        conn.send_error(RPC_ERROR, dup.code, dup.message, correlation_id=cid)
        await conn._report(dup, message_type, None)
        return
    schema: RpcSchema[Any, Any] = route.schema  # type: ignore[assignment]  # an RPC route
    ctx: RpcContext[Any, Any, Any] = RpcContext(conn, schema, payload, meta, received_at, cid)
    rpcs[cid] = ctx
    failure: Exception | None = None
    try:
        if ctx.deadline is not None:
            clock = conn.router.clock
            ctx._timer = clock.call_later(ctx.deadline - clock.now(), lambda: expire_rpc(ctx))
        # The handler runs in this task; an abort or deadline cancels the task,
        # and the CancelledError it causes is absorbed here (see RpcContext._cancel).
        ctx._task = asyncio.current_task()
        await chain(ctx)
    except asyncio.CancelledError:
        if not ctx._task_cancelled:  # cancelled from outside: the server is going away
            ctx._detach(rpcs)
            ctx._cancel("disconnect")
            raise
    except Exception as exc:
        failure = exc
    finally:
        ctx._detach(rpcs)
    if ctx._task_cancelled:
        uncancel()
        return
    if failure is not None:
        if not ctx.terminal:
            ctx.terminal = True
            _answer_handler_error(conn, RPC_ERROR, failure, cid)
        await conn._report(failure, message_type, ctx)
    elif not ctx.terminal:
        ctx.terminal = True
        err = ProtocolError(
            ErrorCode.INTERNAL, "handler completed without a reply", message_type=message_type
        )
        conn.send_error(RPC_ERROR, err.code, err.message, correlation_id=cid)
        await conn._report(err, message_type, ctx)


def expire_rpc(ctx: RpcContext[Any, Any, Any]) -> None:
    """The RPC's deadline passed: answer ``DEADLINE_EXCEEDED`` and cancel it."""
    ctx._timer = None
    if ctx.terminal:
        return
    conn = ctx.connection
    conn.send_error(
        RPC_ERROR,
        ErrorCode.DEADLINE_EXCEEDED,
        "Deadline exceeded",
        correlation_id=ctx.correlation_id,
    )
    ctx._cancel("deadline")
    err = ProtocolError(ErrorCode.DEADLINE_EXCEEDED, "Deadline exceeded", message_type=ctx.type)
    conn._spawn(conn._report(err, ctx.type, ctx))


def abort_queued(conn: Connection[Any], cid: str) -> bool:
    """Drop a queued (not yet started) RPC with this correlationId."""
    inbox = conn._inbox
    if inbox is None:
        return False
    for entry in inbox:
        queued = entry[1]
        if type(queued) is dict and correlation_id(queued) == cid:
            inbox.remove(entry)
            conn._inbox_bytes -= entry[2]
            if not inbox:
                conn._inbox = None
            return True
    return False


async def _no_route(conn: Connection[Any], item: dict[str, Any], message_type: str) -> None:
    cid = correlation_id(item)
    shown = _shown_type(message_type)
    if is_reserved_type(message_type):
        err = ProtocolError(
            ErrorCode.INVALID_ARGUMENT,
            f"Reserved type cannot be handled by user code: {shown}",
            message_type=message_type,
        )
        conn.send_error(ERROR, err.code, err.message, correlation_id=cid)
    else:
        err = ProtocolError(
            ErrorCode.UNIMPLEMENTED,
            f"No handler registered for message type: {shown}",
            message_type=message_type,
        )
        if conn.router.on_unknown == "error":
            kind = RPC_ERROR if cid is not None else ERROR
            conn.send_error(kind, err.code, err.message, correlation_id=cid)
    await conn._report(err, message_type, None)


def _answer_handler_error(conn: Connection[Any], kind: str, exc: Exception, cid: Any) -> None:
    cid = cid if type(cid) is str else None
    if isinstance(exc, RpcError):
        conn.send_error(
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
    conn.send_error(kind, ErrorCode.INTERNAL, _internal_message(conn, exc), correlation_id=cid)


def _internal_message(conn: Connection[Any], exc: Exception) -> str:
    if conn.router.debug:
        return f"{type(exc).__name__}: {exc}"
    return "Internal server error"


def _shown_type(message_type: str) -> str:
    """The type as quoted in an error message (long types cut short)."""
    if len(message_type) > 64:
        return repr(message_type[:63] + "\u2026")
    return repr(message_type)
