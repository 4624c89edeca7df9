"""redis_pubsub beyond the conformance suite: broker subscriptions, failures,
restart with reconnect and re-subscribe, health, and routers on two instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from wskit.core import any_object, create_router, define_message
from wskit.core.testing import Harness
from wskit.pubsub import BackendUnavailable, PublishEnvelope, get_pubsub, with_pubsub
from wskit.pubsub.testing import DeliverySink
from wskit.redis import RedisPubSub, redis_pubsub
from wskit.redis.testing import RedisServer

Note = define_message("NOTE", any_object())


def env(topic: str, message_type: str = "NOTE", n: int = 0) -> PublishEnvelope:
    return PublishEnvelope(topic, message_type, {}, {"n": n})


@pytest.fixture
async def adapters(
    redis_client: redis.Redis,
) -> AsyncIterator[Callable[..., RedisPubSub]]:
    made: list[RedisPubSub] = []

    def make(**kw: Any) -> RedisPubSub:
        kw.setdefault("channel_prefix", "t:")
        kw.setdefault("reconnect_initial_ms", 10)
        kw.setdefault("reconnect_max_ms", 100)
        adapter = redis_pubsub(redis_client, **kw)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


async def channels(client: redis.Redis) -> set[str]:
    return {c.decode() if isinstance(c, bytes) else c for c in await client.pubsub_channels()}


async def test_subscribes_at_redis_only_to_topics_with_local_subscribers(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a = adapters()
    await a.start(DeliverySink())
    assert await channels(redis_client) == set()
    await a.subscribe("c1", "room:1")
    await a.subscribe("c2", "room:1")
    await a.subscribe("c2", "room:2")
    assert await channels(redis_client) == {"t:room:1", "t:room:2"}
    assert await redis_client.pubsub_numpat() == 0  # no PSUBSCRIBE firehose
    await a.unsubscribe("c1", "room:1")
    assert await channels(redis_client) == {"t:room:1", "t:room:2"}
    await a.unsubscribe("c2", "room:1")
    await a.unsubscribe("c2", "room:2")
    # UNSUBSCRIBE is not awaited for confirmation: a publish round trip orders it.
    await redis_client.ping()
    await a.subscribe("c3", "room:3")
    assert await channels(redis_client) == {"t:room:3"}
    assert a.topics() == ["room:3"]


async def test_subscribed_before_start_are_subscribed_by_start(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a = adapters()
    await a.subscribe("c1", "early")
    assert await channels(redis_client) == set()
    sink = DeliverySink()
    await a.start(sink)
    assert await channels(redis_client) == {"t:early"}
    assert (await a.publish(env("early"))).ok
    await sink.wait_for(lambda: len(sink.envelopes) == 1, 5)


async def test_the_whole_envelope_crosses_redis_as_json(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a = adapters()
    await a.start(DeliverySink())
    raw = redis_client.pubsub()
    await raw.subscribe("t:wire")
    first = await raw.get_message(timeout=5)
    assert first is not None and first["type"] == "subscribe"
    envelope = PublishEnvelope("wire", "NOTE", {"k": 1}, {"n": 1}, True, "c-9", "pk")
    assert (await a.publish(envelope)).ok
    msg = await raw.get_message(timeout=5)
    assert msg is not None
    assert PublishEnvelope.from_json(msg["data"]) == envelope
    assert msg["data"].decode() == envelope.to_json()
    await raw.aclose()  # type: ignore[no-untyped-call]


async def test_outage_fails_publishes_then_reconnects_and_resubscribes(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    a, b = adapters(), adapters()
    sink_a, sink_b = DeliverySink(), DeliverySink()
    await a.start(sink_a)
    await b.start(sink_b)
    await b.subscribe("b1", "live")
    assert (await a.publish(env("live", n=1))).ok
    await sink_b.wait_for(lambda: len(sink_b.envelopes) == 1, 5)
    assert a.health().connected and b.health().state == "connected"

    await redis_server.kill()
    during = [await a.publish(env("live", n=n)) for n in range(2, 7)]
    assert all(
        (r.ok, r.error, r.retryable, r.adapter) == (False, "ADAPTER_ERROR", True, "redis")
        for r in during
    )
    with pytest.raises(BackendUnavailable):
        await b.subscribe("b2", "new-topic-while-down")
    assert b.subscribers("new-topic-while-down") == frozenset()

    await redis_server.start()
    await asyncio.gather(a.wait_publish_ready(10), b.wait_publish_ready(10))
    health = b.health()
    assert health.connected and health.state == "connected" and health.publish_ready
    assert health.reconnects == 1 and health.consecutive_failures == 0
    assert health.last_error is not None
    assert health.last_outage_ms is not None and health.last_outage_ms > 0
    assert await channels(redis_client) == {"t:live"}  # re-subscribed
    assert (await a.publish(env("live", n=7))).ok
    await sink_b.wait_for(lambda: len(sink_b.envelopes) == 2, 5)
    assert [e.payload["n"] for e in sink_b.envelopes] == [
        1,
        7,
    ]  # outage publishes: failed, not lost
    assert a.health().publish_failures == 5
    assert a.health().published == 2


async def test_start_fails_when_redis_is_down(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    a = adapters()
    await redis_server.kill()
    with pytest.raises(BackendUnavailable):
        await a.start(DeliverySink())
    assert a.health().state == "idle"
    await redis_server.start()
    await a.start(DeliverySink())
    assert a.health().connected


async def test_backpressure_and_closed(adapters: Callable[..., RedisPubSub]) -> None:
    a = adapters(max_pending_publishes=2)
    await a.start(DeliverySink())
    results = await asyncio.gather(*(a.publish(env("bp", n=n)) for n in range(5)))
    assert [r.ok for r in results] == [True, True, False, False, False]
    assert {r.error for r in results if not r.ok} == {"BACKPRESSURE"}
    assert all(r.retryable for r in results if not r.ok)
    await a.close()
    closed = await a.publish(env("bp"))
    assert (closed.ok, closed.error, closed.retryable) == (False, "ADAPTER_ERROR", True)
    assert a.health().state == "closed"
    await a.close()  # idempotent


async def test_foreign_messages_on_a_channel_are_dropped(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a = adapters()
    sink = DeliverySink()
    await a.start(sink)
    await a.subscribe("c1", "x")
    await redis_client.publish("t:x", b"not json")
    await redis_client.publish("t:x", PublishEnvelope("other", "NOTE", {}, 1).to_json())
    assert (await a.publish(env("x", "MARKER"))).ok
    await sink.wait_for(lambda: bool(sink.envelopes), 5)
    assert sink.types() == ["MARKER"]
    assert a.health().decode_errors == 2


class Deliveries:
    """Counts the plugin's local deliveries of one router; awaitable, no sleeping."""

    def __init__(self, router: Any) -> None:
        self.count = 0
        self.changed = asyncio.Event()
        pubsub = get_pubsub(router)
        inner = pubsub.deliver

        def deliver(envelope: PublishEnvelope) -> int:
            n = inner(envelope)
            self.count += 1
            self.changed.set()
            return n

        pubsub.deliver = deliver  # type: ignore[method-assign]

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        async def loop() -> None:
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


async def test_two_routers_exclude_self_across_instances(redis_client: redis.Redis) -> None:
    adapters = [redis_pubsub(redis_client, channel_prefix="x:") for _ in range(2)]
    routers = [create_router().plugin(with_pubsub(a)) for a in adapters]
    deliveries = [Deliveries(r) for r in routers]
    async with Harness(routers[0]) as h1, Harness(routers[1]) as h2:
        alice = await h1.connect()
        carol = await h1.connect()
        bob = await h2.connect()
        for router, c in ((routers[0], alice), (routers[0], carol), (routers[1], bob)):
            await get_pubsub(router).topics(c.connection).subscribe("chat")
        result = await get_pubsub(routers[0]).publish(
            "chat", Note, {"text": "hi"}, sender=alice.connection, exclude_self=True
        )
        assert result.ok and result.capability == "unknown"
        assert (await routers[1].publish("chat", Note, {"text": "end"})).ok
        await deliveries[0].wait(2)
        await deliveries[1].wait(2)
        await h1.flush()
        await h2.flush()
        hi = {"type": "NOTE", "meta": {}, "payload": {"text": "hi"}}
        end = {"type": "NOTE", "meta": {}, "payload": {"text": "end"}}
        assert bob.frames == [hi, end]
        assert carol.frames == [hi, end]
        assert alice.frames == [end]
    for a in adapters:
        await a.close()
