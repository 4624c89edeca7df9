"""Outbound envelope building and inbound reply/error decoding (no I/O)."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from wskit.client.errors import ServerError
from wskit.core.envelope import ERROR, STANDARD_META_KEYS, dumps
from wskit.core.errors import Issue, RpcError, ValidationError
from wskit.core.pubsub import StreamPosition
from wskit.core.schema import MessageSchema
from wskit.core.validation import standard_meta_issue

__all__ = ["ClientErrorInfo", "Compat", "ErrorKind", "Message", "SendStatus"]

P = TypeVar("P")

#: Meta keys the client never takes from ``meta=`` (the server owns the first two;
#: the correlationId comes only from ``correlation_id=``).
_DROPPED_META: Final = frozenset({"clientId", "receivedAt", "correlationId"})

ErrorKind = Literal["parse", "validation", "overflow", "server", "handler", "unmatched", "internal"]

#: Which server dialect the client writes: ``"wskit"``, or ``"ws-kit-ts"`` for WS-Kit
#: TypeScript servers, whose strict meta schema knows only ``timestamp``,
#: ``correlationId`` and the schema's extended meta.
Compat = Literal["wskit", "ws-kit-ts"]

#: The largest ``retryAfterMs`` taken from a server (the largest integer a JS number
#: holds exactly); larger or non-finite values are ignored.
MAX_RETRY_AFTER_MS: Final = 2**53 - 1

# Lone surrogates are valid in JSON strings (as escapes) but cannot be written as UTF-8;
# an ASCII-only encoding escapes them (and everything else non-ASCII), as JSON.stringify does.
_ascii_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Message(Generic[P]):
    """A validated inbound message: what handlers, streams and ``Call.reply()`` get.

    ``payload`` is the schema's payload type (a model instance for model-form
    schemas, ``None`` for schemas without a payload). A message published on a
    topic with history names its ``topic`` and its ``position`` there (from
    ``meta.topicPosition``, which is taken out of ``meta``); both are ``None``
    otherwise.
    """

    type: str
    meta: dict[str, Any]
    payload: P
    topic: str | None = None
    position: StreamPosition | None = None


@dataclass(frozen=True, slots=True)
class ClientErrorInfo:
    """Where an error passed to ``on_error`` came from.

    ``kind``:

    - ``"parse"``: an undecodable frame (not JSON, not UTF-8, not an object, no
      type, nested too deep...); ``details`` is the raw frame.
    - ``"validation"``: an inbound message or progress update failed its schema,
      or its codec could not process it; ``details`` is the issue list.
    - ``"overflow"``: offline queue or stream buffer full.
    - ``"server"``: an ``ERROR`` frame no request was waiting for.
    - ``"handler"``: a handler, stream or progress callback raised.
    - ``"unmatched"``: a reply, progress or ``RPC_ERROR`` frame for a
      correlationId no request has (and no ``on_unhandled`` callback took it);
      ``details`` is the decoded frame.
    - ``"internal"``: the client itself failed. Handling one inbound frame raised
      (``details`` is the raw frame; the frame is dropped and the next one is
      read), or the connection's reader or writer failed (``details`` is
      ``"reader"``, ``"writer"`` or ``"supervisor"``; the socket is closed with
      1011 and the client reconnects).
    """

    kind: ErrorKind
    message_type: str | None = None
    details: Any = None


class SendStatus(enum.Enum):
    """What :meth:`Client.send` did with a message. Falsy only for ``DROPPED``."""

    SENT = "sent"
    """Handed to the open connection's writer."""
    QUEUED = "queued"
    """Held in the offline queue; sent in order on the next open."""
    DROPPED = "dropped"
    """Not sent: the queue is off or full (policy ``drop-newest``)."""

    def __bool__(self) -> bool:
        return self is not SendStatus.DROPPED


def _meta_issue(key: str, value: Any) -> Issue | None:
    # The server's own rules (timeoutMs at most 2**31 - 1, correlationId at most
    # 256 characters...): refused here rather than answered INVALID_ARGUMENT there.
    message = standard_meta_issue(key, value)
    return None if message is None else Issue(["meta", key], message)


def build_meta(
    schema: MessageSchema[Any],
    meta: Mapping[str, Any] | None,
    *,
    timestamp: int,
    correlation_id: str | None,
    idempotency_key: str | None,
    compat: Compat = "wskit",
) -> dict[str, Any]:
    """``{"timestamp": now, ...meta}`` with standard keys checked and extended
    meta validated by the schema's meta codec. Raises ``ValidationError``.

    With ``compat="ws-kit-ts"``, ``timeoutMs`` is never written and an
    idempotency key (argument or ``meta``) is refused: a TS server drops a
    request whose meta carries either."""
    out: dict[str, Any] = {"timestamp": timestamp}
    extended: dict[str, Any] | None = None
    ts_server = compat == "ws-kit-ts"
    if ts_server and idempotency_key is not None:
        raise _ts_idempotency_error(schema.type)
    if meta:
        issues: list[Issue] = []
        for key, value in meta.items():
            if key in _DROPPED_META:
                continue
            if ts_server and key in _TS_UNKNOWN_META:
                if key == "idempotencyKey":
                    raise _ts_idempotency_error(schema.type)
                continue
            if key in STANDARD_META_KEYS:
                issue = _meta_issue(key, value)
                if issue is not None:
                    issues.append(issue)
                out[key] = value
            else:
                if extended is None:
                    extended = {}
                extended[key] = value
        if extended and schema.meta is None:
            issues.extend(Issue(["meta", k], "Unrecognized key") for k in extended)
        if issues:
            raise outbound_error(schema.type, issues)
    if schema.meta is not None:
        try:
            wire = schema.meta.encode(extended or {}, validate=True)
        except ValidationError as exc:
            raise outbound_error(
                schema.type,
                [Issue(["meta", *i.get("path", [])], str(i.get("message"))) for i in exc.issues],
            ) from None
        out.update(wire)
    if idempotency_key is not None:
        out["idempotencyKey"] = idempotency_key
    if correlation_id is not None:
        issue = _meta_issue("correlationId", correlation_id)
        if issue is not None:
            raise outbound_error(schema.type, [issue])
        out["correlationId"] = correlation_id
    return out


def outbound_error(message_type: str, issues: list[Issue]) -> ValidationError:
    """A :class:`ValidationError` whose text names the message type and its issues
    (``Cannot send 'GET_USER': payload.userId: Field required``); the issues
    themselves are in ``.issues``."""
    shown = "; ".join(
        f"{'.'.join(str(p) for p in i.get('path', [])) or '(root)'}: {i.get('message')}"
        for i in issues[:5]
    )
    more = f"; and {len(issues) - 5} more" if len(issues) > 5 else ""
    return ValidationError(f"Cannot send {message_type!r}: {shown}{more}", issues)


def _ts_idempotency_error(message_type: str) -> ValidationError:
    return outbound_error(
        message_type,
        [
            Issue(
                ["meta", "idempotencyKey"],
                "WS-Kit TypeScript servers drop requests with meta.idempotencyKey "
                "(compat='ws-kit-ts'): send it without an idempotency key",
            )
        ],
    )


#: Standard meta keys a WS-Kit TS server's strict meta schema does not know.
_TS_UNKNOWN_META: Final = frozenset({"timeoutMs", "idempotencyKey"})


def encode_frame(envelope: dict[str, Any]) -> str:
    """Serialize one outbound envelope with the core's ``dumps``.

    The result is always valid UTF-8 text: should a lone surrogate be left in
    it, the frame is written ASCII-only instead, with the surrogate as a JSON
    ``\\uXXXX`` escape (what ``JSON.stringify`` writes).
    """
    frame = dumps(envelope)
    if not frame.isascii():
        try:
            frame.encode("utf-8")
        except UnicodeEncodeError:
            return _ascii_encoder.encode(envelope)
    return frame


def encode_envelope(
    message_type: str, meta: dict[str, Any], payload: Any = None, *, has_payload: bool = False
) -> str:
    """``{"type", "meta", "payload"?}`` as a frame (``payload`` only when ``has_payload``)."""
    if has_payload:
        return encode_frame({"type": message_type, "meta": meta, "payload": payload})
    return encode_frame({"type": message_type, "meta": meta})


def encode_message(schema: MessageSchema[Any], payload: Any, meta: dict[str, Any]) -> str:
    """Validate ``payload`` with the schema's codec and serialize the frame."""
    codec = schema.payload
    if codec is None:
        if payload is not None:
            raise TypeError(f"Message {schema.type!r} has no payload")
        return encode_envelope(schema.type, meta)
    if payload is None:
        raise TypeError(f"Message {schema.type!r} needs a payload")
    try:
        wire = codec.encode(payload, validate=schema.validate_outgoing is not False)
    except ValidationError as exc:
        raise outbound_error(
            schema.type,
            [Issue(["payload", *i.get("path", [])], str(i.get("message"))) for i in exc.issues],
        ) from None
    return encode_envelope(schema.type, meta, wire, has_payload=True)


def error_from_frame(message_type: str, obj: Mapping[str, Any]) -> RpcError:
    """Build the exception for an ``RPC_ERROR`` (:class:`RpcError`) or ``ERROR``
    (:class:`ServerError`) frame, tolerating malformed payloads.

    An explicit ``"retryAfterMs": null`` means "do not retry": it sets
    ``retryable=False`` unless the server sent ``retryable`` itself. A
    ``retryAfterMs`` that is negative, not finite or above
    :data:`MAX_RETRY_AFTER_MS` is ignored.
    """
    body = obj.get("payload")
    if type(body) is not dict:
        body = {}
    code = body.get("code")
    if type(code) is not str or not code:
        code = "INTERNAL" if message_type != ERROR else "UNKNOWN"
    message = body.get("message")
    if type(message) is not str or not message:
        message = "RPC error" if message_type != ERROR else "Server error"
    details = body.get("details")
    if type(details) is not dict:
        details = None
    retryable = body.get("retryable")
    if type(retryable) is not bool:
        retryable = None
    retry_after: Any = body.get("retryAfterMs")
    retry_after_ms: int | None = None
    kind = type(retry_after)
    # A 400-digit int cannot even be compared with math.isfinite (it overflows a float).
    if (kind is int or (kind is float and math.isfinite(retry_after))) and (
        0 <= retry_after <= MAX_RETRY_AFTER_MS
    ):
        retry_after_ms = int(retry_after)
    elif retry_after is None and "retryAfterMs" in body and retryable is None:
        retryable = False
    cls = ServerError if message_type == ERROR else RpcError
    return cls(code, message, details, retryable=retryable, retry_after_ms=retry_after_ms)
