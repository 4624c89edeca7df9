"""Error codes, their retry metadata, and the wskit exception tree.

The 13 standard codes and their metadata are wire constants shared with WS-Kit
(TypeScript); see ``docs/differences.md`` for where we deliberately deviate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "ERROR_CODE_META",
    "CapabilityError",
    "CloseError",
    "ConnectionClosedError",
    "ErrorCode",
    "ErrorCodeMeta",
    "Issue",
    "OutboundValidationError",
    "ProtocolError",
    "RouteConflictError",
    "RpcError",
    "SchemaDefinitionError",
    "ValidationError",
    "WskitError",
    "is_standard_error_code",
    "sanitize_details",
]


#: Sentinel for "argument not given" where ``None`` is a meaningful value.
_UNSET: Any = object()


class ErrorCode:
    """The 13 standard (gRPC-aligned) error codes as string constants."""

    UNAUTHENTICATED: Final = "UNAUTHENTICATED"
    PERMISSION_DENIED: Final = "PERMISSION_DENIED"
    INVALID_ARGUMENT: Final = "INVALID_ARGUMENT"
    FAILED_PRECONDITION: Final = "FAILED_PRECONDITION"
    NOT_FOUND: Final = "NOT_FOUND"
    ALREADY_EXISTS: Final = "ALREADY_EXISTS"
    UNIMPLEMENTED: Final = "UNIMPLEMENTED"
    CANCELLED: Final = "CANCELLED"
    DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"
    RESOURCE_EXHAUSTED: Final = "RESOURCE_EXHAUSTED"
    UNAVAILABLE: Final = "UNAVAILABLE"
    ABORTED: Final = "ABORTED"
    INTERNAL: Final = "INTERNAL"


@dataclass(frozen=True)
class ErrorCodeMeta:
    """Retry metadata of a standard code.

    ``retryable`` is ``True``/``False`` or ``"maybe"`` (INTERNAL: app-specific).
    ``suggest_backoff_ms`` is sent as ``retryAfterMs`` when the caller gives none.
    ``retry_after`` says whether ``retryAfterMs`` may accompany the code at all.
    """

    retryable: bool | Literal["maybe"]
    suggest_backoff_ms: int | None
    retry_after: Literal["forbidden", "optional"]
    description: str


ERROR_CODE_META: Final[Mapping[str, ErrorCodeMeta]] = {
    "UNAUTHENTICATED": ErrorCodeMeta(
        False, None, "forbidden", "Auth token missing, expired, or invalid"
    ),
    "PERMISSION_DENIED": ErrorCodeMeta(
        False, None, "forbidden", "Authenticated but lacks rights (authZ)"
    ),
    "INVALID_ARGUMENT": ErrorCodeMeta(
        False, None, "forbidden", "Input validation or semantic violation"
    ),
    "FAILED_PRECONDITION": ErrorCodeMeta(False, None, "forbidden", "State requirement not met"),
    "NOT_FOUND": ErrorCodeMeta(False, None, "forbidden", "Target resource absent"),
    "ALREADY_EXISTS": ErrorCodeMeta(
        False, None, "forbidden", "Uniqueness or idempotency replay violation"
    ),
    "UNIMPLEMENTED": ErrorCodeMeta(False, None, "forbidden", "Feature not supported or deployed"),
    "CANCELLED": ErrorCodeMeta(
        False, None, "forbidden", "Call cancelled (client disconnect, timeout abort)"
    ),
    "DEADLINE_EXCEEDED": ErrorCodeMeta(True, 50, "optional", "RPC timed out"),
    "RESOURCE_EXHAUSTED": ErrorCodeMeta(
        True, 100, "optional", "Rate limit, quota, or buffer overflow"
    ),
    "UNAVAILABLE": ErrorCodeMeta(True, 100, "optional", "Transient infrastructure error"),
    "ABORTED": ErrorCodeMeta(True, 50, "optional", "Concurrency conflict (race condition)"),
    "INTERNAL": ErrorCodeMeta(
        "maybe",
        200,
        "optional",
        "Unexpected server error (bug); retryability is app-specific",
    ),
}


def is_standard_error_code(code: str) -> bool:
    """True for one of the 13 standard codes; custom codes are any other string."""
    return code in ERROR_CODE_META


# Keys whose values never leave the server in error details (case-insensitive,
# compared after removing "-" and "_").
_SENSITIVE_KEYS: Final = frozenset(
    k.replace("_", "").replace("-", "")
    for k in (
        "password",
        "passwd",
        "token",
        "authorization",
        "bearer",
        "jwt",
        "apikey",
        "api_key",
        "accesstoken",
        "access_token",
        "refreshtoken",
        "refresh_token",
        "cookie",
        "set-cookie",
        "secret",
        "client_secret",
        "credentials",
        "auth",
        "session",
        "private_key",
    )
)
_MAX_DETAIL_VALUE_CHARS: Final = 500


def _is_sensitive(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in _SENSITIVE_KEYS


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return error details safe to put on the wire.

    Drops keys that look like credentials (password, token, authorization,
    secret, cookie, ...) at any depth, drops values that cannot be serialized
    to JSON, and drops nested values whose JSON is longer than 500 characters.
    Returns ``None`` when nothing is left.
    """
    if not details:
        return None
    cleaned = _sanitize_mapping(details)
    return cleaned or None


def _sanitize_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or _is_sensitive(key):
            continue
        clean = _sanitize_value(item)
        if clean is not _DROP:
            out[key] = clean
    return out


_DROP: Final = object()


def _sanitize_value(item: Any) -> Any:
    if isinstance(item, (Mapping, list, tuple, str)):
        try:
            size = len(json.dumps(item, separators=(",", ":"), default=str))
        except (TypeError, ValueError):
            size = 0
        if size > _MAX_DETAIL_VALUE_CHARS:
            return _DROP
    if isinstance(item, Mapping):
        return _sanitize_mapping(item)
    if isinstance(item, (list, tuple)):
        return [v for v in (_sanitize_value(x) for x in item) if v is not _DROP]
    try:
        json.dumps(item)
    except (TypeError, ValueError):
        return _DROP
    return item


class Issue(dict[str, Any]):
    """One validation problem: ``{"path": [...], "message": str}``.

    ``path`` is a list of keys and list indexes from the envelope root, e.g.
    ``["payload", "items", 0, "name"]``. A plain ``dict`` on the wire.
    """

    def __init__(self, path: list[str | int], message: str) -> None:
        super().__init__(path=path, message=message)


class WskitError(Exception):
    """Root of every exception wskit raises."""


class RpcError(WskitError):
    """An error with a wire code; raise it from a handler to answer with that code.

    Raised inside a handler, it is sent to the client as ``ERROR`` (events) or
    ``RPC_ERROR`` (RPC routes) with its code, message, details and retry hints,
    instead of the generic ``INTERNAL``. The client library raises it for
    ``RPC_ERROR`` replies.
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        meta = ERROR_CODE_META.get(code)
        self.code = code
        self.message = message or (meta.description if meta else code)
        self.details = dict(details) if details else None
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ValidationError(RpcError):
    """A message or payload failed validation; carries ``issues``."""

    def __init__(self, message: str, issues: list[Issue] | list[dict[str, Any]]) -> None:
        self.issues: list[dict[str, Any]] = [dict(i) for i in issues]
        super().__init__(ErrorCode.INVALID_ARGUMENT, message, {"issues": self.issues})


class OutboundValidationError(WskitError):
    """A message the server tried to send failed its schema (a server bug).

    Raised synchronously by ``ctx.send``/``reply``/``progress``; if it escapes
    the handler, the client gets a generic ``INTERNAL`` error.
    """

    def __init__(self, message_type: str, issues: list[dict[str, Any]]) -> None:
        self.message_type = message_type
        self.issues = issues
        super().__init__(f"Outbound validation failed for {message_type!r}: {issues}")


class ProtocolError(RpcError):
    """An inbound frame the router could not accept (bad JSON, unknown type...).

    Passed to ``on_error`` hooks for every inbound frame the router answers
    with an error (bad JSON, reserved or unknown type, failed validation, a
    handler that completed without a reply...); its ``code`` is the one sent
    to the client.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        message_type: str | None = None,
    ) -> None:
        self.message_type = message_type
        super().__init__(code, message, details)


class CloseError(WskitError):
    """Raise from ``on_open`` to close the connection with ``code``/``reason``."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason or f"Connection closed with code {code}")


class CapabilityError(WskitError, RuntimeError):
    """A feature was used without the plugin that provides it."""


class ConnectionClosedError(WskitError):
    """The connection closed before the operation could complete."""

    def __init__(self, message: str = "Connection closed before reply") -> None:
        super().__init__(message)


class SchemaDefinitionError(WskitError, ValueError):
    """A message schema is invalid (reserved type, reserved meta key...)."""


class RouteConflictError(WskitError, ValueError):
    """A handler is already registered for a message type."""
