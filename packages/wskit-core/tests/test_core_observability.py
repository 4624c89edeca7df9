"""What observability middleware relies on in core: W3C trace context as standard
meta, the error code a handler answered with, and publish hooks."""

from __future__ import annotations

from typing import Any

import pytest

from wskit.core import (
    STANDARD_META_KEYS,
    RpcError,
    SchemaDefinitionError,
    ValidationError,
    any_object,
    create_router,
    define_message,
    define_rpc,
    validate_envelope,
)
from wskit.core.testing import Harness

Ping = define_message("PING", any_object())
Ask = define_rpc("ASK", any_object(), "ANSWER", any_object())

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _MetaCodec:
    validator = None

    def __init__(self, names: set[str]) -> None:
        self.field_names = frozenset(names)

    def decode(self, data: Any) -> Any:
        return data

    def encode(self, value: Any, *, validate: bool) -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}


# ------------------------------------------------------------ trace context


def test_trace_context_keys_are_standard_meta() -> None:
    assert {"traceparent", "tracestate"} <= STANDARD_META_KEYS
    frame = {
        "type": "PING",
        "meta": {"traceparent": TRACEPARENT, "tracestate": "k=v"},
        "payload": {},
    }
    payload, meta = validate_envelope(Ping, frame)
    assert payload == {}
    assert meta == {"traceparent": TRACEPARENT, "tracestate": "k=v"}
    props = Ping.json_schema()["properties"]["meta"]["properties"]
    assert props["traceparent"]["type"] == props["tracestate"]["type"] == "string"


def test_trace_context_must_be_a_string() -> None:
    with pytest.raises(ValidationError) as info:
        validate_envelope(Ping, {"type": "PING", "meta": {"traceparent": 1}, "payload": {}})
    assert info.value.issues == [{"path": ["meta", "traceparent"], "message": "Expected a string"}]


def test_schemas_may_not_redeclare_trace_context() -> None:
    with pytest.raises(SchemaDefinitionError, match="traceparent"):
        define_message("X", any_object(), meta=_MetaCodec({"traceparent"}))


async def test_strict_meta_still_rejects_other_unknown_keys() -> None:
    router = create_router()
    seen: list[dict[str, Any]] = []
    router.on(Ping, lambda ctx: seen.append(ctx.meta))
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {}, meta={"traceparent": TRACEPARENT})
        conn.send(Ping, {}, meta={"traceparent": TRACEPARENT, "baggage": "a=b"})
        await h.flush()
        assert seen == [{"traceparent": TRACEPARENT}]
        assert conn.error_codes == ["INVALID_ARGUMENT"]
        assert conn.errors[0]["details"]["issues"] == [
            {"path": ["meta", "baggage"], "message": "Unrecognized key"}
        ]


# ---------------------------------------------------------------- outcomes


async def test_error_code_tells_middleware_how_a_message_was_answered() -> None:
    router = create_router()
    outcomes: list[tuple[str, str | None]] = []

    @router.use
    async def record(ctx: Any, next_: Any) -> None:
        assert ctx.error_code is None
        await next_()
        outcomes.append((ctx.type, ctx.error_code))

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        if ctx.payload.get("deny"):
            ctx.error("PERMISSION_DENIED")

    @router.rpc(Ask)
    async def ask(ctx: Any) -> None:
        if ctx.payload.get("missing"):
            ctx.error("NOT_FOUND", "no such thing")
            ctx.error("INTERNAL")  # after the terminal error: ignored, code kept
            return
        ctx.reply({})

    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        conn.send(Ping, {"deny": True})
        await conn.request(Ask, {})
        with pytest.raises(RpcError):
            await conn.request(Ask, {"missing": True})
        await h.flush()
    assert outcomes == [
        ("PING", None),
        ("PING", "PERMISSION_DENIED"),
        ("ASK", None),
        ("ASK", "NOT_FOUND"),
    ]
    assert conn.error_codes == ["PERMISSION_DENIED", "NOT_FOUND"]
