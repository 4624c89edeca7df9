"""What observability middleware relies on in core: W3C trace context as standard
meta, the error code a handler answered with, and publish hooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from wskit.core import (
    STANDARD_META_KEYS,
    PublishResult,
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


# ------------------------------------------------------------ publish hooks


class _RecordingPubSub:
    """The smallest pub/sub provider: records what reaches it."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, Any, Mapping[str, Any] | None]] = []

    def topics(self, connection: Any) -> Any:
        raise NotImplementedError

    def readonly_topics(self, connection: Any) -> Any:
        raise NotImplementedError

    async def publish(
        self,
        topic: str,
        schema: Any,
        payload: Any,
        *,
        sender: Any = None,
        exclude_self: bool = False,
        partition_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        self.published.append((topic, schema.type, payload, meta))
        return PublishResult.success("exact", 0)

    async def connection_opened(self, connection: Any) -> None:
        pass

    async def connection_closed(self, connection: Any) -> None:
        pass


async def test_publish_hooks_set_the_meta_of_every_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = create_router()
    provider = _RecordingPubSub()
    router.set_pubsub(provider)
    calls: list[tuple[str, str, Any]] = []

    def add_trace(topic: str, schema: Any, meta: Mapping[str, Any] | None) -> Any:
        calls.append((topic, schema.type, meta))
        return {**(meta or {}), "traceparent": TRACEPARENT}

    def broken(topic: str, schema: Any, meta: Mapping[str, Any] | None) -> Any:
        raise RuntimeError("hook bug")

    def keep(topic: str, schema: Any, meta: Mapping[str, Any] | None) -> None:
        calls.append(("keep", schema.type, meta))

    remove = router.add_publish_hook(add_trace)
    router.add_publish_hook(broken)
    router.add_publish_hook(keep)

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        await ctx.publish("room:1", Ping, {"n": 1}, meta={"origin": "ctx"})

    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        await h.flush()
        await router.publish("room:2", Ping, {"n": 2})
        remove()
        await router.publish("room:3", Ping, {"n": 3})
    traced = {"traceparent": TRACEPARENT}
    assert provider.published == [
        ("room:1", "PING", {"n": 1}, {"origin": "ctx", **traced}),
        ("room:2", "PING", {"n": 2}, traced),
        ("room:3", "PING", {"n": 3}, None),
    ]
    assert calls == [
        ("room:1", "PING", {"origin": "ctx"}),
        ("keep", "PING", {"origin": "ctx", **traced}),
        ("room:2", "PING", None),
        ("keep", "PING", traced),
        ("keep", "PING", None),
    ]
    assert [r.getMessage() for r in caplog.records] == ["wskit: publish hook failed"] * 3
