"""redis_pubsub's topic history on Redis Streams, on a private redis-server:
the key layout, the bounds, a subscriber reconnect filled from the stream with
no gap, Redis restarts with and without persistence, and scripts flushed
behind the adapter's back. Conditions are polled with a deadline, never slept on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from wskit.core.pubsub import StreamPosition
from wskit.pubsub import HistoryPolicy, PublishEnvelope
from wskit.pubsub.testing import DeliverySink
from wskit.redis import RedisPubSub, redis_pubsub
from wskit.redis.testing import RedisServer

POLICY = HistoryPolicy(max_messages=100)
TIMEOUT = 5.0


def env(topic: str, n: int, policy: HistoryPolicy | None = POLICY) -> PublishEnvelope:
    return PublishEnvelope(topic, "NOTE", {}, {"n": n}, history=policy)


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)


def delivered(sink: DeliverySink) -> list[tuple[int, int]]:
    """``(n, offset)`` per delivered envelope (offset 0 for plain topics)."""
    return [
        (e.payload["n"], e.position.offset if e.position is not None else 0) for e in sink.envelopes
    ]


@pytest.fixture
async def adapters(redis_client: redis.Redis) -> AsyncIterator[Callable[..., RedisPubSub]]:
    made: list[RedisPubSub] = []

    def make(**options: Any) -> RedisPubSub:
        adapter = redis_pubsub(redis_client, channel_prefix="h:", **options)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


async def started(make: Callable[..., RedisPubSub]) -> tuple[RedisPubSub, DeliverySink]:
    adapter = make()
    sink = DeliverySink()
    await adapter.start(sink)
    return adapter, sink


async def test_keys_offsets_and_the_wire(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a, sink = await started(adapters)
    await a.subscribe("c1", "feed:1")
    results = [await a.publish(env("feed:1", n)) for n in range(3)]
    epoch = results[0].position.epoch if results[0].position else ""
    assert [r.position for r in results] == [StreamPosition(epoch, o) for o in (1, 2, 3)]
    assert await redis_client.hgetall("h:{feed:1}:position") == {
        b"epoch": epoch.encode(),
        b"top": b"3",
    }
    entries = await redis_client.xrange("h:{feed:1}:history")
    assert [entry_id.split(b"-")[0] for entry_id, _ in entries] == [b"1", b"2", b"3"]
    assert entries[0][1] == {b"d": b'{"topic":"feed:1","type":"NOTE","payload":{"n":0}}'}
    await poll(lambda: len(sink.envelopes) == 3, TIMEOUT, "3 deliveries")
    assert delivered(sink) == [(0, 1), (1, 2), (2, 3)]
    # Plain topics on the same adapter stay plain pub/sub: no keys, no position.
    assert (await a.publish(env("feed:plain", 9, None))).position is None
    assert await redis_client.exists("h:{feed:plain}:history", "h:{feed:plain}:position") == 0


async def test_size_bound_is_exact_and_age_bound_trims_old_entries(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a, _ = await started(adapters)
    small = HistoryPolicy(max_messages=3)
    for n in range(5):
        assert (await a.publish(env("feed:size", n, small))).ok
    assert await redis_client.xlen("h:{feed:size}:history") == 3
    page = await a.read_history("feed:size", None, limit=10, policy=small)
    assert (page.top, page.first) == (5, 3)

    aged = HistoryPolicy(max_messages=None, max_age_ms=60_000)
    assert (await a.publish(env("feed:age", 1, aged))).ok
    # Two entries an hour old, as if written then (offsets 2 and 3).
    old = int(time.time() * 1000) - 3_600_000
    await redis_client.hset("h:{feed:age}:position", "top", 3)
    await redis_client.execute_command("XTRIM", "h:{feed:age}:history", "MAXLEN", 0)
    for offset in (2, 3):
        await redis_client.xadd("h:{feed:age}:history", {"d": "{}"}, id=f"{offset}-{old}")
    result = await a.publish(env("feed:age", 4, aged))
    assert result.position is not None and result.position.offset == 4
    ids = [i.split(b"-")[0] for i, _ in await redis_client.xrange("h:{feed:age}:history")]
    assert ids == [b"4"]
    assert 0 < await redis_client.pttl("h:{feed:age}:history") <= 60_000
    page = await a.read_history("feed:age", None, limit=10, policy=aged)
    assert (page.top, page.first) == (4, 4)


async def test_a_lost_subscriber_connection_is_filled_from_the_stream(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    """B's subscriber connection is killed while C publishes steadily (Redis
    stays up): B re-subscribes and reads what it missed from the stream, so its
    history topic has no gap and no duplicate (a plain topic may lose some)."""
    b, sink = await started(adapters)
    c, _ = await started(adapters)  # the publisher: no subscriptions of its own
    await b.subscribe("b1", "feed:steady")
    await b.subscribe("b1", "plain:steady")
    await b.read_history("feed:steady", None, limit=1, policy=POLICY)
    sent: list[int] = []
    plain_sent: list[int] = []
    for n in range(200):
        if n == 50:
            killed = await redis_client.client_kill_filter(_type="pubsub")
            assert killed == 1  # B's subscriber only
        assert (await c.publish(env("feed:steady", n))).ok
        sent.append(n)
        if (await c.publish(env("plain:steady", n, None))).ok:
            plain_sent.append(n)
        await asyncio.sleep(0.002)  # a steady publisher, not a burst
    assert b.health().reconnects == 1
    await poll(
        lambda: [n for n, off in delivered(sink) if off] == sent,
        TIMEOUT,
        "every history message on B, once, in order",
    )
    history = [(n, off) for n, off in delivered(sink) if off]
    assert history == [(n, n + 1) for n in sent]
    assert b.health().history_fills >= 1
    # The plain topic has no history: what was published while B's subscriber was down
    # is lost (how much depends on how fast B reconnected, often a few messages, possibly
    # none), and what arrives comes once, in order.
    plain = [n for n, off in delivered(sink) if not off]
    assert plain == sorted(set(plain)) and set(plain) <= set(plain_sent)


async def test_redis_restart_without_persistence_starts_a_new_epoch(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    a, _ = await started(adapters)
    b, sink = await started(adapters)
    await b.subscribe("b1", "feed:r")
    before = await b.read_history("feed:r", None, limit=1, policy=POLICY)
    assert (await a.publish(env("feed:r", 1))).ok
    await poll(lambda: len(sink.envelopes) == 1, TIMEOUT, "before")
    await redis_server.kill()
    await redis_server.start()
    await a.wait_publish_ready(TIMEOUT)
    result = await a.publish(env("feed:r", 2))
    assert result.ok and result.position is not None
    assert result.position.epoch != before.epoch and result.position.offset == 1
    await poll(lambda: len(sink.envelopes) == 2, TIMEOUT, "after")
    assert [e.position for e in sink.envelopes] == [
        StreamPosition(before.epoch, 1),
        result.position,
    ]
    page = await b.read_history("feed:r", StreamPosition(before.epoch, 1), limit=5, policy=POLICY)
    assert (page.epoch, list(page.entries)) == (result.position.epoch, [])


async def test_redis_restart_with_persistence_keeps_the_epoch_and_loses_nothing() -> None:
    """With the append-only file (fsync always) the history survives a SIGKILL:
    the same epoch goes on and B fills what was published before it
    re-subscribed."""
    async with RedisServer(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        a = redis_pubsub(client, channel_prefix="h:")
        b = redis_pubsub(client, channel_prefix="h:", resume_grace_ms=0)
        sink = DeliverySink()
        try:
            await a.start(DeliverySink())
            await b.start(sink)
            await b.subscribe("b1", "feed:aof")
            await b.read_history("feed:aof", None, limit=1, policy=POLICY)
            first = await a.publish(env("feed:aof", 1))
            assert first.position is not None
            await poll(lambda: len(sink.envelopes) == 1, TIMEOUT, "before")
            await server.kill()
            await server.start()
            await a.wait_publish_ready(TIMEOUT)
            accepted = []
            for n in range(2, 12):
                result = await a.publish(env("feed:aof", n))
                assert result.ok and result.position is not None
                assert result.position.epoch == first.position.epoch
                accepted.append(result.position.offset)
            await poll(lambda: len(sink.envelopes) == 11, TIMEOUT, "after")
            assert [e.position.offset for e in sink.envelopes if e.position] == list(range(1, 12))
            assert {e.position.epoch for e in sink.envelopes if e.position} == {
                first.position.epoch
            }
        finally:
            await a.close()
            await b.close()
            await client.aclose()


async def test_scripts_flushed_behind_the_adapter_are_loaded_again(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    a, _ = await started(adapters)
    assert (await a.publish(env("feed:flush", 1))).ok
    await redis_client.script_flush()
    result = await a.publish(env("feed:flush", 2))
    assert result.ok and result.position is not None and result.position.offset == 2
    page = await a.read_history(
        "feed:flush", StreamPosition(result.position.epoch, 0), limit=5, policy=POLICY
    )
    assert [e.payload for e in page.entries] == [{"n": 1}, {"n": 2}]


async def test_bad_history_messages_are_dropped_and_counted(
    adapters: Callable[..., RedisPubSub], redis_client: redis.Redis
) -> None:
    b, sink = await started(adapters)
    await b.subscribe("b1", "feed:bad")
    for junk in ("#nope", "#e:1:{not json", '#e:x:{"topic":"feed:bad","type":"N"}'):
        await redis_client.publish("h:feed:bad", junk)
    await redis_client.publish(
        "h:feed:bad", '#e:1:{"topic":"feed:other","type":"NOTE","payload":{"n":0}}'
    )
    good = '#e:1:{"topic":"feed:bad","type":"NOTE","payload":{"n":1}}'
    await redis_client.publish("h:feed:bad", good)
    await poll(lambda: len(sink.envelopes) == 1, TIMEOUT, "the good one")
    assert b.health().decode_errors == 4
    assert sink.envelopes[0].position == StreamPosition("e", 1)


async def test_reads_fail_cleanly_when_closed_or_down(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    from wskit.pubsub import BackendUnavailable

    a, _ = await started(adapters)
    await redis_server.kill()
    with pytest.raises(BackendUnavailable):
        await a.read_history("feed:down", None, limit=1, policy=POLICY)
    await redis_server.start()
    await a.close()
    with pytest.raises(BackendUnavailable):
        await a.read_history("feed:down", None, limit=1, policy=POLICY)


async def test_history_publishes_are_not_held_back_by_the_resume_grace(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    """After a restart, plain publishes wait out the resume grace (pub/sub
    cannot reach peers not subscribed yet); history publishes go out as soon
    as this instance is subscribed again: a late peer fills from the stream."""
    a = adapters(resume_grace_ms=60_000)
    await a.start(DeliverySink())
    b, sink = await started(adapters)
    await b.subscribe("b1", "feed:grace")
    await b.read_history("feed:grace", None, limit=1, policy=POLICY)
    await redis_server.kill()
    await redis_server.start()
    await a.wait_connected(TIMEOUT)
    plain = await a.publish(env("feed:plain", 1, None))
    assert (plain.ok, plain.details) == (False, {"cause": "resume grace"})
    result = await a.publish(env("feed:grace", 2))
    assert result.ok and result.position is not None and result.position.offset == 1
    await poll(lambda: len(sink.envelopes) == 1, TIMEOUT, "B gets it, live or filled")
    assert sink.envelopes[0].position == result.position
