"""Test helpers for pub/sub: an adapter conformance suite and a recording adapter.

Requires pytest (and pytest-asyncio in ``asyncio_mode = "auto"``, or mark the
subclass yourself). Run the suite against any adapter by subclassing
:class:`AdapterConformance` (local adapters) or
:class:`DistributedAdapterConformance` (adapters with ``start``, backed by a
broker) in a test module (the class name must start with ``Test``) and
overriding the ``make_adapter`` fixture with a factory: every call returns a
*new* adapter instance on the *same* backend (for a broker, two calls stand for
two server instances)::

    import pytest
    from wskit.pubsub.testing import DistributedAdapterConformance
    from wskit.redis import redis_pubsub

    class TestRedisPubSubConformance(DistributedAdapterConformance):
        @pytest.fixture
        def make_adapter(self, redis_client):  # a redis.asyncio.Redis
            return lambda: redis_pubsub(redis_client, channel_prefix="conf:")

The suite closes every adapter it created. Distributed adapters' deliveries
are awaited (up to ``delivery_timeout`` seconds, never by sleeping) and
"exactly once" is proven by publishing a marker message afterwards on the same
topic and channel order. Local adapters must report exact counts.

To check how a distributed adapter behaves while its broker is down, also
override the ``backend_outage`` fixture with a :class:`BackendOutage` that
stops and restarts the shared backend (without it, that test is skipped)::

        @pytest.fixture
        def backend_outage(self, redis_server):  # a wskit.redis.testing.RedisServer
            return BackendOutage(stop=redis_server.kill, start=redis_server.start)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from wskit.core.pubsub import PublishResult
from wskit.core.schema import MessageSchema, define_message
from wskit.core.testing import Harness
from wskit.pubsub._provider import get_pubsub
from wskit.pubsub.adapter import PublishEnvelope, PubSubAdapter
from wskit.pubsub.errors import BackendUnavailable
from wskit.pubsub.memory import MemoryPubSub

__all__ = [
    "AdapterConformance",
    "AdapterFactory",
    "BackendOutage",
    "DeliverySink",
    "DistributedAdapterConformance",
    "InProcessBroker",
    "RecordingAdapter",
]

AdapterFactory = Callable[[], "PubSubAdapter | Awaitable[PubSubAdapter]"]


@dataclass(frozen=True, slots=True)
class BackendOutage:
    """Takes the backend shared by a conformance test's adapters down
    (``stop``: every instance loses its connection) and brings it back on the
    same address (``start``, returning once the backend answers)."""

    stop: Callable[[], Awaitable[None]]
    start: Callable[[], Awaitable[None]]


class RecordingAdapter:
    """Wraps an adapter (a :class:`MemoryPubSub` by default), records every call
    as ``(method, *args)`` in ``calls``, and fails on demand.

    ``fail_subscribe`` / ``fail_unsubscribe``: topics whose call raises
    ``fail_with``; ``fail_publish``: publish raises ``fail_with``.
    """

    def __init__(self, inner: PubSubAdapter | None = None) -> None:
        self.inner: PubSubAdapter = inner if inner is not None else MemoryPubSub()
        self.calls: list[tuple[Any, ...]] = []
        self.fail_subscribe: set[str] = set()
        self.fail_unsubscribe: set[str] = set()
        self.fail_publish = False
        self.fail_with: Callable[[], Exception] = lambda: ConnectionError("backend down")
        self.name = "recording"

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        self.calls.append(("publish", envelope.topic))
        if self.fail_publish:
            raise self.fail_with()
        return await self.inner.publish(envelope)

    async def subscribe(self, client_id: str, topic: str) -> None:
        self.calls.append(("subscribe", client_id, topic))
        if topic in self.fail_subscribe:
            raise self.fail_with()
        await self.inner.subscribe(client_id, topic)

    async def unsubscribe(self, client_id: str, topic: str) -> None:
        self.calls.append(("unsubscribe", client_id, topic))
        if topic in self.fail_unsubscribe:
            raise self.fail_with()
        await self.inner.unsubscribe(client_id, topic)

    def subscribers(self, topic: str) -> Collection[str]:
        return self.inner.subscribers(topic)

    def ops(self) -> list[tuple[Any, ...]]:
        """Recorded subscribe/unsubscribe calls as ``(method, topic)``."""
        return [(c[0], c[2]) for c in self.calls if c[0] != "publish"]


class InProcessBroker:
    """A fake message broker in one process, for testing distributed behaviour.

    ``broker.adapter()`` returns a new distributed adapter (one per simulated
    server instance). Like a real broker it is asynchronous (deliveries run on
    a later loop iteration), carries envelopes as JSON, and forwards a topic
    only to instances with local subscribers to it. ``await broker.stop()``
    simulates an outage (publishes fail with ``ADAPTER_ERROR``, new
    subscriptions raise ``BackendUnavailable``) until ``await broker.start()``.
    """

    def __init__(self) -> None:
        self.instances: list[_BrokerAdapter] = []
        #: JSON messages the broker carried, in order.
        self.wire: list[str] = []
        self.down = False

    async def stop(self) -> None:
        """Simulate an outage."""
        self.down = True

    async def start(self) -> None:
        """End the outage (subscriptions held before it are still there)."""
        self.down = False

    def adapter(self) -> _BrokerAdapter:
        adapter = _BrokerAdapter(self)
        self.instances.append(adapter)
        return adapter

    def _route(self, data: str, topic: str) -> int:
        self.wire.append(data)
        loop = asyncio.get_running_loop()
        receivers = 0
        for instance in self.instances:
            deliver = instance._deliver
            if deliver is not None and topic in instance._channels:
                receivers += 1
                loop.call_soon(_deliver_json, deliver, data)
        return receivers


def _deliver_json(deliver: Callable[[PublishEnvelope], int], data: str) -> None:
    deliver(PublishEnvelope.from_json(data))


class _BrokerAdapter:
    name = "in-process-broker"

    def __init__(self, broker: InProcessBroker) -> None:
        self._broker = broker
        self._local = MemoryPubSub()
        self._channels: set[str] = set()
        self._deliver: Callable[[PublishEnvelope], int] | None = None

    async def start(self, deliver: Callable[[PublishEnvelope], int]) -> None:
        if self._deliver is not None:
            raise RuntimeError("already started")
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        if self._broker.down:
            return PublishResult.failure(
                "ADAPTER_ERROR", retryable=True, adapter=self.name, details={"cause": "down"}
            )
        receivers = self._broker._route(envelope.to_json(), envelope.topic)
        del receivers  # instances, not subscribers: the count is unknown
        return PublishResult.success("unknown")

    async def subscribe(self, client_id: str, topic: str) -> None:
        if self._broker.down and topic not in self._channels:
            raise BackendUnavailable("in-process broker down", {"topic": topic})
        await self._local.subscribe(client_id, topic)
        self._channels.add(topic)

    async def unsubscribe(self, client_id: str, topic: str) -> None:
        await self._local.unsubscribe(client_id, topic)
        if not self._local.has_topic(topic):
            self._channels.discard(topic)

    def subscribers(self, topic: str) -> Collection[str]:
        return self._local.subscribers(topic)


class DeliverySink:
    """A ``deliver`` callback for adapter tests: records envelopes, lets a test
    await them without sleeping."""

    def __init__(self, matched: int = 1) -> None:
        self.envelopes: list[PublishEnvelope] = []
        self._matched = matched
        self._changed = asyncio.Event()

    def __call__(self, envelope: PublishEnvelope) -> int:
        self.envelopes.append(envelope)
        self._changed.set()
        return self._matched

    def types(self, topic: str | None = None) -> list[str]:
        return [e.type for e in self.envelopes if topic is None or e.topic == topic]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds (re-checked on each delivery)."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)


def _env(
    topic: str, message_type: str, text: str = "x", exclude: str | None = None
) -> PublishEnvelope:
    return PublishEnvelope(topic, message_type, {"k": 1}, {"text": text}, True, exclude, "pk-1")


def _distributed(adapter: PubSubAdapter) -> bool:
    return callable(getattr(adapter, "start", None))


async def _start(adapter: PubSubAdapter, sink: DeliverySink) -> None:
    await adapter.start(sink)  # type: ignore[attr-defined]


class AdapterConformance:
    """The adapter conformance suite; subclass it and override ``make_adapter``.

    Attributes a subclass may override: ``delivery_timeout`` (seconds).
    """

    delivery_timeout: ClassVar[float] = 5.0

    @pytest.fixture
    def make_adapter(self) -> AdapterFactory:
        """Override: return a factory of new adapters on one shared backend."""
        raise NotImplementedError("override the make_adapter fixture")

    @pytest.fixture
    async def new_adapter(
        self, make_adapter: AdapterFactory
    ) -> AsyncIterator[Callable[[], Awaitable[PubSubAdapter]]]:
        made: list[PubSubAdapter] = []

        async def new() -> PubSubAdapter:
            adapter = make_adapter()
            if inspect.isawaitable(adapter):
                adapter = await adapter
            made.append(adapter)
            return adapter

        yield new
        for adapter in made:
            close = getattr(adapter, "close", None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result

    async def _distributed_adapter(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> tuple[PubSubAdapter, DeliverySink]:
        adapter = await new_adapter()
        if not _distributed(adapter):
            raise AssertionError(
                "DistributedAdapterConformance needs an adapter with start(); "
                "a local adapter runs AdapterConformance"
            )
        sink = DeliverySink()
        await _start(adapter, sink)
        return adapter, sink

    # ------------------------------------------------------- local index rules

    async def test_subscribers_reflect_subscriptions(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter = await new_adapter()
        await adapter.subscribe("c1", "conf:room:1")
        await adapter.subscribe("c2", "conf:room:1")
        await adapter.subscribe("c2", "conf:room:2")
        assert set(adapter.subscribers("conf:room:1")) == {"c1", "c2"}
        assert set(adapter.subscribers("conf:room:2")) == {"c2"}
        assert set(adapter.subscribers("conf:room:3")) == set()

    async def test_subscribe_and_unsubscribe_are_idempotent(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter = await new_adapter()
        await adapter.subscribe("c1", "conf:t")
        await adapter.subscribe("c1", "conf:t")
        assert list(adapter.subscribers("conf:t")) == ["c1"]
        await adapter.unsubscribe("c1", "conf:t")
        await adapter.unsubscribe("c1", "conf:t")
        await adapter.unsubscribe("nobody", "conf:never")
        assert len(adapter.subscribers("conf:t")) == 0

    async def test_unsubscribe_keeps_other_subscribers(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter = await new_adapter()
        await adapter.subscribe("c1", "conf:t")
        await adapter.subscribe("c2", "conf:t")
        await adapter.unsubscribe("c1", "conf:t")
        assert set(adapter.subscribers("conf:t")) == {"c2"}

    # --------------------------------------------------------------- publish

    async def test_publish_returns_a_result(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter = await new_adapter()
        if _distributed(adapter):
            await _start(adapter, DeliverySink())
        await adapter.subscribe("c1", "conf:t")
        await adapter.subscribe("c2", "conf:t")
        result = await adapter.publish(_env("conf:t", "A"))
        assert isinstance(result, PublishResult)
        assert result.ok is True
        assert result.capability in ("exact", "estimate", "unknown")
        if result.capability == "unknown":
            assert result.matched is None
        if not _distributed(adapter):
            assert result.capability == "exact"
            assert result.matched == 2
            excluded = await adapter.publish(_env("conf:t", "A", exclude="c1"))
            assert excluded.matched == 1
            nobody = await adapter.publish(_env("conf:none", "A"))
            assert (nobody.ok, nobody.matched) == (True, 0)

    # --------------------------------------------------------- with a router

    async def test_router_fan_out_end_to_end(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        from wskit.core.router import create_router
        from wskit.pubsub import with_pubsub

        adapter = await new_adapter()
        router = create_router().plugin(with_pubsub(adapter))
        pubsub = get_pubsub(router)
        delivered = asyncio.Event()
        inner_deliver = pubsub.deliver

        def deliver(envelope: PublishEnvelope) -> int:
            n = inner_deliver(envelope)
            delivered.set()
            return n

        pubsub.deliver = deliver  # type: ignore[method-assign]
        note: MessageSchema[None] = define_message("CONF_NOTE")
        async with Harness(router) as h:
            alice = await h.connect()
            bob = await h.connect()
            await pubsub.topics(alice.connection).subscribe("conf:e2e")
            await pubsub.topics(bob.connection).subscribe("conf:e2e")
            result = await pubsub.publish(
                "conf:e2e", note, None, sender=alice.connection, exclude_self=True
            )
            assert result.ok
            await asyncio.wait_for(delivered.wait(), self.delivery_timeout)
            await h.flush()
            assert bob.messages(note) == [{"type": "CONF_NOTE", "meta": {}}]
            assert alice.messages(note) == []
            await bob.close()
            assert list(adapter.subscribers("conf:e2e")) == [alice.client_id]
        await pubsub.close()


class DistributedAdapterConformance(AdapterConformance):
    """The conformance suite plus the rules of distributed adapters (those with
    ``start(deliver)``): every instance, the publisher included, delivers to its
    own subscribers exactly once. Subclass it for broker-backed adapters.

    Attributes a subclass may override: ``recovery_timeout`` (seconds an
    adapter may take to recover once the backend is back).
    """

    recovery_timeout: ClassVar[float] = 10.0

    @pytest.fixture
    def backend_outage(self) -> BackendOutage | None:
        """Override: stop and restart the backend ``make_adapter`` uses (see
        :class:`BackendOutage`); ``None`` skips the outage test."""
        return None

    # ----------------------------------------------------------- distributed

    async def test_own_publish_is_delivered_exactly_once(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter, sink = await self._distributed_adapter(new_adapter)
        await adapter.subscribe("c1", "conf:once")
        first = _env("conf:once", "FIRST", "hello", exclude="c9")
        assert (await adapter.publish(first)).ok
        assert (await adapter.publish(_env("conf:once", "MARKER"))).ok
        await sink.wait_for(lambda: "MARKER" in sink.types(), self.delivery_timeout)
        assert sink.types() == ["FIRST", "MARKER"]
        got = sink.envelopes[0]
        assert got.topic == "conf:once"
        assert got.exclude_client_id == "c9"
        assert dict(got.meta) == {"k": 1}
        assert got.payload == {"text": "hello"}
        assert got.frame == first.frame

    async def test_every_instance_delivers_to_its_own_subscribers(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        a, sink_a = await self._distributed_adapter(new_adapter)
        b, sink_b = await self._distributed_adapter(new_adapter)
        await a.subscribe("a1", "conf:shared")
        await b.subscribe("b1", "conf:shared")
        await b.subscribe("b1", "conf:b-only")
        assert (await a.publish(_env("conf:shared", "HELLO", exclude="a1"))).ok
        assert (await a.publish(_env("conf:a-none", "NOBODY"))).ok
        assert (await a.publish(_env("conf:shared", "MARKER"))).ok
        await sink_a.wait_for(lambda: "MARKER" in sink_a.types(), self.delivery_timeout)
        await sink_b.wait_for(lambda: "MARKER" in sink_b.types(), self.delivery_timeout)
        assert sink_a.types() == ["HELLO", "MARKER"]
        assert sink_b.types() == ["HELLO", "MARKER"]
        assert sink_b.envelopes[0].exclude_client_id == "a1"

    async def test_no_delivery_without_local_subscribers(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        a, sink_a = await self._distributed_adapter(new_adapter)
        b, sink_b = await self._distributed_adapter(new_adapter)
        await b.subscribe("b1", "conf:gone")
        await b.subscribe("b1", "conf:stay")
        await b.unsubscribe("b1", "conf:gone")
        assert (await a.publish(_env("conf:gone", "LOST"))).ok
        assert (await a.publish(_env("conf:stay", "MARKER"))).ok
        await sink_b.wait_for(lambda: "MARKER" in sink_b.types(), self.delivery_timeout)
        assert sink_b.types() == ["MARKER"]
        assert sink_a.types() == []

    # ---------------------------------------------------------------- outage

    async def test_publish_fails_retryably_during_an_outage_and_recovers(
        self,
        new_adapter: Callable[[], Awaitable[PubSubAdapter]],
        backend_outage: BackendOutage | None,
    ) -> None:
        if backend_outage is None:
            pytest.skip("override the backend_outage fixture to check outage behaviour")
        a, sink_a = await self._distributed_adapter(new_adapter)
        b, sink_b = await self._distributed_adapter(new_adapter)
        await a.subscribe("a1", "conf:outage")
        await b.subscribe("b1", "conf:outage")
        assert (await a.publish(_env("conf:outage", "BEFORE"))).ok
        await sink_a.wait_for(lambda: "BEFORE" in sink_a.types(), self.delivery_timeout)
        await sink_b.wait_for(lambda: "BEFORE" in sink_b.types(), self.delivery_timeout)

        await backend_outage.stop()
        for n in range(10):  # reported, never raised, never ok (paced: a 0.2 s outage)
            during = await a.publish(_env("conf:outage", "DURING", str(n)))
            assert (during.ok, during.error, during.retryable) == (False, "ADAPTER_ERROR", True)
            await asyncio.sleep(0.02)

        await backend_outage.start()
        # Retry (paced, bounded) until a publish is accepted. An accepted publish
        # reaches the publishing instance's own subscribers: its subscriptions
        # are restored before it reports ok again.
        accepted = await self._publish_until_ok(a, "AFTER")
        await sink_a.wait_for(
            lambda: any(e.payload == {"text": accepted} for e in sink_a.envelopes),
            self.delivery_timeout,
        )
        # The peer restores its subscriptions by itself (nobody re-subscribes).
        deadline = time.monotonic() + self.recovery_timeout
        while "AFTER" not in sink_b.types():
            assert time.monotonic() < deadline, "the peer never received again"
            await a.publish(_env("conf:outage", "AFTER", "peer"))
            await asyncio.sleep(0.01)
        assert set(a.subscribers("conf:outage")) == {"a1"}
        assert set(b.subscribers("conf:outage")) == {"b1"}

    async def _publish_until_ok(self, adapter: PubSubAdapter, message_type: str) -> str:
        deadline = time.monotonic() + self.recovery_timeout
        for attempt in range(100_000):
            text = f"attempt-{attempt}"
            result = await adapter.publish(_env("conf:outage", message_type, text))
            if result.ok:
                return text
            assert (result.error, result.retryable) == ("ADAPTER_ERROR", True), result
            assert time.monotonic() < deadline, "publishes never succeeded again"
            await asyncio.sleep(0.01)
        raise AssertionError("publishes never succeeded again")
