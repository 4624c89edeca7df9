"""Pub/sub errors: :class:`PubSubError` and the topic-change error codes.

Subscription changes (``ctx.topics.subscribe``...) raise :class:`PubSubError`;
publishing never raises for runtime conditions (it returns a
:class:`~wskit.core.pubsub.PublishResult`).

``PubSubError`` is a :class:`~wskit.core.errors.RpcError`: raised from a
handler (or left to escape it), the client gets an ``ERROR``/``RPC_ERROR``
frame whose ``code`` is the standard wire code mapped from the pub/sub code
(:data:`WIRE_CODES`), with the pub/sub code in ``details.pubsubCode``::

    {"type": "ERROR", "meta": {}, "payload": {"code": "INVALID_ARGUMENT",
     "message": "Topic format invalid (allowed: a-z0-9:_-/.)",
     "details": {"pubsubCode": "INVALID_TOPIC", "reason": "pattern", "topic": "a b"},
     "retryable": false}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from wskit.core.errors import ErrorCode, RpcError

__all__ = [
    "WIRE_CODES",
    "BackendUnavailable",
    "PubSubError",
    "PubSubErrorCode",
]

PubSubErrorCode = Literal[
    "ACL_SUBSCRIBE",
    "INVALID_TOPIC",
    "TOPIC_LIMIT_EXCEEDED",
    "CONNECTION_CLOSED",
    "ADAPTER_ERROR",
    "INVALID_POSITION",
]

#: The wire code a client sees for each pub/sub code.
WIRE_CODES: Final[Mapping[str, str]] = {
    "ACL_SUBSCRIBE": ErrorCode.PERMISSION_DENIED,
    "INVALID_TOPIC": ErrorCode.INVALID_ARGUMENT,
    "TOPIC_LIMIT_EXCEEDED": ErrorCode.RESOURCE_EXHAUSTED,
    "CONNECTION_CLOSED": ErrorCode.FAILED_PRECONDITION,
    "ADAPTER_ERROR": ErrorCode.UNAVAILABLE,
    "INVALID_POSITION": ErrorCode.INVALID_ARGUMENT,
}

_RETRYABLE: Final[Mapping[str, bool]] = {
    "ACL_SUBSCRIBE": False,
    "INVALID_TOPIC": False,
    # More topics will not fit later either: the client must drop some first.
    "TOPIC_LIMIT_EXCEEDED": False,
    "CONNECTION_CLOSED": False,
    "ADAPTER_ERROR": True,
    "INVALID_POSITION": False,
}


class PubSubError(RpcError):
    """A subscription change was refused.

    ``pubsub_code`` is one of ``ACL_SUBSCRIBE``, ``INVALID_TOPIC``,
    ``TOPIC_LIMIT_EXCEEDED``, ``CONNECTION_CLOSED``, ``ADAPTER_ERROR``,
    ``INVALID_POSITION`` (a malformed ``since`` to resume from) (custom
    codes are allowed and map to ``INTERNAL`` on the wire). ``code`` is the
    wire code (see :data:`WIRE_CODES`), as for every ``RpcError``.
    ``details`` carries the specifics (``reason``, ``topic``, ``limit``...);
    the pub/sub code is added to it as ``pubsubCode``.
    """

    def __init__(
        self,
        code: PubSubErrorCode | str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
    ) -> None:
        self.pubsub_code = code
        wire = WIRE_CODES.get(code, ErrorCode.INTERNAL)
        if retryable is None:
            retryable = _RETRYABLE.get(code)
        super().__init__(
            wire,
            message or code,
            {"pubsubCode": code, **(details or {})},
            retryable=retryable,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pubsub_code!r}, {self.message!r})"


class BackendUnavailable(PubSubError):
    """The pub/sub backend (a broker such as Redis) cannot be reached.

    Adapters raise it from ``subscribe``/``unsubscribe`` instead of their
    client library's exceptions (``raise BackendUnavailable(...) from exc``),
    so callers never catch backend-specific types. Its code is ``ADAPTER_ERROR``.
    """

    def __init__(
        self,
        message: str = "Pub/sub backend unavailable",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__("ADAPTER_ERROR", message, details)
