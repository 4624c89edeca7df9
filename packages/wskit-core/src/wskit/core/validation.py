"""Inbound envelope validation: strict root, reserved-meta stripping, standard
meta fields, extended meta and payload, with every issue collected.

The router validates every inbound frame with :func:`validate_envelope`; the
client uses it for inbound frames too, so both ends apply the same rules.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from wskit.core.envelope import (
    _ROOT_KEYS,
    MAX_CORRELATION_ID_LENGTH,
    MAX_TIMEOUT_MS,
    RESERVED_META_KEYS,
    unknown_root_keys,
)
from wskit.core.errors import Issue, ValidationError

if TYPE_CHECKING:
    from wskit.core.schema import MessageSchema

__all__ = ["standard_meta_issue", "validate_envelope"]


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is int or (t is float and math.isfinite(v))


def _is_timeout(v: Any) -> bool:
    return type(v) is int and 0 < v <= MAX_TIMEOUT_MS


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_correlation_id(v: Any) -> bool:
    return type(v) is str and len(v) <= MAX_CORRELATION_ID_LENGTH


_STANDARD_META: Final = {
    "timestamp": (_is_number, "Expected a number (milliseconds since the epoch)"),
    "correlationId": (
        _is_correlation_id,
        f"Expected a string of at most {MAX_CORRELATION_ID_LENGTH} characters",
    ),
    "timeoutMs": (
        _is_timeout,
        f"Expected a positive integer of milliseconds, at most {MAX_TIMEOUT_MS}",
    ),
    "idempotencyKey": (_is_str, "Expected a string"),
    # W3C trace context: only the type is checked; a tracer ignores a value it cannot parse.
    "traceparent": (_is_str, "Expected a string"),
    "tracestate": (_is_str, "Expected a string"),
}


def standard_meta_issue(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the standard meta field ``key`` (the
    message a server answers with), or ``None`` if it is acceptable (or ``key``
    is not a standard field). Clients use it to refuse before sending."""
    rule = _STANDARD_META.get(key)
    if rule is None or rule[0](value):
        return None
    return rule[1]


def _prefixed(prefix: str, issues: list[dict[str, Any]]) -> list[Issue]:
    return [Issue([prefix, *i.get("path", [])], str(i.get("message", ""))) for i in issues]


def validate_envelope(
    schema: MessageSchema[Any], obj: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Validate a decoded frame against ``schema``; return ``(payload, meta)``.

    Order: unknown root keys, meta (reserved keys stripped first, then the
    standard fields, then extended meta), payload. All issues are collected
    into one :class:`ValidationError`.
    """
    issues: list[Issue] = []
    if len(obj) > 3 or not obj.keys() <= _ROOT_KEYS:  # (unknown_root_keys, inline)
        issues.extend(Issue([key], "Unrecognized key") for key in unknown_root_keys(obj))

    meta: dict[str, Any]
    extended: dict[str, Any] | None = None
    raw_meta = obj.get("meta")
    if raw_meta is None and "meta" not in obj:
        meta = {}
    elif type(raw_meta) is dict:
        meta = raw_meta
        if meta:
            if not RESERVED_META_KEYS.isdisjoint(meta):
                meta = {k: v for k, v in meta.items() if k not in RESERVED_META_KEYS}
            for key, value in meta.items():
                rule = _STANDARD_META.get(key)
                if rule is not None:
                    if not rule[0](value):
                        issues.append(Issue(["meta", key], rule[1]))
                else:
                    if extended is None:
                        extended = {}
                    extended[key] = value
    else:
        meta = {}
        issues.append(Issue(["meta"], "Expected an object"))
    if schema.meta is not None:
        try:
            schema.meta.decode(extended or {})
        except ValidationError as exc:
            issues.extend(_prefixed("meta", exc.issues))
    elif extended:
        for key in extended:
            issues.append(Issue(["meta", key], "Unrecognized key"))

    payload: Any = None
    codec = schema.payload
    if codec is None:
        if "payload" in obj:
            issues.append(Issue(["payload"], "Unexpected payload: this message has none"))
    elif "payload" not in obj:
        issues.append(Issue(["payload"], "Required"))
    else:
        try:
            payload = codec.decode(obj["payload"])
        except ValidationError as exc:
            issues.extend(_prefixed("payload", exc.issues))

    if issues:
        raise ValidationError(f"Invalid {schema.type} message", issues)
    return payload, meta
