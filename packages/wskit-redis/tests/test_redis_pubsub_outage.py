"""redis_pubsub across a Redis restart: how fast it re-subscribes, which
publishes it refuses until then, and what it logs.

Every test kills a private redis-server (SIGKILL) and restarts it on the same
port. Nothing sleeps to wait for a state: conditions are polled with a
deadline, events are awaited with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from wskit.core.pubsub import PublishResult
from wskit.pubsub import PublishEnvelope
from wskit.pubsub.testing import DeliverySink
from wskit.redis import RedisPubSub, redis_pubsub
from wskit.redis.testing import RedisServer

#: Delivery across instances must resume within this long after Redis is back.
RESUME_BOUND = 1.0
REFUSED = ("subscriber down", "resume grace")


def env(topic: str, n: int) -> PublishEnvelope:
    return PublishEnvelope(topic, "NOTE", {}, {"n": n})


def refused(result: PublishResult) -> bool:
    return (
        result.ok is False
        and result.error == "ADAPTER_ERROR"
        and result.retryable is True
        and result.adapter == "redis"
        and result.details is not None
        and result.details.get("cause") in REFUSED
    )


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Re-check ``predicate`` every few ms until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)


def numbers(sink: DeliverySink) -> list[int]:
    return [e.payload["n"] for e in sink.envelopes]


@pytest.fixture
async def adapters(redis_client: redis.Redis) -> AsyncIterator[Callable[..., RedisPubSub]]:
    made: list[RedisPubSub] = []

    def make(**kw: Any) -> RedisPubSub:
        kw.setdefault("channel_prefix", "o:")
        adapter = redis_pubsub(redis_client, **kw)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


async def test_restart_resubscribes_without_waiting_out_a_backoff(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    # Library defaults. The outage lasts long enough for a growing backoff to
    # reach seconds; probing stays fast, so Redis coming back is noticed at once.
    a = adapters()
    sink = DeliverySink()
    await a.start(sink)
    await a.subscribe("c1", "room")
    assert (await a.publish(env("room", 1))).ok
    await sink.wait_for(lambda: numbers(sink) == [1], 5)

    for cycle in range(3):
        await redis_server.kill()
        await poll(lambda: a.health().consecutive_failures >= 8, 30, "8 failed probes")
        assert refused(await a.publish(env("room", 100 + cycle)))
        assert not a.health().connected and not a.health().publish_ready

        await redis_server.start()
        back = time.monotonic()
        # Right after Redis is back, before this instance re-subscribed: refused, not sent.
        right_after = await a.publish(env("room", 200 + cycle))
        assert refused(right_after), right_after
        await a.wait_connected(RESUME_BOUND + 1)
        resubscribed = time.monotonic() - back
        assert resubscribed < RESUME_BOUND, f"re-subscribed {resubscribed:.3f}s after restart"
        await a.wait_publish_ready(RESUME_BOUND + 1)
        assert time.monotonic() - back < RESUME_BOUND
        assert (await a.publish(env("room", 300 + cycle))).ok
        await sink.wait_for(lambda c=cycle: 300 + c in numbers(sink), 5)

    # Refused publishes were never sent: only the ok ones arrived.
    assert numbers(sink) == [1, 300, 301, 302]
    health = a.health()
    assert (health.reconnects, health.consecutive_failures) == (3, 0)
    assert health.last_outage_ms is not None and health.last_outage_ms > 0


async def test_an_ok_publish_reaches_the_instances_own_subscribers(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    # No grace: publishes fail exactly until this instance's SUBSCRIBE is
    # confirmed, so every publish reported ok after the restart is delivered
    # here (the old adapter said ok ~1 ms after Redis was back and lost them).
    a = adapters(resume_grace_ms=0)
    sink = DeliverySink()
    await a.start(sink)
    await a.subscribe("c1", "room")
    await redis_server.kill()
    await poll(lambda: a.health().consecutive_failures >= 3, 10, "3 failed probes")
    await redis_server.start()
    results: dict[int, PublishResult] = {}
    n = 0
    deadline = time.monotonic() + 5
    while sum(r.ok for r in results.values()) < 5:  # publish every 2 ms until 5 went out
        assert time.monotonic() < deadline, results
        results[n] = await a.publish(env("room", n))
        n += 1
        await asyncio.sleep(0.002)
    ok = [i for i, r in results.items() if r.ok]
    assert all(refused(r) for r in results.values() if not r.ok)
    assert {r.details["cause"] for r in results.values() if r.details} <= {"subscriber down"}
    await sink.wait_for(lambda: len(sink.envelopes) >= len(ok), 5)
    assert numbers(sink) == ok  # no ok publish lost, no refused one sent


async def test_resume_grace_refuses_publishes_after_resubscribing(
    adapters: Callable[..., RedisPubSub], redis_server: RedisServer
) -> None:
    a = adapters(resume_grace_ms=60_000)  # longer than the test: the grace is observable
    await a.start(DeliverySink())
    await a.subscribe("c1", "room")
    await redis_server.kill()
    await poll(lambda: a.health().state == "reconnecting", 5, "outage noticed")
    await redis_server.start()
    await a.wait_connected(5)
    health = a.health()
    assert (health.connected, health.publish_ready, health.state) == (True, False, "connected")
    result = await a.publish(env("room", 1))
    assert refused(result) and result.details == {"cause": "resume grace"}
    with pytest.raises(asyncio.TimeoutError):
        await a.wait_publish_ready(0.05)

    b = adapters(resume_grace_ms=0)  # a peer without grace resumes as soon as it re-subscribed
    await b.start(DeliverySink())
    await b.subscribe("c2", "room")
    await redis_server.kill()
    await poll(lambda: b.health().state == "reconnecting", 5, "outage noticed")
    await redis_server.start()
    await b.wait_connected(5)
    assert b.health().publish_ready
    assert (await b.publish(env("room", 2))).ok


# ------------------------------------------------------------------ logging


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "wskit.redis" and r.levelno == level and text in r.getMessage()
    ]


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The WARNING records about failed publishes."""
    return [
        r
        for r in records(caplog, logging.WARNING, "")
        if "publish to" in r.getMessage() or "publish(es) to" in r.getMessage()
    ]


async def test_outage_logs_lost_once_and_restored_with_channels_and_duration(
    adapters: Callable[..., RedisPubSub],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wskit.redis")
    a = adapters()
    await a.start(DeliverySink())
    for topic in ("one", "two", "three"):
        await a.subscribe("c1", topic)
    await a.unsubscribe("c1", "three")
    await redis_server.kill()
    await poll(lambda: a.health().consecutive_failures >= 5, 10, "5 failed probes")
    lost = records(caplog, logging.WARNING, "subscriber connection")
    assert len(lost) == 1  # once per outage, not once per failed probe
    port = redis_server.port
    assert f"subscriber connection to 127.0.0.1:{port}/0 lost" in lost[0].getMessage()
    assert records(caplog, logging.INFO, "restored") == []

    await redis_server.start()
    await a.wait_publish_ready(5)
    restored = records(caplog, logging.INFO, "restored")
    assert len(restored) == 1
    message = restored[0].getMessage()
    assert f"subscriber connection to 127.0.0.1:{port}/0 restored after" in message
    assert "re-subscribed 2 channel(s)" in message
    outage_ms = a.health().last_outage_ms
    assert outage_ms is not None
    assert f"after {outage_ms / 1000:.3f} s" in message
    assert len(records(caplog, logging.WARNING, "subscriber connection")) == 1


async def test_failed_publishes_are_logged_at_warning_rate_limited(
    adapters: Callable[..., RedisPubSub],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wskit.redis")
    a = adapters(failure_log_interval=3600)  # one record for the whole outage
    await a.start(DeliverySink())
    await redis_server.kill()
    await poll(lambda: a.health().state == "reconnecting", 5, "outage noticed")
    results = [await a.publish(env("room", n)) for n in range(30)]
    assert all(refused(r) for r in results)
    failed = failure_records(caplog)
    assert [r.getMessage() for r in failed] == [
        f"wskit.redis: publish to 127.0.0.1:{redis_server.port}/0 failed "
        "(ADAPTER_ERROR: subscriber down)"
    ]
    # When publishing resumes, the 29 not logged are reported in one record.
    await redis_server.start()
    await a.wait_publish_ready(5)
    failed = failure_records(caplog)
    assert len(failed) == 2
    assert "29 more publish(es)" in failed[1].getMessage()
    assert "last: ADAPTER_ERROR: subscriber down" in failed[1].getMessage()
    assert a.health().publish_failures == 30


async def test_failure_records_repeat_once_per_interval_with_the_count(
    adapters: Callable[..., RedisPubSub],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wskit.redis")
    interval = 0.3
    a = adapters(failure_log_interval=interval)
    await a.start(DeliverySink())
    await redis_server.kill()
    await poll(lambda: a.health().state == "reconnecting", 5, "outage noticed")
    stamps: list[float] = []
    deadline = time.monotonic() + 10
    # A paced publisher (every 10 ms) until two records came out.
    while len(failure_records(caplog)) < 2:
        assert time.monotonic() < deadline
        assert refused(await a.publish(env("room", len(stamps))))
        stamps.append(time.monotonic())
        await asyncio.sleep(0.01)
    first, second = failure_records(caplog)
    # The throttle runs on the monotonic clock, record.created on the wall
    # clock: allow their skew over 0.3 s (well under a millisecond).
    assert second.created - first.created >= interval - 0.001
    between = len(stamps) - 2  # every failure but the two logged ones
    assert between > 0
    assert f"failed (ADAPTER_ERROR: subscriber down); {between} more failed" in (
        second.getMessage()
    )


async def test_credentials_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-t0ken"
    caplog.set_level(logging.DEBUG, logger="wskit.redis")
    server = RedisServer(password=secret)
    await server.start()
    client = redis.Redis.from_url(f"redis://default:{secret}@127.0.0.1:{server.port}/0")
    adapter = redis_pubsub(client, channel_prefix="s:", failure_log_interval=0)
    try:
        await adapter.start(DeliverySink())
        await adapter.subscribe("c1", "room")
        await server.kill()
        await poll(lambda: adapter.health().consecutive_failures >= 3, 10, "failed probes")
        assert refused(await adapter.publish(env("room", 1)))
        await server.start()
        await adapter.wait_publish_ready(5)
        assert (await adapter.publish(env("room", 2))).ok
        logged = [r for r in caplog.records if r.name == "wskit.redis"]
        assert {r.levelname for r in logged} >= {"DEBUG", "INFO", "WARNING"}
        for record in logged:
            assert secret not in record.getMessage()
            assert record.exc_text is None or secret not in record.exc_text
        assert secret not in caplog.text
        assert secret not in repr(adapter.health())
    finally:
        await adapter.close()
        await client.aclose()
        await server.stop()
