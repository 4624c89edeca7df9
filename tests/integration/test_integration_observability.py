"""A real aiohttp server with logging, tracing and metrics (wskit-middleware), bearer
authentication and a per-route permission check: the log records, the exported
spans (a client's trace continued through an RPC, a publish and the subscriber's
next message) and the scraped metric values."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import LoopbackServer, loopback_server
from wskit.middleware import bearer_auth, has_role, require, with_logging
from wskit.middleware.prometheus import add_metrics_route, with_metrics
from wskit.middleware.tracing import with_tracing
from wskit.pubsub import with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic

TIMEOUT = 5.0  # safety net only: every wait is for a frame or a condition

Join = rpc("JOIN", {"room": str}, "JOINED", {"room": str})
Say = rpc("SAY", {"room": str, "text": str}, "SAID", {"delivered": int})
Chat = message("CHAT", room=str, text=str)
Ack = message("ACK", room=str)
Purge = message("PURGE", room=str)

TOKENS = {
    "tok-ann": {"user_id": "ann", "roles": ["member"]},
    "tok-bob": {"user_id": "bob", "roles": ["admin"]},
}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append({**record.wskit, "level": record.levelname})  # type: ignore[attr-defined]


@dataclass
class Observed:
    server: LoopbackServer
    records: Records
    exporter: InMemorySpanExporter


@pytest.fixture
async def observed() -> AsyncIterator[Observed]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    logger = logging.getLogger("test.integration.observability")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    records = Records()
    logger.addHandler(records)

    router = (
        create_router()
        .plugin(with_pydantic())
        .plugin(with_pubsub())
        .plugin(with_tracing(tracer_provider=provider))
        .plugin(with_metrics(registry=registry))
        .plugin(with_logging(logger=logger))
    )

    @router.rpc(Join)
    async def join(ctx: Any) -> None:
        await ctx.topics.subscribe(f"room:{ctx.payload.room}")
        ctx.reply({"room": ctx.payload.room})

    @router.rpc(Say)
    async def say(ctx: Any) -> None:
        result = await ctx.publish(
            f"room:{ctx.payload.room}", Chat, {"room": ctx.payload.room, "text": ctx.payload.text}
        )
        ctx.reply({"delivered": result.matched})

    @router.on(Ack)
    async def ack(ctx: Any) -> None:
        pass

    @router.on(Purge, middleware=[require(has_role("admin"))])
    async def purge(ctx: Any) -> None:
        pass

    def verify(token: str) -> dict[str, Any] | None:
        return TOKENS.get(token)

    app = create_app(router, path="/ws", authenticate=bearer_auth(verify))
    add_metrics_route(app, registry=registry)
    try:
        async with loopback_server(app, path="/ws") as server:
            yield Observed(server, records, exporter)
    finally:
        logger.removeHandler(records)


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def _eventually(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


async def test_logs_spans_and_metrics_of_a_real_server(observed: Observed) -> None:
    server, records, exporter = observed.server, observed.records, observed.exporter
    async with aiohttp.ClientSession() as session:
        # Authentication: no token or a wrong one is refused before the upgrade.
        for url in (server.url, server.url + "?access_token=nope"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url)
            assert refused.value.status == 401
        ann = await session.ws_connect(server.url, protocols=("bearer.tok-ann",))
        bob = await session.ws_connect(server.url + "?access_token=tok-bob")
        assert ann.protocol == "bearer.tok-ann"

        # bob joins the room (an RPC without trace context: a new trace).
        await bob.send_str(
            json.dumps(
                {"type": "JOIN", "meta": {"correlationId": "j1"}, "payload": {"room": "lobby"}}
            )
        )
        assert (await _recv(bob))["payload"] == {"room": "lobby"}

        # ann says something inside her own trace: an RPC that publishes.
        traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
        await ann.send_str(
            json.dumps(
                {
                    "type": "SAY",
                    "meta": {"correlationId": "s1", "traceparent": traceparent},
                    "payload": {"room": "lobby", "text": "hello"},
                }
            )
        )
        assert await _recv(ann) == {
            "type": "SAID",
            "meta": {"correlationId": "s1"},
            "payload": {"delivered": 1},
        }
        chat = await _recv(bob)
        assert chat["type"] == "CHAT" and chat["payload"] == {"room": "lobby", "text": "hello"}
        delivered_trace = chat["meta"]["traceparent"]
        assert delivered_trace.startswith(f"00-{TRACE_ID}-") and delivered_trace.endswith("-01")

        # bob answers in the same trace, from the delivery's context.
        await bob.send_str(
            json.dumps(
                {
                    "type": "ACK",
                    "meta": {"traceparent": delivered_trace},
                    "payload": {"room": "lobby"},
                }
            )
        )
        # ann may not purge (admins only); an invalid SAY is refused before any middleware.
        await ann.send_str(json.dumps({"type": "PURGE", "payload": {"room": "lobby"}}))
        assert (await _recv(ann))["payload"] == {
            "code": "PERMISSION_DENIED",
            "message": "Permission denied",
        }
        await ann.send_str(
            json.dumps({"type": "SAY", "meta": {"correlationId": "s2"}, "payload": {"room": "x"}})
        )
        refused_say = await _recv(ann)
        assert refused_say["type"] == "RPC_ERROR"
        assert refused_say["payload"]["code"] == "INVALID_ARGUMENT"

        await bob.close()
        await _eventually(lambda: any(f["event"] == "close" for f in records.fields), "close log")
        await _eventually(lambda: len(exporter.get_finished_spans()) == 5, "five spans")

        async with session.get(server.http_url + "/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            scraped = await response.text()
        await ann.close()
        await _eventually(
            lambda: sum(f["event"] == "close" for f in records.fields) == 2, "second close log"
        )

    # ---------------------------------------------------------------- spans
    spans: dict[str, ReadableSpan] = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == [
        "process ACK",
        "process PURGE",
        "publish room:lobby",
        "rpc JOIN",
        "rpc SAY",
    ]
    say, publish, ack = spans["rpc SAY"], spans["publish room:lobby"], spans["process ACK"]
    assert say.kind is SpanKind.SERVER
    assert _hex(say.context.trace_id, 32) == TRACE_ID
    assert say.parent is not None and _hex(say.parent.span_id, 16) == CLIENT_SPAN
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == say.context.span_id
    assert delivered_trace == f"00-{TRACE_ID}-{_hex(publish.context.span_id, 16)}-01"
    assert publish.attributes is not None and publish.attributes["wskit.publish.matched"] == 1
    assert ack.kind is SpanKind.CONSUMER
    assert ack.parent is not None and ack.parent.span_id == publish.context.span_id
    assert {s.context.trace_id for s in (say, publish, ack)} == {int(TRACE_ID, 16)}
    assert spans["rpc JOIN"].parent is None
    assert _hex(spans["rpc JOIN"].context.trace_id, 32) != TRACE_ID
    assert say.attributes is not None
    assert say.attributes["messaging.message.conversation_id"] == "s1"
    assert say.attributes["messaging.destination.name"] == "SAY"
    purge = spans["process PURGE"]
    assert purge.attributes is not None and purge.attributes["error.type"] == "PERMISSION_DENIED"
    assert purge.status.status_code is StatusCode.UNSET

    # ----------------------------------------------------------------- logs
    def summary(fields: dict[str, Any]) -> tuple[Any, ...]:
        return (
            fields["event"],
            fields.get("type"),
            fields.get("outcome"),
            fields.get("close_code"),
            fields["level"],
        )

    by_client: dict[str, list[tuple[Any, ...]]] = {}
    for fields in records.fields:
        by_client.setdefault(fields["client_id"], []).append(summary(fields))
        if fields["event"] == "message" and "duration_ms" in fields:
            assert 0 <= fields["duration_ms"] < TIMEOUT * 1000
    assert sorted(by_client.values()) == [
        [
            ("open", None, None, None, "INFO"),
            ("message", "JOIN", "ok", None, "INFO"),
            ("message", "ACK", "ok", None, "INFO"),
            ("close", None, None, 1000, "INFO"),
        ],
        [
            ("open", None, None, None, "INFO"),
            ("message", "SAY", "ok", None, "INFO"),
            ("message", "PURGE", "PERMISSION_DENIED", None, "WARNING"),
            ("message", "SAY", "INVALID_ARGUMENT", None, "WARNING"),
            ("close", None, None, 1000, "INFO"),
        ],
    ]
    assert "tok-" not in json.dumps(records.fields)  # tokens never logged

    # -------------------------------------------------------------- metrics
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert value("wskit_connections") == 1  # ann, still connected when scraped
    assert value("wskit_connections_opened_total") == 2
    assert value("wskit_connections_closed_total") == 1
    assert value("wskit_messages_total", type="JOIN", outcome="ok") == 1
    assert value("wskit_messages_total", type="SAY", outcome="ok") == 1
    assert value("wskit_messages_total", type="ACK", outcome="ok") == 1
    assert value("wskit_messages_total", type="PURGE", outcome="PERMISSION_DENIED") == 1
    assert value("wskit_messages_total", type="SAY", outcome="INVALID_ARGUMENT") == 1
    assert value("wskit_errors_total", code="PERMISSION_DENIED") == 1
    assert value("wskit_errors_total", code="INVALID_ARGUMENT") == 1
    assert value("wskit_message_duration_seconds_count", type="SAY") == 1
    assert value("wskit_message_duration_seconds_bucket", type="SAY", le="+Inf") == 1
    assert value("wskit_publishes_total", type="CHAT", outcome="ok") == 1
    assert value("wskit_deliveries_total") == 1
    assert value("wskit_slow_consumer_closes_total") == 0
    assert value("wskit_outbound_buffered_bytes") == 0
