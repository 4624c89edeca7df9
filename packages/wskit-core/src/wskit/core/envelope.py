"""The wire envelope: ``{"type": str, "meta": {...}, "payload": ...}``.

Parsing and serialization of frames, the system message types and the meta
keys. These constants are byte-compatible with WS-Kit (TypeScript) 0.10.
"""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from wskit.core.errors import _UNSET, ERROR_CODE_META, ErrorCode, ProtocolError, sanitize_details

__all__ = [
    "ABORT",
    "ERROR",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "MAX_CORRELATION_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_TIMEOUT_MS",
    "RESERVED_META_KEYS",
    "RPC_ERROR",
    "RPC_PROGRESS",
    "STANDARD_META_KEYS",
    "correlation_id",
    "decode_frame",
    "dumps",
    "encode_envelope",
    "encode_error",
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

#: Longest ``meta.correlationId`` (in characters). A longer one is invalid: it
#: cannot address an RPC, and answers never echo it.
MAX_CORRELATION_ID_LENGTH: Final = 256

#: Largest ``meta.timeoutMs`` a request may carry: 2**31 - 1 ms (about 24.8 days),
#: the longest timer a JavaScript runtime can set.
MAX_TIMEOUT_MS: Final = 2**31 - 1

_ROOT_KEYS: Final = frozenset({"type", "meta", "payload"})

#: Deepest nesting of arrays and objects an inbound frame may have (the envelope
#: object itself is level 1). Deeper frames are answered ``INVALID_ARGUMENT``.
MAX_JSON_DEPTH: Final = 128

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# Lone surrogates cannot be written as UTF-8; this encoder writes them as \uXXXX
# escapes (as JavaScript's JSON.stringify does), so they round-trip.
_ascii_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_surrogate = re.compile("[\ud800-\udfff]")


class _NumberOutOfRange(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # 1e400 overflows to infinity: not a number we can keep
        raise _NumberOutOfRange(text)
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)
_scan_once: Any = _decoder.scan_once  # type: ignore[attr-defined]  # the C scanner


def _c_chunks() -> Callable[[Any, int], Any]:
    """The C encoder behind ``_encoder``, to be called directly: ``JSONEncoder.encode``
    builds it anew on every call (circular references then end in RecursionError
    instead of ValueError; wskit's callers handle both)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - an interpreter without the C accelerator
        return lambda obj, level: (_encoder.encode(obj),)
    chunks: Callable[[Any, int], Any] = make(
        None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return chunks


_chunks: Final = _c_chunks()


def dumps(obj: Any) -> str:
    """Compact JSON, as every wskit frame is written.

    NaN and infinities are refused (``ValueError``). Lone surrogates in strings
    are written as ``\\uXXXX`` escapes, so the result always encodes to UTF-8.
    """
    text = "".join(_chunks(obj, 0))
    if text.isascii() or _surrogate.search(text) is None:
        return text
    return _ascii_encoder.encode(obj)


def _parse(frame: str) -> Any:
    # scan_once is the C scanner without the whitespace regexes of decode(); it
    # raises StopIteration for leading whitespace, which the general path skips.
    try:
        obj, end = _scan_once(frame, 0)
    except StopIteration:
        return _decoder.decode(frame)
    return obj if end == len(frame) else _decoder.decode(frame)


_TOO_DEEP: Final = f"nesting too deep (at most {MAX_JSON_DEPTH} levels)"


def _too_deep(obj: Any) -> bool:
    """Whether ``obj`` nests arrays/objects deeper than :data:`MAX_JSON_DEPTH`."""
    level: list[Any] = [obj]
    for _ in range(MAX_JSON_DEPTH):
        below: list[Any] = []
        for item in level:
            t = type(item)
            if t is dict:
                below.extend(v for v in item.values() if type(v) is dict or type(v) is list)
            elif t is list:
                below.extend(v for v in item if type(v) is dict or type(v) is list)
        if not below:
            return False
        level = below
    return True


def is_reserved_type(message_type: str) -> bool:
    """Types starting with ``$ws:`` or ``__`` belong to the system."""
    return message_type.startswith(("$ws:", "__"))


def decode_frame(frame: str | bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse one inbound frame into a dict with a non-empty string ``type``.

    Binary frames are decoded as UTF-8. Raises :class:`ProtocolError`
    (``INVALID_ARGUMENT``) for undecodable text, invalid JSON (NaN and
    infinities included), a number that overflows a float (``1e400``), nesting
    deeper than :data:`MAX_JSON_DEPTH`, a non-object, or a missing/empty/
    non-string ``type``. Does not validate meta or payload.
    """
    if not isinstance(frame, str):
        try:
            frame = bytes(frame).decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("binary frame is not UTF-8") from None
    try:
        obj = _parse(frame)
    except _NumberOutOfRange:
        raise _invalid("a number is out of range") from None
    except RecursionError:
        raise _invalid(_TOO_DEEP) from None
    except (ValueError, StopIteration):
        raise _invalid("not valid JSON") from None
    if type(obj) is not dict:
        raise _invalid("expected a JSON object")
    # A frame with fewer brackets than the limit cannot nest deeper than it (and a
    # short frame cannot hold that many).
    if (
        len(frame) > 2 * MAX_JSON_DEPTH
        and frame.count("[") + frame.count("{") > MAX_JSON_DEPTH
        and _too_deep(obj)
    ):
        raise _invalid(_TOO_DEEP)
    message_type = obj.get("type")
    if type(message_type) is not str or not message_type:
        raise ProtocolError(
            ErrorCode.INVALID_ARGUMENT,
            "Invalid message envelope: missing or invalid type field",
        )
    return obj


def _invalid(reason: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_ARGUMENT, f"Invalid message: {reason}")


def correlation_id(obj: Mapping[str, Any]) -> str | None:
    """The frame's ``meta.correlationId`` if it is a valid one (a string of at most
    :data:`MAX_CORRELATION_ID_LENGTH` characters), else ``None``."""
    meta = obj.get("meta")
    if type(meta) is dict:
        cid = meta.get("correlationId")
        if type(cid) is str and len(cid) <= MAX_CORRELATION_ID_LENGTH:
            return cid
    return None


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
        return dumps({"type": message_type, "meta": meta or {}, "payload": payload})
    return dumps({"type": message_type, "meta": meta or {}})


# Bounds on what an error frame echoes, so a large bad frame cannot produce a
# larger answer: at most this many issues, each message and path key cut short.
_MAX_ISSUES: Final = 20
_MAX_ISSUE_MESSAGE: Final = 256
_MAX_PATH_ITEMS: Final = 32
_MAX_PATH_KEY: Final = 64
_MAX_ERROR_MESSAGE: Final = 1024
_MAX_ERROR_FRAME: Final = 16 * 1024


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _bounded_issues(issues: list[Any]) -> list[Any]:
    out: list[Any] = []
    for issue in issues[:_MAX_ISSUES]:
        if not isinstance(issue, Mapping):
            continue
        path = issue.get("path")
        path = path if isinstance(path, list) else []
        out.append(
            {
                "path": [
                    _clip(p, _MAX_PATH_KEY) if isinstance(p, str) else p
                    for p in path[:_MAX_PATH_ITEMS]
                ],
                "message": _clip(str(issue.get("message", "")), _MAX_ISSUE_MESSAGE),
            }
        )
    return out


def encode_error(
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
    """Serialize an ``ERROR``/``RPC_ERROR`` frame with the code's retry metadata.

    ``message`` defaults to the code's description. ``details`` are sanitized
    (credential-like keys dropped) when ``sanitize`` is true. ``retry_after_ms``
    defaults to the code's suggested backoff and is never sent with terminal codes.

    The frame is bounded and this function never raises: messages are cut at
    1,024 characters, ``details.issues`` keeps its first 20 issues (then
    ``details.issueCount`` gives the total) with messages and path keys cut
    short, details that cannot be serialized or would make the frame larger
    than 16 KiB are left out.
    """
    info = ERROR_CODE_META.get(code)
    text = message if message else (info.description if info is not None else code)
    head: dict[str, Any] = {"code": code, "message": _clip(str(text), _MAX_ERROR_MESSAGE)}
    tail: dict[str, Any] = {}
    if retry_after_ms is _UNSET:
        if info is not None and info.suggest_backoff_ms is not None:
            tail["retryAfterMs"] = info.suggest_backoff_ms
    elif info is None or info.retry_after != "forbidden":
        tail["retryAfterMs"] = retry_after_ms
    if retryable is not None:
        tail["retryable"] = retryable
    meta = {"correlationId": correlation_id} if correlation_id is not None else {}
    if details:
        try:
            clean = sanitize_details(details) if sanitize else dict(details)
            if clean:
                issues = clean.get("issues")
                if isinstance(issues, list):
                    clean["issues"] = _bounded_issues(issues)
                    if len(issues) > _MAX_ISSUES:
                        clean["issueCount"] = len(issues)
                body = {**head, "details": clean, **tail}
                frame = dumps({"type": kind, "meta": meta, "payload": body})
                if len(frame) <= _MAX_ERROR_FRAME:
                    return frame
        except (TypeError, ValueError, RecursionError):
            pass  # details that cannot go on the wire are left out
    try:
        return dumps({"type": kind, "meta": meta, "payload": {**head, **tail}})
    except (TypeError, ValueError):  # retry hints that are not JSON numbers/booleans
        return dumps({"type": kind, "meta": meta, "payload": head})
