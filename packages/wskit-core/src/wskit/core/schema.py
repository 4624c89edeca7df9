"""Message schemas and the validator protocol.

A :class:`MessageSchema` names a message type and carries a *codec* for its
payload (and optionally for extended meta). Validator packages
(``wskit.pydantic``, ``wskit.attrs``) implement :class:`PayloadCodec`; core
itself only ships :class:`JsonObjectCodec`, which accepts any JSON object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, runtime_checkable

from wskit.core.envelope import (
    ERROR,
    RESERVED_META_KEYS,
    RPC_ERROR,
    STANDARD_META_KEYS,
    is_reserved_type,
)
from wskit.core.errors import Issue, SchemaDefinitionError, ValidationError

__all__ = [
    "JsonObjectCodec",
    "MessageKind",
    "MessageSchema",
    "PayloadCodec",
    "RpcSchema",
    "any_object",
    "check_message_type",
    "define_message",
    "define_rpc",
    "envelope_json_schema",
]

P = TypeVar("P")
R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)

MessageKind = Literal["event", "rpc"]


@runtime_checkable
class PayloadCodec(Protocol[T_co]):
    """What a validator package provides for one payload (or extended meta) schema.

    - ``validator``: the name of the validator (``"pydantic"``, ``"attrs"``), or
      ``None`` for codecs that need no plugin. A router only accepts schemas
      whose validator plugin is installed (``with_pydantic()``...).
    - ``decode(data)``: validate a JSON value from the wire and return the typed
      value. Raise :class:`~wskit.core.errors.ValidationError` with issues whose
      paths are relative to this value.
    - ``encode(value, validate=...)``: turn a typed value or a plain mapping
      into a JSON-compatible value with wire (camelCase) names; validate it
      first when ``validate`` is true (raising ``ValidationError``).
    - ``json_schema()``: the JSON Schema of the wire form.
    - ``field_names``: wire names of the top-level fields (used for extended meta).

    Optionally, for speed, a codec may also have ``encode_json(value)``:
    validate ``value`` as ``encode(value, validate=True)`` would (raising the
    same ``ValidationError``) and return the payload's JSON text, the same JSON
    value :func:`~wskit.core.envelope.dumps` would write for what ``encode()``
    returns (NaN and infinities refused with ``ValueError``, lone surrogates as
    ``\\uXXXX`` escapes). wskit then splices that text into the frame instead
    of serializing the payload itself; it is only used when outbound validation
    is on.
    """

    @property
    def validator(self) -> str | None: ...

    @property
    def field_names(self) -> frozenset[str]: ...

    def decode(self, data: Any) -> T_co: ...

    def encode(self, value: Any, *, validate: bool) -> Any: ...

    def json_schema(self) -> dict[str, Any]: ...


class JsonObjectCodec:
    """Accepts any JSON object as the payload, unvalidated beyond that.

    For schemas defined with :func:`define_message` when no validator package
    is wanted (tests, prototypes, pass-through routes).
    """

    validator: str | None = None
    field_names: frozenset[str] = frozenset()

    def decode(self, data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise ValidationError("Validation failed", [Issue([], "Expected an object")])
        return data

    def encode(self, value: Any, *, validate: bool) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError("Outbound validation failed", [Issue([], "Expected an object")])
        return dict(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}


_ANY_OBJECT = JsonObjectCodec()


#: Frame types the server itself sends for failures; no schema may take them.
_SYSTEM_TYPES: Final = frozenset({ERROR, RPC_ERROR})


def check_message_type(message_type: object) -> str:
    """Return ``message_type`` if a schema may use it, else raise
    :class:`SchemaDefinitionError` saying why and what to do instead.

    A type is a non-empty string that does not start with ``$ws:`` or ``__``
    (reserved for system frames) and is not ``ERROR`` or ``RPC_ERROR`` (the
    frames the server sends for failures).
    """
    if not isinstance(message_type, str) or not message_type:
        raise SchemaDefinitionError(
            f"A message type must be a non-empty string, got {message_type!r}"
        )
    if is_reserved_type(message_type):
        raise SchemaDefinitionError(
            f"Message type {message_type!r} is reserved: types starting with '$ws:' or '__' "
            f"belong to system frames. Choose a name without that prefix."
        )
    if message_type in _SYSTEM_TYPES:
        raise SchemaDefinitionError(
            f"Message type {message_type!r} is a system frame type: the server sends ERROR "
            f"and RPC_ERROR for failures, and clients treat them so. Choose another name "
            f"(e.g. 'APP_{message_type}'), or send a failure with ctx.error(code, message)."
        )
    return message_type


class MessageSchema(Generic[P]):
    """An event message contract: a type name and a payload codec.

    ``P`` is the type handlers see as ``ctx.payload`` (``None`` when the schema
    has no payload). Build schemas with ``wskit.pydantic.message()``,
    ``wskit.attrs.message()`` or :func:`define_message`.
    """

    __slots__ = ("_encode_json", "meta", "payload", "type", "validate_outgoing")

    kind: MessageKind = "event"

    def __init__(
        self,
        message_type: str,
        payload: PayloadCodec[P] | None,
        *,
        meta: PayloadCodec[Any] | None = None,
        validate_outgoing: bool | None = None,
    ) -> None:
        self.type: str = check_message_type(message_type)
        self.payload: PayloadCodec[P] | None = payload
        # The codec's optional fast path (see PayloadCodec): payload -> JSON text.
        self._encode_json: Callable[[Any], str] | None = getattr(payload, "encode_json", None)
        if meta is not None:
            names = meta.field_names
            reserved = sorted(names & RESERVED_META_KEYS)
            if reserved:
                raise SchemaDefinitionError(
                    f"Reserved meta keys not allowed in schema: {', '.join(reserved)}. "
                    f"Reserved keys: clientId, receivedAt"
                )
            standard = sorted(names & STANDARD_META_KEYS)
            if standard:
                raise SchemaDefinitionError(
                    f"Standard meta keys are built in and cannot be redeclared: "
                    f"{', '.join(standard)}"
                )
        self.meta: PayloadCodec[Any] | None = meta
        self.validate_outgoing = validate_outgoing

    @property
    def validators(self) -> frozenset[str]:
        """Validator plugins this schema needs (empty for plain codecs)."""
        names = set()
        for codec in (self.payload, self.meta):
            if codec is not None and codec.validator:
                names.add(codec.validator)
        return frozenset(names)

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of this message's whole envelope."""
        return envelope_json_schema(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type!r})"


class RpcSchema(MessageSchema[P], Generic[P, R]):
    """A request schema bound to its response schema (``rpc()``)."""

    __slots__ = ("response",)

    kind: MessageKind = "rpc"

    def __init__(
        self,
        message_type: str,
        payload: PayloadCodec[P] | None,
        response: MessageSchema[R],
        *,
        meta: PayloadCodec[Any] | None = None,
        validate_outgoing: bool | None = None,
    ) -> None:
        super().__init__(message_type, payload, meta=meta, validate_outgoing=validate_outgoing)
        if not isinstance(response, MessageSchema) or isinstance(response, RpcSchema):
            raise SchemaDefinitionError(
                f"RPC schema for type {message_type!r} must have an event response schema"
            )
        self.response: MessageSchema[R] = response

    @property
    def validators(self) -> frozenset[str]:
        return super().validators | self.response.validators


def define_message(
    message_type: str,
    payload: PayloadCodec[P] | None = None,
    *,
    meta: PayloadCodec[Any] | None = None,
    validate_outgoing: bool | None = None,
) -> MessageSchema[P]:
    """Define an event schema from codecs (validator packages wrap this)."""
    return MessageSchema(message_type, payload, meta=meta, validate_outgoing=validate_outgoing)


def define_rpc(
    request_type: str,
    request_payload: PayloadCodec[P] | None,
    response_type: str,
    response_payload: PayloadCodec[R] | None,
    *,
    meta: PayloadCodec[Any] | None = None,
    response_meta: PayloadCodec[Any] | None = None,
    validate_outgoing: bool | None = None,
) -> RpcSchema[P, R]:
    """Define an RPC request schema bound to its response schema."""
    response = MessageSchema(
        response_type, response_payload, meta=response_meta, validate_outgoing=validate_outgoing
    )
    return RpcSchema(
        request_type, request_payload, response, meta=meta, validate_outgoing=validate_outgoing
    )


def any_object() -> JsonObjectCodec:
    """The shared codec accepting any JSON object."""
    return _ANY_OBJECT


_STANDARD_META_SCHEMA: dict[str, Any] = {
    "timestamp": {"type": "number"},
    "correlationId": {"type": "string"},
    "timeoutMs": {"type": "integer", "exclusiveMinimum": 0},
    "idempotencyKey": {"type": "string"},
    "traceparent": {"type": "string", "description": "W3C trace context (traceparent)"},
    "tracestate": {"type": "string", "description": "W3C trace context (tracestate)"},
}


def envelope_json_schema(schema: MessageSchema[Any]) -> dict[str, Any]:
    """JSON Schema of a message's envelope (type, meta, payload), strict."""
    meta_props = dict(_STANDARD_META_SCHEMA)
    if schema.meta is not None:
        ext = schema.meta.json_schema()
        meta_props.update(ext.get("properties", {}))
        meta_required = list(ext.get("required", []))
    else:
        meta_required = []
    meta_schema: dict[str, Any] = {
        "type": "object",
        "properties": meta_props,
        "additionalProperties": False,
    }
    if meta_required:
        meta_schema["required"] = meta_required
    properties: dict[str, Any] = {"type": {"const": schema.type}, "meta": meta_schema}
    required = ["type", "meta"] if meta_required else ["type"]
    defs: dict[str, Any] = {}
    if schema.payload is not None:
        payload_schema = dict(schema.payload.json_schema())
        # Hoist "$defs" so "#/$defs/..." references resolve from the envelope root.
        defs.update(payload_schema.pop("$defs", {}))
        properties["payload"] = payload_schema
        required.append("payload")
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": schema.type,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if defs:
        out["$defs"] = defs
    return out
