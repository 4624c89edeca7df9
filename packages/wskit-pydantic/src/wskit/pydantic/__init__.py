"""wskit-pydantic: message contracts as pydantic models.

::

    from pydantic import BaseModel
    from wskit.pydantic import create_router, message, rpc, with_pydantic

    Ping = message("PING", text=str)                      # quick form
    class JoinRoom(BaseModel):
        room_id: str
    Join = message("JOIN_ROOM", JoinRoom)                 # model form: ctx.payload is JoinRoom
    GetUser = rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str})

    router = create_router().plugin(with_pydantic())

Quick-form fields are strict and camelCase on the wire (``user_id`` ↔
``userId``). Model-form schemas keep the model's own config; wskit validates
strictly unless the model sets ``strict=False``, and rejects unknown top-level
keys unless ``strict=False`` is passed to ``message()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from wskit.core.errors import SchemaDefinitionError
from wskit.core.router import ValidatorPlugin, create_router
from wskit.core.schema import MessageSchema, RpcSchema, check_message_type, define_rpc
from wskit.pydantic._codec import VALIDATOR_NAME, PydanticCodec, quick_model

__all__ = [
    "PydanticCodec",
    "create_router",
    "message",
    "rpc",
    "with_pydantic",
]

M = TypeVar("M", bound=BaseModel)
N = TypeVar("N", bound=BaseModel)

PayloadSpec = type[BaseModel] | Mapping[str, Any] | None


def _codec(
    message_type: str, spec: PayloadSpec, *, strict: bool, suffix: str
) -> PydanticCodec[Any] | None:
    if spec is None:
        return None
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return PydanticCodec(spec, forbid_extra=strict)
    if isinstance(spec, Mapping):
        return PydanticCodec(quick_model(message_type, spec, suffix), forbid_extra=strict)
    raise SchemaDefinitionError(
        f"{message_type!r}: a payload is a pydantic model class or a mapping of "
        f"field name to type, got {spec!r}"
    )


def _meta_codec(message_type: str, meta: PayloadSpec) -> PydanticCodec[Any] | None:
    return _codec(message_type, meta, strict=True, suffix="Meta")


@overload
def message(
    message_type: str,
    /,
    *,
    meta: PayloadSpec = None,
    validate_outgoing: bool | None = None,
    strict: bool = True,
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
    **fields: Any,
) -> MessageSchema[Any]:
    """Define an event message.

    - ``message("PING")``: no payload.
    - ``message("PING", text=str, count=(int, 0))``: quick form; a field is a
      type, a ``(type, default)`` pair or a ``pydantic.Field``.
    - ``message("PING", {"text": str})``: the same as a mapping.
    - ``message("JOIN", JoinRoom)``: model form; ``ctx.payload`` is a ``JoinRoom``.

    ``meta`` declares extended meta fields (same forms). ``validate_outgoing``
    overrides the router default for this schema; ``strict=False`` accepts
    unknown top-level payload keys.
    """
    check_message_type(message_type)
    if fields:
        if payload is not None:
            raise SchemaDefinitionError(
                f"{message_type!r}: give the payload as a model/mapping or as keyword "
                f"fields, not both"
            )
        payload = fields
    return MessageSchema(
        message_type,
        _codec(message_type, payload, strict=strict, suffix="Payload"),
        meta=_meta_codec(message_type, meta),
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
) -> RpcSchema[Any, Any]:
    """Define an RPC: a request schema bound to its response schema.

    ``rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str})`` or with
    model classes. Progress updates are validated against the response schema.
    """
    check_message_type(request_type)
    check_message_type(response_type)
    return define_rpc(
        request_type,
        _codec(request_type, request, strict=strict, suffix="Payload"),
        response_type,
        _codec(response_type, response, strict=strict, suffix="Payload"),
        meta=_meta_codec(request_type, meta),
        response_meta=_meta_codec(response_type, response_meta),
        validate_outgoing=validate_outgoing,
    )


def with_pydantic(*, validate_outgoing: bool = True) -> ValidatorPlugin:
    """The validator plugin: ``create_router().plugin(with_pydantic())``.

    Inbound messages are always validated; ``validate_outgoing`` (default on)
    also validates what handlers send. Applying it twice is a no-op.
    """
    return ValidatorPlugin(VALIDATOR_NAME, validate_outgoing=validate_outgoing)
