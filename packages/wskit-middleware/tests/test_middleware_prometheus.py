"""with_metrics(): Prometheus values read from a private registry, through the
real router (wskit.core.testing.Harness) and raw connections."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from wskit.core import (
    PublishResult,
    RpcError,
    any_object,
    create_router,
    define_message,
    define_rpc,
)
from wskit.core.testing import Harness
from wskit.middleware.prometheus import UNKNOWN_TYPE, with_metrics

Ping = define_message("PING", any_object())
Deny = define_message("DENY", any_object())
Boom = define_message("BOOM")
Ask = define_rpc("ASK", any_object(), "ANSWER", any_object())
Bare = define_message("BARE")


def _router(metrics: Any) -> Any:
    router = create_router().plugin(metrics)

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        pass

    @router.on(Deny)
    async def deny(ctx: Any) -> None:
        ctx.error("PERMISSION_DENIED")

    @router.on(Boom)
    async def boom(ctx: Any) -> None:
        raise RuntimeError("deliberate failure")

    @router.rpc(Ask)
    async def ask(ctx: Any) -> None:
        if ctx.payload.get("missing"):
            raise RpcError("NOT_FOUND")
        ctx.reply({})

    @router.on(Bare)
    async def bare(ctx: Any) -> None:
        pass

    return router


class _Values:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def __call__(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(f"wskit_{name}", labels)
        return 0.0 if value is None else value


async def test_messages_errors_and_latency(
    registry: CollectorRegistry, failing_harness: Any
) -> None:
    value = _Values(registry)
    router = _router(with_metrics(registry=registry))
    async with failing_harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        conn.send(Ping, {})
        conn.send(Deny, {})
        conn.send(Boom)
        await conn.request(Ask, {})
        with pytest.raises(RpcError):
            await conn.request(Ask, {"missing": True})
        conn.send_raw('{"type": "PING", "payload": 5}')  # refused before any middleware
        conn.send_raw('{"type": "NOPE"}')
        conn.send_raw('{"type": "BARE", "payload": {}}')
        conn.send_raw("{")
        conn.send_raw('{"type": "ASK", "payload": {}}')  # no correlationId
        await h.flush()
        assert value("connections") == 1
    messages = {
        (s.labels["type"], s.labels["outcome"]): s.value
        for metric in registry.collect()
        if metric.name == "wskit_messages"
        for s in metric.samples
        if s.name == "wskit_messages_total"
    }
    assert messages == {
        ("PING", "ok"): 2,
        ("DENY", "PERMISSION_DENIED"): 1,
        ("BOOM", "INTERNAL"): 1,
        ("ASK", "ok"): 1,
        ("ASK", "NOT_FOUND"): 1,
        ("PING", "INVALID_ARGUMENT"): 1,
        (UNKNOWN_TYPE, "UNIMPLEMENTED"): 1,
        ("BARE", "INVALID_ARGUMENT"): 1,
        (UNKNOWN_TYPE, "INVALID_ARGUMENT"): 1,
        ("ASK", "INVALID_ARGUMENT"): 1,
    }
    assert value("errors_total", code="PERMISSION_DENIED") == 1
    assert value("errors_total", code="INTERNAL") == 1
    assert value("errors_total", code="NOT_FOUND") == 1
    assert value("errors_total", code="INVALID_ARGUMENT") == 4
    assert value("errors_total", code="UNIMPLEMENTED") == 1
    assert value("message_duration_seconds_count", type="PING") == 2
    assert value("message_duration_seconds_count", type="ASK") == 2
    assert 0 <= value("message_duration_seconds_sum", type="PING") < 1
    assert value("connections_opened_total") == 1
    assert value("connections_closed_total") == 1
    assert value("connections") == 0


async def test_buffered_bytes_and_slow_consumer_closes(registry: CollectorRegistry) -> None:
    value = _Values(registry)
    metrics = with_metrics(registry=registry)
    router = create_router(max_buffered_bytes=1000).plugin(metrics)
    # No pump: nothing is written, as with a peer that stopped reading.
    conn = router.connect()
    await conn.open()
    frame = '{"type":"X","meta":{}}'
    for _ in range(10):
        assert conn.send_frame(frame)
    assert value("outbound_buffered_bytes") == 10 * len(frame) == conn.buffered_bytes
    quiet = router.connect()  # a second connection, nothing buffered
    await quiet.open()
    assert value("connections") == 2
    for _ in range(1000):  # until the 1000-byte buffer overflows (close, 1013)
        if not conn.send_frame(frame):
            break
    assert conn.close_requested == (1013, "Outbound buffer full")
    await conn.handle_close(1006, "")
    await quiet.handle_close(1000, "")
    assert value("slow_consumer_closes_total") == 1
    assert value("errors_total", code="RESOURCE_EXHAUSTED") == 1
    assert value("outbound_buffered_bytes") == 0
    assert value("connections_closed_total") == 2
    total = sum(
        s.value for m in registry.collect() if m.name == "wskit_messages" for s in m.samples
    )
    assert total == 0  # the overflow is about sending, not an inbound message


async def test_publishes_and_deliveries(registry: CollectorRegistry, scripted_pubsub: Any) -> None:
    value = _Values(registry)
    router = _router(with_metrics(registry=registry))
    router.set_pubsub(
        scripted_pubsub(
            router,
            PublishResult.success("exact", 3),
            PublishResult.success("exact", 0),
            PublishResult.success("unknown"),
            PublishResult.failure("ACL_PUBLISH"),
        )
    )
    for _ in range(4):
        await router.publish("room:1", Ping, {})
    assert value("publishes_total", type="PING", outcome="ok") == 3
    assert value("publishes_total", type="PING", outcome="ACL_PUBLISH") == 1
    assert value("deliveries_total") == 3


async def test_one_instance_for_several_routers(registry: CollectorRegistry) -> None:
    value = _Values(registry)
    metrics = with_metrics(registry=registry, namespace="wskit")
    first, second = _router(metrics), _router(metrics)
    async with Harness(first) as h1, Harness(second) as h2:
        a = await h1.connect()
        b = await h2.connect()
        a.send(Ping, {})
        b.send(Ping, {})
        await h1.flush()
        await h2.flush()
        assert value("connections") == 2
        assert value("messages_total", type="PING", outcome="ok") == 2
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        with_metrics(registry=registry)
    with_metrics(registry=registry, namespace="chat", buckets=[0.1, 1])
    assert value("connections") == 0
    assert registry.get_sample_value("chat_connections") == 0
    with pytest.raises(ValueError, match="buckets"):
        with_metrics(registry=None, buckets=[0, 1])
