"""ctx.publish / router.publish: PublishResult in each case, one serialization, fan-out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wskit.pubsub.adapter as adapter_module
from wskit.core.connection import Connection
from wskit.core.errors import CapabilityError
from wskit.core.pubsub import PublishResult
from wskit.core.schema import MessageSchema, define_message
from wskit.core.testing import FakeConnection, Harness
from wskit.pubsub import (
    PublishEnvelope,
    PubSubError,
    get_pubsub,
    with_pubsub,
)
from wskit.pubsub.testing import InProcessBroker, RecordingAdapter
from wskit.pydantic import create_router, message, with_pydantic

Chat = message("CHAT", text=str)
Say = message("SAY", topic=str, text=str, exclude_self=bool)
Ping = message("PING")


def make_router(adapter: Any = None, **options: Any) -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub(adapter, **options))
    router.extensions_results = []

    @router.on(Say)
    async def say(ctx: Any) -> None:
        result = await ctx.publish(
            ctx.payload.topic,
            Chat,
            {"text": ctx.payload.text},
            exclude_self=ctx.payload.exclude_self,
        )
        router.extensions_results.append(result)

    return router


async def join(router: Any, conn: FakeConnection[Any], *topics: str) -> None:
    await get_pubsub(router).topics(conn.connection).subscribe_many(topics)


async def test_publish_fans_out_and_reports_exact_matches() -> None:
    router = make_router()
    async with Harness(router) as h:
        a, b, c = [await h.connect() for _ in range(3)]
        await join(router, a, "room:1")
        await join(router, b, "room:1")
        await join(router, c, "room:2")
        a.send(Say, {"topic": "room:1", "text": "hi", "excludeSelf": False})
        await h.flush()
        [result] = router.extensions_results
        assert result == PublishResult(ok=True, capability="exact", matched=2)
        expected = {"type": "CHAT", "meta": {}, "payload": {"text": "hi"}}
        assert a.messages(Chat) == [expected] and b.messages(Chat) == [expected]
        assert c.messages(Chat) == []
        [record] = h.publishes
        assert (record.topic, record.type, record.payload, record.sender) == (
            "room:1",
            "CHAT",
            {"text": "hi"},
            a.client_id,
        )
        assert record.result is result


async def test_exclude_self_skips_the_sender_and_is_not_counted() -> None:
    router = make_router()
    async with Harness(router) as h:
        a, b = await h.connect(), await h.connect()
        await join(router, a, "room:1")
        await join(router, b, "room:1")
        a.send(Say, {"topic": "room:1", "text": "hi", "excludeSelf": True})
        await h.flush()
        assert router.extensions_results[0].matched == 1
        assert a.messages(Chat) == [] and b.payloads(Chat) == [{"text": "hi"}]
        # A sender that is not subscribed is simply not there to skip.
        c = await h.connect()
        c.send(Say, {"topic": "room:1", "text": "yo", "excludeSelf": True})
        await h.flush()
        assert router.extensions_results[1].matched == 2


async def test_the_frame_is_serialized_once_per_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    encodes: list[str] = []
    real = adapter_module.encode_envelope

    def counting(*args: Any, **kwargs: Any) -> str:
        encodes.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(adapter_module, "encode_envelope", counting)
    codec_calls: list[Any] = []
    inner = Chat.payload
    assert inner is not None

    class CountingCodec:
        validator = inner.validator
        field_names = inner.field_names
        decode = inner.decode
        json_schema = inner.json_schema

        def encode(self, value: Any, *, validate: bool) -> Any:
            codec_calls.append(value)
            return inner.encode(value, validate=validate)

    Counted = MessageSchema("CHAT", CountingCodec())
    router = make_router()
    async with Harness(router) as h:
        conns = [await h.connect() for _ in range(50)]
        for conn in conns:
            await join(router, conn, "room:1")
        result = await router.publish("room:1", Counted, {"text": "once"})
        await h.flush()
        assert result.matched == 50
        assert (encodes, len(codec_calls)) == (["CHAT"], 1)
        first = conns[0].raw_frames[0]
        assert all(conn.raw_frames == [first] for conn in conns)
        assert all(conn.raw_frames[0] is first for conn in conns)


async def test_validation_failures_return_validation() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "room:1")
        bad = await router.publish("room:1", Chat, {"text": 5})
        assert (bad.ok, bad.error, bad.retryable) == (False, "VALIDATION", False)
        assert bad.details is not None
        assert bad.details["issues"][0]["path"] == ["payload", "text"]
        extra = await router.publish("room:1", Chat, {"text": "x", "nope": 1})
        missing = await router.publish("room:1", Chat, None)
        unexpected = await router.publish("room:1", Ping, {"text": "x"})
        assert [r.error for r in (extra, missing, unexpected)] == ["VALIDATION"] * 3
        await h.flush()
        assert a.frames == []
        assert [p.result.error for p in h.publishes] == ["VALIDATION"] * 4


async def test_invalid_topic_returns_validation() -> None:
    router = make_router()
    async with Harness(router) as h:
        await h.connect()
        result = await router.publish("not a topic", Chat, {"text": "x"})
        assert (result.ok, result.error) == (False, "VALIDATION")
        assert result.details == {
            "pubsubCode": "INVALID_TOPIC",
            "reason": "pattern",
            "topic": "not a topic",
        }
        result = await router.publish("", Chat, {"text": "x"})
        assert result.error == "VALIDATION"


async def test_outgoing_validation_can_be_switched_off() -> None:
    router = make_router()
    router.validate_outgoing = False
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "room:1")
        result = await router.publish("room:1", Chat, {"text": 5})
        await h.flush()
        assert result.ok and a.payloads(Chat) == [{"text": 5}]
        # Unserializable values then fail at serialization, still without raising.
        result = await router.publish("room:1", Chat, {"text": object()})
        assert (result.ok, result.error) == (False, "VALIDATION")
        assert result.details is not None and result.details["reason"] == "serialization"


async def test_schema_level_validate_outgoing_wins() -> None:
    Loose = message("LOOSE", text=str, validate_outgoing=False)
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "t")
        assert (await router.publish("t", Loose, {"text": 1})).ok
        await h.flush()
        assert a.payloads(Loose) == [{"text": 1}]


async def test_payload_less_schema_and_models() -> None:
    Model = Chat.payload.model  # type: ignore[union-attr]
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "t")
        assert (await router.publish("t", Ping)).ok
        assert (await router.publish("t", Chat, Model(text="model"))).ok
        await h.flush()
        assert a.frames == [
            {"type": "PING", "meta": {}},
            {"type": "CHAT", "meta": {}, "payload": {"text": "model"}},
        ]


async def test_meta_is_copied_without_reserved_keys() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "t")
        meta = {
            "timestamp": 5,
            "clientId": "x",
            "receivedAt": 1,
            "excludeClientId": "y",
            "correlationId": "c",
        }
        assert (await router.publish("t", Chat, {"text": "m"}, meta=meta)).ok
        await h.flush()
        assert a.frames[0]["meta"] == {"timestamp": 5}


async def test_authorize_publish_denies_with_acl_publish() -> None:
    def authorize(topic: str, conn: Connection[Any]) -> bool:
        if topic == "locked":
            raise PubSubError("ACL_SUBSCRIBE", "locked", {"policy": "lock"})
        return topic != "readonly"

    router = make_router(authorize_publish=authorize)
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "readonly", "locked")
        a.send(Say, {"topic": "readonly", "text": "x", "excludeSelf": False})
        a.send(Say, {"topic": "locked", "text": "x", "excludeSelf": False})
        await h.flush()
        denied, custom = router.extensions_results
        assert (denied.ok, denied.error, denied.retryable) == (False, "ACL_PUBLISH", False)
        assert denied.details == {"op": "publish", "kind": "forbidden", "topic": "readonly"}
        assert custom.error == "ACL_PUBLISH" and custom.details["policy"] == "lock"
        assert a.frames == []
        # Server-side publishes are trusted: no authorization.
        assert (await router.publish("readonly", Chat, {"text": "srv"})).ok


async def test_normalize_applies_to_publish() -> None:
    router = make_router(normalize=lambda t, c: t.lower())
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "Room:1")
        result = await router.publish("ROOM:1", Chat, {"text": "x"})
        assert result.matched == 1 and h.publishes[0].topic == "room:1"


async def test_adapter_failure_returns_retryable_adapter_error() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        a = await h.connect()
        await join(router, a, "t")
        adapter.fail_publish = True
        result = await router.publish("t", Chat, {"text": "x"})
        assert (result.ok, result.error, result.retryable, result.adapter) == (
            False,
            "ADAPTER_ERROR",
            True,
            "recording",
        )
        assert result.details == {"cause": "ConnectionError"}
        await h.flush()
        assert a.frames == []


async def test_publish_without_subscribers_and_without_pubsub() -> None:
    router = make_router()
    async with Harness(router) as h:
        await h.connect()
        assert await router.publish("empty", Chat, {"text": "x"}) == PublishResult(
            ok=True, capability="exact", matched=0
        )
    bare = create_router().plugin(with_pydantic())
    with pytest.raises(CapabilityError, match=r"publish\(\) requires with_pubsub\(\)"):
        await bare.publish("t", Chat, {"text": "x"})
    with pytest.raises(CapabilityError):
        get_pubsub(bare)


async def test_with_pubsub_is_idempotent_and_defaults_to_memory() -> None:
    router = create_router().plugin(with_pubsub()).plugin(with_pubsub())
    assert type(get_pubsub(router).adapter).__name__ == "MemoryPubSub"
    assert "pubsub" in router.capabilities


async def test_delivery_skips_closed_connections() -> None:
    router = make_router()
    async with Harness(router) as h:
        a, b = await h.connect(), await h.connect()
        await join(router, a, "t")
        await join(router, b, "t")
        await a.close()
        result = await router.publish("t", Chat, {"text": "x"})
        await h.flush()
        assert result.matched == 1 and b.payloads(Chat) == [{"text": "x"}]


# ------------------------------------------------------------ distributed


def signal_deliveries(router: Any) -> asyncio.Event:
    pubsub = get_pubsub(router)
    event = asyncio.Event()
    inner = pubsub.deliver

    def deliver(envelope: PublishEnvelope) -> int:
        n = inner(envelope)
        event.set()
        return n

    pubsub.deliver = deliver  # type: ignore[method-assign]
    return event


async def test_distributed_adapter_delivers_once_on_every_instance() -> None:
    broker = InProcessBroker()
    router_a = make_router(broker.adapter())
    router_b = make_router(broker.adapter())
    delivered_a, delivered_b = signal_deliveries(router_a), signal_deliveries(router_b)
    async with Harness(router_a) as ha, Harness(router_b) as hb:
        a1, a2 = await ha.connect(), await ha.connect()
        b1 = await hb.connect()
        await join(router_a, a1, "room:1")
        await join(router_a, a2, "room:1")
        await join(router_b, b1, "room:1")
        a1.send(Say, {"topic": "room:1", "text": "hi", "excludeSelf": True})
        await ha.flush()
        [result] = router_a.extensions_results
        assert (result.ok, result.capability, result.matched) == (True, "unknown", None)
        # The broker delivers on a later loop turn, on both instances.
        assert a2.frames == [] and b1.frames == []
        await asyncio.wait_for(asyncio.gather(delivered_a.wait(), delivered_b.wait()), 5)
        await ha.flush()
        await hb.flush()
        assert a1.frames == []
        assert a2.payloads(Chat) == [{"text": "hi"}]
        assert b1.payloads(Chat) == [{"text": "hi"}]
        assert '"excludeClientId":"' + a1.client_id + '"' in broker.wire[0]
    await get_pubsub(router_a).close()
    await get_pubsub(router_b).close()


async def test_distributed_start_failure_is_an_adapter_error() -> None:
    class Broken(RecordingAdapter):
        async def start(self, deliver: Any) -> None:
            raise ConnectionError("no broker")

        async def close(self) -> None:
            pass

    router = make_router(Broken())
    result = await router.publish("t", Chat, {"text": "x"})
    assert (result.ok, result.error, result.retryable) == (False, "ADAPTER_ERROR", True)


def test_envelope_round_trip() -> None:
    env = PublishEnvelope("room:1", "CHAT", {"timestamp": 1}, {"text": "é"}, True, "c1", "pk")
    assert env.frame == '{"type":"CHAT","meta":{"timestamp":1},"payload":{"text":"é"}}'
    assert env.to_dict() == {
        "topic": "room:1",
        "type": "CHAT",
        "meta": {"timestamp": 1, "excludeClientId": "c1"},
        "payload": {"text": "é"},
        "partitionKey": "pk",
    }
    back = PublishEnvelope.from_json(env.to_json())
    assert back == env and back.frame == env.frame
    bare = PublishEnvelope.from_json('{"topic":"t","type":"PING"}')
    assert (bare.has_payload, bare.frame) == (False, '{"type":"PING","meta":{}}')
    for bad in ("[]", '{"type":"X"}', '{"topic":"t"}', '{"topic":"t","type":"X","meta":[]}'):
        with pytest.raises(ValueError):
            PublishEnvelope.from_json(bad)


def test_schema_without_validator_works() -> None:
    note = define_message("NOTE")
    assert PublishEnvelope("t", note.type, {}, None, False).frame == '{"type":"NOTE","meta":{}}'
