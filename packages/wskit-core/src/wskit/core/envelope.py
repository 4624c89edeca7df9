"""The wire envelope: ``{"type": str, "meta": {...}, "payload": ...}``.

Parsing and serialization of frames, the system message types and the meta
keys. These constants are byte-compatible with WS-Kit (TypeScript) 0.10.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from wskit.core.errors import ErrorCode, ProtocolError

__all__ = [
    "ABORT",
    "ERROR",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "RESERVED_META_KEYS",
    "RPC_ERROR",
    "RPC_PROGRESS",
    "STANDARD_META_KEYS",
    "decode_frame",
    "dumps",
    "encode_envelope",
    "is_reserved_type",
    "unknown_root_keys",
]

HEARTBEAT: Final = "__heartbeat"
HEARTBEAT_ACK: Final = "__heartbeat_ack"
RPC_PROGRESS: Final = "$ws:rpc-progress"
ABORT: Final = "$ws:abort"
ERROR: Final = "ERROR"
RPC_ERROR: Final = "RPC_ERROR"

#: Meta keys the server owns; stripped from inbound frames before validation.
RESERVED_META_KEYS: Final = frozenset({"clientId", "receivedAt"})
#: Meta fields every schema accepts (camelCase on the wire). ``traceparent`` and
#: ``tracestate`` carry W3C trace context, so a trace can continue through any message.
STANDARD_META_KEYS: Final = frozenset(
    {"timestamp", "correlationId", "timeoutMs", "idempotencyKey", "traceparent", "tracestate"}
)

_ROOT_KEYS: Final = frozenset({"type", "meta", "payload"})

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)  # NaN/Infinity are not JSON
_scan_once: Any = _decoder.scan_once  # type: ignore[attr-defined]  # the C scanner


def dumps(obj: Any) -> str:
    """Compact JSON, as every wskit frame is written (NaN/Infinity refused)."""
    return _encoder.encode(obj)


def is_reserved_type(message_type: str) -> bool:
    """Types starting with ``$ws:`` or ``__`` belong to the system."""
    return message_type.startswith(("$ws:", "__"))


def decode_frame(frame: str | bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse one inbound frame into a dict with a non-empty string ``type``.

    Binary frames are decoded as UTF-8. Raises :class:`ProtocolError`
    (``INVALID_ARGUMENT``) for undecodable text, invalid JSON, a non-object, or a
    missing/empty/non-string ``type``. Does not validate meta or payload.
    """
    if not isinstance(frame, str):
        try:
            frame = bytes(frame).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                ErrorCode.INVALID_ARGUMENT, "Invalid message: binary frame is not UTF-8"
            ) from None
    try:
        # scan_once is the C scanner without the whitespace regexes of decode();
        # frames with surrounding whitespace take the general path.
        obj, end = _scan_once(frame, 0)
        if end != len(frame):
            obj = _decoder.decode(frame)
    except (ValueError, StopIteration):
        try:
            obj = _decoder.decode(frame)
        except ValueError:
            raise ProtocolError(
                ErrorCode.INVALID_ARGUMENT, "Invalid message: not valid JSON"
            ) from None
    if type(obj) is not dict:
        raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "Invalid message: expected a JSON object")
    message_type = obj.get("type")
    if type(message_type) is not str or not message_type:
        raise ProtocolError(
            ErrorCode.INVALID_ARGUMENT,
            "Invalid message envelope: missing or invalid type field",
        )
    return obj


def unknown_root_keys(obj: Mapping[str, Any]) -> list[str]:
    """Root keys other than type/meta/payload (strict mode rejects them)."""
    if len(obj) <= 3 and obj.keys() <= _ROOT_KEYS:
        return []
    return [k for k in obj if k not in _ROOT_KEYS]


def encode_envelope(
    message_type: str,
    meta: Mapping[str, Any] | None,
    payload: Any = None,
    *,
    has_payload: bool = False,
) -> str:
    """Serialize one outbound frame.

    ``meta`` is always written (``{}`` when empty), matching the TS server.
    ``payload`` is written only when ``has_payload`` is true.
    """
    if has_payload:
        return _encoder.encode({"type": message_type, "meta": meta or {}, "payload": payload})
    return _encoder.encode({"type": message_type, "meta": meta or {}})
