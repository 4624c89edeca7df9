"""wskit-attrs: message contracts as attrs classes, validated by cattrs.

The same API as ``wskit.pydantic``; swap validators by changing the import::

    import attrs
    from wskit.attrs import create_router, message, rpc, with_attrs

    Ping = message("PING", text=str)                      # quick form
    @attrs.define
    class JoinRoom:
        room_id: str
    Join = message("JOIN_ROOM", JoinRoom)                 # class form: ctx.payload is JoinRoom
    GetUser = rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str})

    router = create_router().plugin(with_attrs())

Validation is cattrs structuring with a strict converter (see
:func:`make_converter`): no type coercion, unknown keys rejected at every
level, attrs validators honoured, each failure reported as an issue with its
path. Quick-form fields are camelCase on the wire (``user_id`` <-> ``userId``);
class-form fields keep their names unless renamed by ``WIRE_NAME`` field
metadata or cattrs overrides on a converter passed as ``converter=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

import attrs
import cattrs

from wskit.attrs._codec import VALIDATOR_NAME, AttrsCodec, quick_class
from wskit.attrs._converter import WIRE_NAME, make_converter, register_wire_names
from wskit.core.errors import SchemaDefinitionError
from wskit.core.router import ValidatorPlugin, create_router
from wskit.core.schema import MessageSchema, RpcSchema, check_message_type, define_rpc

__all__ = [
    "WIRE_NAME",
    "AttrsCodec",
    "create_router",
    "make_converter",
    "message",
    "register_wire_names",
    "rpc",
    "with_attrs",
]

M = TypeVar("M")
N = TypeVar("N")

PayloadSpec = type[Any] | Mapping[str, Any] | None


def _codec(
    message_type: str,
    spec: PayloadSpec,
    *,
    strict: bool,
    suffix: str,
    converter: cattrs.Converter | None,
) -> AttrsCodec[Any] | None:
    if spec is None:
        return None
    try:
        if isinstance(spec, type) and attrs.has(spec):
            return AttrsCodec(spec, forbid_extra=strict, converter=converter)
        if isinstance(spec, Mapping):
            return AttrsCodec(
                quick_class(message_type, spec, suffix), forbid_extra=strict, converter=converter
            )
    except SchemaDefinitionError as exc:
        part = "meta" if suffix == "Meta" else "payload"
        raise SchemaDefinitionError(f"message {message_type!r} {part}: {exc}") from exc
    raise SchemaDefinitionError(
        f"{message_type!r}: a payload is an attrs class or a mapping of "
        f"field name to type, got {spec!r}"
    )


def _meta_codec(
    message_type: str, meta: PayloadSpec, converter: cattrs.Converter | None
) -> AttrsCodec[Any] | None:
    return _codec(message_type, meta, strict=True, suffix="Meta", converter=converter)


@overload
def message(
    message_type: str,
    /,
    *,
    meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> MessageSchema[None]: ...


@overload
def message(
    message_type: str,
    payload: type[M],
    /,
    *,
    meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> MessageSchema[M]: ...


@overload
def message(
    message_type: str,
    payload: Mapping[str, Any] | None = None,
    /,
    *,
    meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
    **fields: Any,
) -> MessageSchema[Any]: ...


def message(
    message_type: str,
    payload: PayloadSpec = None,
    /,
    *,
    meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
    **fields: Any,
) -> MessageSchema[Any]:
    """Define an event message.

    - ``message("PING")``: no payload.
    - ``message("PING", text=str, count=(int, 0))``: quick form; a field is a
      type, a ``(type, default)`` pair or an ``attrs.field(type=..., ...)``.
    - ``message("PING", {"text": str})``: the same as a mapping.
    - ``message("JOIN", JoinRoom)``: class form; ``ctx.payload`` is a ``JoinRoom``.

    ``meta`` declares extended meta fields (same forms). ``validate_outgoing``
    overrides the router default for this schema; ``strict=False`` accepts
    (and drops) unknown top-level payload keys; ``converter`` is a converter
    from :func:`make_converter` carrying your cattrs overrides.
    """
    check_message_type(message_type)
    if fields:
        if payload is not None:
            raise SchemaDefinitionError(
                f"{message_type!r}: give the payload as a class/mapping or as keyword "
                f"fields, not both"
            )
        payload = fields
    return MessageSchema(
        message_type,
        _codec(message_type, payload, strict=strict, suffix="Payload", converter=converter),
        meta=_meta_codec(message_type, meta, converter),
        validate_outgoing=validate_outgoing,
    )


@overload
def rpc(
    request_type: str,
    request: type[M],
    response_type: str,
    response: type[N],
    /,
    *,
    meta: PayloadSpec = None,
    response_meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> RpcSchema[M, N]: ...


@overload
def rpc(
    request_type: str,
    request: type[M],
    response_type: str,
    response: Mapping[str, Any] | None,
    /,
    *,
    meta: PayloadSpec = None,
    response_meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> RpcSchema[M, Any]: ...


@overload
def rpc(
    request_type: str,
    request: Mapping[str, Any] | None,
    response_type: str,
    response: type[N],
    /,
    *,
    meta: PayloadSpec = None,
    response_meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> RpcSchema[Any, N]: ...


@overload
def rpc(
    request_type: str,
    request: Mapping[str, Any] | None,
    response_type: str,
    response: Mapping[str, Any] | None,
    /,
    *,
    meta: PayloadSpec = None,
    response_meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> RpcSchema[Any, Any]: ...


def rpc(
    request_type: str,
    request: PayloadSpec,
    response_type: str,
    response: PayloadSpec,
    /,
    *,
    meta: PayloadSpec = None,
    response_meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
    converter: cattrs.Converter | None = None,
) -> RpcSchema[Any, Any]:
    """Define an RPC: a request schema bound to its response schema.

    ``rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str})`` or with
    attrs classes. Progress updates are validated against the response schema.
    """
    check_message_type(request_type)
    check_message_type(response_type)
    return define_rpc(
        request_type,
        _codec(request_type, request, strict=strict, suffix="Payload", converter=converter),
        response_type,
        _codec(response_type, response, strict=strict, suffix="Payload", converter=converter),
        meta=_meta_codec(request_type, meta, converter),
        response_meta=_meta_codec(response_type, response_meta, converter),
        validate_outgoing=validate_outgoing,
    )


def with_attrs(*, validate_outgoing: bool = True) -> ValidatorPlugin:
    """The validator plugin: ``create_router().plugin(with_attrs())``.

    Inbound messages are always validated; ``validate_outgoing`` (default on)
    also validates what handlers send. Applying it twice is a no-op.
    """
    return ValidatorPlugin(VALIDATOR_NAME, validate_outgoing=validate_outgoing)
