"""How a message that reached the middleware chain was answered.

Shared by the logging, tracing and metrics middleware so they agree: ``"ok"``,
or the error code the client got (or, for a cancelled RPC, why it ended).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from wskit.core.connection import Connection, ErrorInfo
from wskit.core.errors import ErrorCode, RpcError

__all__ = [
    "CLOSE_SLOW_CONSUMER",
    "OK",
    "SERVER_FAULTS",
    "outcome",
    "rejected",
    "slow_consumer_closed",
]

#: The outcome of a message answered without an error.
OK: Final = "ok"

#: The close code the router uses when a slow reader's outbound buffer overflows
#: (``overflow="close"``): 1013 Try Again Later.
CLOSE_SLOW_CONSUMER: Final = 1013

_LIFECYCLE: Final = frozenset({"$ws:open", "$ws:close"})

#: Codes that mean the server failed (the others mean the request was refused).
SERVER_FAULTS: Final = frozenset(
    {ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED}
)


def outcome(ctx: Any, exc: BaseException | None) -> str:
    """The outcome of ``ctx``'s message after the rest of the chain returned
    (``exc`` is ``None``) or raised ``exc``.

    - raised :class:`RpcError` → its code; any other exception → ``INTERNAL``;
    - cancelled → ``DEADLINE_EXCEEDED`` when the deadline passed, else ``CANCELLED``
      (aborted by the client, or the connection went away);
    - returned → the code of ``ctx.error()`` if the handler answered with one; an
      RPC left without a reply → ``INTERNAL`` (what the router then sends); else ``ok``.
    """
    if exc is None:
        code: str | None = ctx.error_code
        if code is not None:
            return code
        if ctx.is_rpc and not ctx.terminal:
            return ErrorCode.INTERNAL
        return OK
    if isinstance(exc, asyncio.CancelledError):
        if getattr(ctx, "cancel_reason", None) == "deadline":
            return ErrorCode.DEADLINE_EXCEEDED
        return ErrorCode.CANCELLED
    if isinstance(exc, RpcError):
        return exc.code
    return ErrorCode.INTERNAL


def slow_consumer_closed(connection: Connection[Any] | None) -> bool:
    """Whether the router closed ``connection`` because it stopped reading (its
    outbound buffer overflowed): the close it asked for is 1013."""
    requested = connection.close_requested if connection is not None else None
    return requested is not None and requested[0] == CLOSE_SLOW_CONSUMER


def rejected(exc: BaseException, info: ErrorInfo) -> tuple[str | None, str] | None:
    """``(message type, code)`` when a reported error is an inbound message the
    router answered before any middleware ran (not JSON, too big, unknown or
    reserved type, failed validation, RPC without a correlationId, duplicate
    correlationId); ``None`` for anything else (handler failures, lifecycle
    hooks, aborts, a slow consumer's overflow)."""
    if info.context is not None or not isinstance(exc, RpcError):
        return None
    message_type = info.message_type
    if message_type in _LIFECYCLE:
        return None
    code = exc.code
    if code == ErrorCode.CANCELLED:
        return None  # $ws:abort of an RPC still queued: reported, never answered
    if (
        code == ErrorCode.RESOURCE_EXHAUSTED
        and message_type is None
        and slow_consumer_closed(info.connection)
    ):
        return None  # the outbound buffer overflowed: about sending, not a message
    return message_type, code
