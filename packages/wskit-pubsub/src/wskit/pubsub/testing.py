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

Adapters that keep topic history (a ``read_history`` method, see
:class:`~wskit.pubsub.HistoryPubSubAdapter`) also run the history cases:
contiguous offsets within an epoch, reads after a position, the size bound,
and, through a router, resume with exactly the missed messages, the ``gap``
answer for trimmed history and (distributed) resume on another instance and
across a backend outage. Adapters without it skip them.

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
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from wskit.core.pubsub import TOPIC_POSITION, TOPIC_STATUS, PublishResult, StreamPosition
from wskit.core.schema import MessageSchema, any_object, define_message
from wskit.core.testing import FakeConnection, Harness
from wskit.pubsub._provider import get_pubsub
from wskit.pubsub.adapter import HistoryPage, PublishEnvelope, PubSubAdapter
from wskit.pubsub.errors import BackendUnavailable
from wskit.pubsub.history import HistoryPolicy
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

    With ``history=True`` the broker keeps topic history (its adapters have
    ``read_history``); ``lose_history=True`` makes an outage lose it, as a
    Redis restart without persistence does (new epochs afterwards).
    """

    def __init__(self, *, history: bool = False, lose_history: bool = False) -> None:
        self.instances: list[_BrokerAdapter] = []
        #: JSON messages the broker carried, in order.
        self.wire: list[str] = []
        self.down = False
        self.history: MemoryPubSub | None = MemoryPubSub() if history else None
        self.lose_history = lose_history

    async def stop(self) -> None:
        """Simulate an outage."""
        self.down = True
        if self.history is not None and self.lose_history:
            self.history.forget_history()

    async def start(self) -> None:
        """End the outage (subscriptions held before it are still there)."""
        self.down = False

    def adapter(self) -> _BrokerAdapter:
        adapter = _BrokerAdapter(self)
        self.instances.append(adapter)
        return adapter

    def _route(self, data: str, topic: str, position: StreamPosition | None = None) -> int:
        self.wire.append(data)
        loop = asyncio.get_running_loop()
        receivers = 0
        for instance in self.instances:
            deliver = instance._deliver
            if deliver is not None and topic in instance._channels:
                receivers += 1
                loop.call_soon(_deliver_json, deliver, data, position)
        return receivers


def _deliver_json(
    deliver: Callable[[PublishEnvelope], int], data: str, position: StreamPosition | None
) -> None:
    deliver(PublishEnvelope.from_json(data, position=position))


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
        broker = self._broker
        if broker.down:
            return PublishResult.failure(
                "ADAPTER_ERROR", retryable=True, adapter=self.name, details={"cause": "down"}
            )
        data = envelope.to_json()
        position = None
        if envelope.history is not None and broker.history is not None:
            position = (await broker.history.publish(envelope)).position
        receivers = broker._route(data, envelope.topic, position)
        del receivers  # instances, not subscribers: the count is unknown
        return PublishResult.success("unknown", position=position)

    def __getattr__(self, name: str) -> Any:
        # read_history exists only when the broker keeps history.
        if name == "read_history" and self._broker.history is not None:
            return self._read_history
        raise AttributeError(name)

    async def _read_history(
        self, topic: str, since: StreamPosition | None, *, limit: int, policy: HistoryPolicy
    ) -> HistoryPage:
        history = self._broker.history
        if self._broker.down or history is None:
            raise BackendUnavailable("in-process broker down", {"topic": topic})
        return await history.read_history(topic, since, limit=limit, policy=policy)

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


def _keeps_history(adapter: PubSubAdapter) -> bool:
    return callable(getattr(adapter, "read_history", None))


async def _read(
    adapter: PubSubAdapter,
    topic: str,
    since: StreamPosition | None,
    policy: HistoryPolicy,
    limit: int = 100,
) -> HistoryPage:
    page: HistoryPage = await adapter.read_history(  # type: ignore[attr-defined]
        topic, since, limit=limit, policy=policy
    )
    return page


def _hist(topic: str, n: int, policy: HistoryPolicy) -> PublishEnvelope:
    return PublishEnvelope(topic, "CONF_TICK", {}, {"n": n}, history=policy)


_CONF_TICK: MessageSchema[Any] = define_message("CONF_TICK", any_object())
_CONF_POLICY = HistoryPolicy(max_messages=100)


def _ticks(conn: FakeConnection[Any]) -> list[tuple[int, int]]:
    """``(n, offset)`` of every CONF_TICK a connection got."""
    return [
        (f["payload"]["n"], f["meta"][TOPIC_POSITION]["offset"]) for f in conn.messages("CONF_TICK")
    ]


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` (a condition on captured frames) until it holds."""
    deadline = time.monotonic() + timeout
    for _ in range(1_000_000):
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)
    raise AssertionError(f"never: {what}")


def _history_router(adapter: PubSubAdapter, policy: HistoryPolicy = _CONF_POLICY) -> Any:
    from wskit.core.router import create_router
    from wskit.pubsub import with_pubsub

    return create_router().plugin(with_pubsub(adapter, history={"conf:h:*": policy}))


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

    # --------------------------------------------------------------- history

    async def _history_adapter(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> tuple[PubSubAdapter, DeliverySink | None]:
        adapter = await new_adapter()
        if not _keeps_history(adapter):
            pytest.skip("the adapter keeps no topic history (no read_history)")
        sink = None
        if _distributed(adapter):
            sink = DeliverySink()
            await _start(adapter, sink)
        return adapter, sink

    async def test_history_offsets_are_contiguous_within_an_epoch(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter, sink = await self._history_adapter(new_adapter)
        policy = _CONF_POLICY
        start = await _read(adapter, "conf:h:seq", None, policy)
        assert (start.top, start.first, list(start.entries)) == (0, 1, [])
        await adapter.subscribe("c1", "conf:h:seq")
        results = [await adapter.publish(_hist("conf:h:seq", n, policy)) for n in range(3)]
        assert all(r.ok for r in results)
        assert [r.position for r in results] == [
            StreamPosition(start.epoch, offset) for offset in (1, 2, 3)
        ]
        if sink is not None:  # every instance gets the positioned envelopes, in order
            await sink.wait_for(lambda: len(sink.envelopes) >= 3, self.delivery_timeout)
            assert [e.position for e in sink.envelopes] == [r.position for r in results]
            assert [e.payload for e in sink.envelopes] == [{"n": n} for n in range(3)]

    async def test_history_read_returns_what_follows_a_position(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter, _ = await self._history_adapter(new_adapter)
        policy = _CONF_POLICY
        for n in range(1, 6):
            assert (await adapter.publish(_hist("conf:h:read", n, policy))).ok
        top = await _read(adapter, "conf:h:read", None, policy)
        epoch = top.epoch
        assert (top.top, top.first, list(top.entries)) == (5, 1, [])
        page = await _read(adapter, "conf:h:read", StreamPosition(epoch, 2), policy)
        assert [e.position for e in page.entries] == [StreamPosition(epoch, o) for o in (3, 4, 5)]
        assert [e.payload for e in page.entries] == [{"n": 3}, {"n": 4}, {"n": 5}]
        assert all(e.topic == "conf:h:read" and e.type == "CONF_TICK" for e in page.entries)
        meta = json.loads(page.entries[0].frame)["meta"]
        assert meta == {TOPIC_POSITION: {"topic": "conf:h:read", "epoch": epoch, "offset": 3}}
        limited = await _read(adapter, "conf:h:read", StreamPosition(epoch, 0), policy, limit=2)
        assert [e.payload["n"] for e in limited.entries] == [1, 2]
        other = await _read(adapter, "conf:h:read", StreamPosition(epoch + "x", 2), policy)
        assert (other.epoch, list(other.entries)) == (epoch, [])
        at_top = await _read(adapter, "conf:h:read", StreamPosition(epoch, 5), policy)
        assert list(at_top.entries) == []
        # Publishes keep the size bound; a read does not trim by size.
        small = HistoryPolicy(max_messages=1)
        again = await _read(adapter, "conf:h:read", StreamPosition(epoch, 0), small)
        assert [e.payload["n"] for e in again.entries] == [1, 2, 3, 4, 5]

    async def test_history_keeps_at_most_max_messages(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter, _ = await self._history_adapter(new_adapter)
        policy = HistoryPolicy(max_messages=3)
        for n in range(1, 6):
            assert (await adapter.publish(_hist("conf:h:size", n, policy))).ok
        page = await _read(adapter, "conf:h:size", None, policy)
        page = await _read(adapter, "conf:h:size", StreamPosition(page.epoch, 0), policy)
        assert (page.top, page.first) == (5, 3)
        assert [e.payload["n"] for e in page.entries] == [3, 4, 5]

    async def test_history_resume_through_a_router(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        """A client gone for N publishes resumes with exactly those N, in order,
        then goes on live, each message once."""
        adapter, _ = await self._history_adapter(new_adapter)
        await _close(adapter)
        adapter = await new_adapter()
        router = _history_router(adapter)
        pubsub = get_pubsub(router)
        timeout = self.delivery_timeout
        try:
            async with Harness(router) as h:
                a = await h.connect()
                status = await pubsub.topics(a.connection).subscribe("conf:h:resume")
                assert (status.status, status.position) == ("subscribed", status.position)
                assert status.position is not None and status.position.offset == 0
                epoch = status.position.epoch
                for n in range(1, 4):
                    assert (await router.publish("conf:h:resume", _CONF_TICK, {"n": n})).ok
                await _until(lambda: len(_ticks(a)) == 3, timeout, "3 live messages")
                assert _ticks(a) == [(1, 1), (2, 2), (3, 3)]
                await a.close()
                for n in range(4, 9):  # missed: 5 publishes
                    assert (await router.publish("conf:h:resume", _CONF_TICK, {"n": n})).ok
                b = await h.connect()
                resumed = await pubsub.topics(b.connection).subscribe(
                    "conf:h:resume", since={"epoch": epoch, "offset": 3}
                )
                assert (resumed.status, resumed.replayed) == ("recovered", 5)
                assert resumed.position == StreamPosition(epoch, 8)
                assert (await router.publish("conf:h:resume", _CONF_TICK, {"n": 9})).ok
                await _until(lambda: len(_ticks(b)) >= 6, timeout, "replay and live")
                assert b.frames[0] == {
                    "type": TOPIC_STATUS,
                    "meta": {},
                    "payload": {
                        "topic": "conf:h:resume",
                        "status": "recovered",
                        "epoch": epoch,
                        "offset": 3,
                    },
                }
                assert (await router.publish("conf:h:resume", _CONF_TICK, {"n": 10})).ok
                await _until(lambda: len(_ticks(b)) >= 7, timeout, "the marker")
                assert _ticks(b) == [(n, n) for n in range(4, 11)]
        finally:
            await pubsub.close()

    async def test_history_trimmed_answers_gap_through_a_router(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        adapter, _ = await self._history_adapter(new_adapter)
        await _close(adapter)
        adapter = await new_adapter()
        router = _history_router(adapter, HistoryPolicy(max_messages=3))
        pubsub = get_pubsub(router)
        try:
            async with Harness(router) as h:
                for n in range(1, 7):
                    assert (await router.publish("conf:h:trim", _CONF_TICK, {"n": n})).ok
                a = await h.connect()
                status = await pubsub.topics(a.connection).subscribe(
                    "conf:h:trim", since={"epoch": "conf-unknown", "offset": 1}
                )
                assert (status.status, status.reason) == ("gap", "epoch")
                assert status.position is not None
                epoch = status.position.epoch
                b = await h.connect()
                status = await pubsub.topics(b.connection).subscribe(
                    "conf:h:trim", since={"epoch": epoch, "offset": 1}
                )
                assert (status.status, status.reason, status.replayed) == ("gap", "trimmed", 0)
                assert status.position == StreamPosition(epoch, 6)
                assert (await router.publish("conf:h:trim", _CONF_TICK, {"n": 7})).ok
                await _until(lambda: len(_ticks(b)) >= 1, self.delivery_timeout, "live")
                assert _ticks(b) == [(7, 7)]
                assert b.payloads(TOPIC_STATUS) == [
                    {
                        "topic": "conf:h:trim",
                        "status": "gap",
                        "reason": "trimmed",
                        "epoch": epoch,
                        "offset": 6,
                    }
                ]
        finally:
            await pubsub.close()


async def _close(adapter: PubSubAdapter) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result


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

    # --------------------------------------------------------------- history

    async def test_history_resume_on_another_instance(
        self, new_adapter: Callable[[], Awaitable[PubSubAdapter]]
    ) -> None:
        """A client of instance A misses N publishes and resumes on instance B
        with exactly those N, in order, then live ones, once each."""
        probe = await new_adapter()
        if not _keeps_history(probe):
            pytest.skip("the adapter keeps no topic history (no read_history)")
        router_a = _history_router(await new_adapter())
        router_b = _history_router(await new_adapter())
        timeout = self.delivery_timeout
        try:
            async with Harness(router_a) as ha, Harness(router_b) as hb:
                a = await ha.connect()
                status = await get_pubsub(router_a).topics(a.connection).subscribe("conf:h:ab")
                assert status.position is not None
                epoch = status.position.epoch
                for n in range(1, 4):
                    assert (await router_a.publish("conf:h:ab", _CONF_TICK, {"n": n})).ok
                await _until(lambda: len(_ticks(a)) == 3, timeout, "live on A")
                await a.close()
                for n in range(4, 14):  # missed: 10, from both instances
                    router = router_a if n % 2 else router_b
                    assert (await router.publish("conf:h:ab", _CONF_TICK, {"n": n})).ok
                b = await hb.connect()
                resumed = (
                    await get_pubsub(router_b)
                    .topics(b.connection)
                    .subscribe("conf:h:ab", since={"epoch": epoch, "offset": 3})
                )
                assert (resumed.status, resumed.replayed) == ("recovered", 10)
                for n in range(14, 17):
                    assert (await router_a.publish("conf:h:ab", _CONF_TICK, {"n": n})).ok
                await _until(lambda: len(_ticks(b)) >= 13, timeout, "replay and live on B")
                assert _ticks(b) == [(n, n) for n in range(4, 17)]
                assert [s["status"] for s in b.payloads(TOPIC_STATUS)] == ["recovered"]
        finally:
            await get_pubsub(router_a).close()
            await get_pubsub(router_b).close()

    async def test_history_across_an_outage(
        self,
        new_adapter: Callable[[], Awaitable[PubSubAdapter]],
        backend_outage: BackendOutage | None,
    ) -> None:
        """After the backend comes back, every accepted publish reaches the
        other instance's subscriber once, in offset order; if the history did
        not survive, a ``gap`` (new epoch) status comes first."""
        if backend_outage is None:
            pytest.skip("override the backend_outage fixture to check outage behaviour")
        probe = await new_adapter()
        if not _keeps_history(probe):
            pytest.skip("the adapter keeps no topic history (no read_history)")
        adapter_a = await new_adapter()
        router_a = _history_router(adapter_a)
        router_b = _history_router(await new_adapter())
        timeout = self.delivery_timeout
        try:
            async with Harness(router_b) as hb:
                await get_pubsub(router_a).start()
                b = await hb.connect()
                status = await get_pubsub(router_b).topics(b.connection).subscribe("conf:h:out")
                assert status.position is not None
                before, start = status.position.epoch, status.position.offset
                assert (await router_a.publish("conf:h:out", _CONF_TICK, {"n": 1})).ok
                await _until(lambda: len(_ticks(b)) == 1, timeout, "before the outage")

                await backend_outage.stop()
                await backend_outage.start()
                accepted: list[int] = []
                deadline = time.monotonic() + self.recovery_timeout
                for n in range(2, 100_000):
                    if len(accepted) >= 5:
                        break
                    assert time.monotonic() < deadline, "publishes never succeeded again"
                    result = await router_a.publish("conf:h:out", _CONF_TICK, {"n": n})
                    if result.ok:
                        accepted.append(n)
                    await asyncio.sleep(0.01)
                await _until(
                    lambda: set(accepted) <= {n for n, _ in _ticks(b)},
                    self.recovery_timeout,
                    "every accepted publish on the other instance",
                )
                got = [n for n, _ in _ticks(b)]
                assert got == sorted(set(got)), f"duplicates or disorder: {got}"
                # Every change of epoch is announced by a gap status first, and
                # offsets grow by one within an epoch.
                epoch, offset = before, start
                for f in b.frames:
                    if f["type"] == TOPIC_STATUS and f["payload"]["status"] == "gap":
                        assert f["payload"]["reason"] in ("epoch", "trimmed"), f
                        epoch, offset = f["payload"]["epoch"], f["payload"]["offset"]
                    elif f["type"] == "CONF_TICK":
                        position = f["meta"][TOPIC_POSITION]
                        assert position["epoch"] == epoch, f"new epoch without a gap first: {f}"
                        assert position["offset"] == offset + 1, f"offsets skipped: {f}"
                        offset = position["offset"]
        finally:
            await get_pubsub(router_a).close()
            await get_pubsub(router_b).close()
