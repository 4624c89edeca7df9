"""with_tracing(): spans exported by the OpenTelemetry SDK's in-memory exporter,
through the real router (wskit.core.testing.Harness)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)

from wskit.core import (
    PublishResult,
    RpcError,
    any_object,
    create_router,
    define_message,
    define_rpc,
)
from wskit.middleware.tracing import with_tracing

Ping = define_message("PING", any_object())
Deny = define_message("DENY", any_object())
Boom = define_message("BOOM")
Shout = define_message("SHOUT", any_object())
Ask = define_rpc("ASK", any_object(), "ANSWER", any_object())
Wait = define_rpc("WAIT", any_object(), "WAITED", any_object())

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _router(provider: TracerProvider, **options: Any) -> Any:
    router = create_router().plugin(with_tracing(tracer_provider=provider, **options))

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        pass

    @router.on(Deny)
    async def deny(ctx: Any) -> None:
        ctx.error("PERMISSION_DENIED")

    @router.on(Boom)
    async def boom(ctx: Any) -> None:
        raise RuntimeError("deliberate failure")

    @router.on(Shout)
    async def shout(ctx: Any) -> None:
        await ctx.publish("room:1", Ping, {"n": 1})
        await ctx.publish("room:1", Ping, {"n": 2}, meta={"traceparent": TRACEPARENT})

    @router.rpc(Ask)
    async def ask(ctx: Any) -> None:
        if ctx.payload.get("missing"):
            raise RpcError("NOT_FOUND")
        ctx.reply({})

    return router


async def _shout(router: Any, scripted_pubsub: Any, meta: Mapping[str, Any] | None = None) -> Any:
    """Send one SHOUT (its handler publishes twice) through the test harness, with a
    pub/sub provider that reports each publish as matched once; returns the provider."""
    from wskit.core.testing import Harness

    pubsub = scripted_pubsub(router, PublishResult.success("exact", 1))
    router.set_pubsub(pubsub)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Shout, {}, meta=meta)
        await h.flush()
    return pubsub


def _by_name(spans: Any) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


async def test_message_spans_continue_the_clients_trace(spans: Any, failing_harness: Any) -> None:
    provider, exporter = spans
    router = _router(provider)
    async with failing_harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {}, meta={"traceparent": TRACEPARENT, "tracestate": "vendor=1"})
        conn.send(Ping, {})  # no trace context: a new trace
        conn.send(Deny, {})
        conn.send(Boom)
        await conn.request(Ask, {}, meta={"traceparent": TRACEPARENT})
        with pytest.raises(RpcError):
            await conn.request(Ask, {"missing": True})
        await h.flush()
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == [
        "process PING",
        "process PING",
        "process DENY",
        "process BOOM",
        "rpc ASK",
        "rpc ASK",
    ]
    child, root, deny, boom, rpc, missing = finished
    assert child.kind is SpanKind.CONSUMER and rpc.kind is SpanKind.SERVER
    assert _hex(child.context.trace_id, 32) == TRACE_ID
    assert child.parent is not None and _hex(child.parent.span_id, 16) == PARENT_ID
    assert child.parent.is_remote
    assert child.context.trace_state.get("vendor") == "1"
    assert root.parent is None and _hex(root.context.trace_id, 32) != TRACE_ID
    assert dict(child.attributes or {}) == {
        "messaging.system": "wskit",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "PING",
        "messaging.client.id": conn.client_id,
    }
    assert child.status.status_code is StatusCode.UNSET
    # A refusal is not a server fault: error.type only.
    assert deny.attributes is not None and deny.attributes["error.type"] == "PERMISSION_DENIED"
    assert deny.status.status_code is StatusCode.UNSET
    # A failure is: status ERROR and the exception recorded.
    assert boom.attributes is not None and boom.attributes["error.type"] == "INTERNAL"
    assert boom.status.status_code is StatusCode.ERROR
    assert [e.name for e in boom.events] == ["exception"]
    assert boom.events[0].attributes is not None
    assert boom.events[0].attributes["exception.type"] == "RuntimeError"
    # RPC: the correlation id is the conversation id; a raised RpcError is its code.
    assert rpc.attributes is not None
    assert rpc.attributes["messaging.operation.name"] == "rpc"
    assert rpc.attributes["messaging.message.conversation_id"] == "rpc-1"
    assert _hex(rpc.context.trace_id, 32) == TRACE_ID
    assert missing.attributes is not None and missing.attributes["error.type"] == "NOT_FOUND"
    assert missing.status.status_code is StatusCode.UNSET


async def test_deadline_and_abort_end_the_span(spans: Any, failing_harness: Any) -> None:
    provider, exporter = spans
    router = _router(provider)
    gate: dict[str, Any] = {}

    async def wait(ctx: Any) -> None:
        import asyncio

        gate[ctx.correlation_id] = asyncio.get_running_loop().create_future()
        await gate[ctx.correlation_id]

    router.rpc(Wait, wait)
    async with failing_harness(router) as h:  # the abort is reported, never answered
        conn = await h.connect()
        aborted = conn.call(Wait, {})
        await h.flush()
        await aborted.abort()  # running: its handler is cancelled
        late = conn.call(Wait, {}, meta={"timeoutMs": 50})
        await h.flush()
        await h.advance(60)
        with pytest.raises(RpcError, match="Deadline"):
            await late.result()
    by_cid = {
        s.attributes["messaging.message.conversation_id"]: s for s in exporter.get_finished_spans()
    }  # type: ignore[index]
    late_span, aborted_span = by_cid[late.correlation_id], by_cid[aborted.correlation_id]
    assert late_span.attributes is not None and aborted_span.attributes is not None
    assert late_span.attributes["error.type"] == "DEADLINE_EXCEEDED"
    assert late_span.status.status_code is StatusCode.ERROR
    assert aborted_span.attributes["error.type"] == "CANCELLED"
    assert aborted_span.status.status_code is StatusCode.UNSET


async def test_publish_spans_and_trace_context_in_published_meta(
    spans: Any, scripted_pubsub: Any
) -> None:
    from wskit.core.testing import Harness

    provider, exporter = spans
    router = _router(provider)
    ok, failed = PublishResult.success("exact", 3), PublishResult.failure("ADAPTER_ERROR")
    pubsub = scripted_pubsub(router, ok, ok, failed)
    router.set_pubsub(pubsub)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Shout, {}, meta={"traceparent": TRACEPARENT})
        await h.flush()
        await router.publish("room:2", Ping, {"n": 3})  # outside any handler: a new trace
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["publish room:1", "process SHOUT", "publish room:2"]
    publish, shout, background = finished
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == shout.context.span_id
    assert publish.context.trace_id == shout.context.trace_id
    assert dict(publish.attributes or {}) == {
        "messaging.system": "wskit",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "room:1",
        "wskit.message.type": "PING",
        "wskit.publish.matched": 3,
    }
    # The published message carries the publish span's context...
    first, own, third = pubsub.metas
    assert first == {
        "traceparent": f"00-{TRACE_ID}-{_hex(publish.context.span_id, 16)}-01",
    }
    # ...unless the publisher set one itself.
    assert own == {"traceparent": TRACEPARENT}
    assert background.parent is None
    assert background.attributes is not None
    assert background.attributes["error.type"] == "ADAPTER_ERROR"
    assert background.status.status_code is StatusCode.ERROR
    assert third is not None
    _version, trace_id, span_id, flags = third["traceparent"].split("-")
    assert trace_id == _hex(background.context.trace_id, 32)
    assert span_id == _hex(background.context.span_id, 16)
    assert int(flags, 16) & 1  # sampled


async def test_sampled_out_traces_still_propagate_the_decision(scripted_pubsub: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
    pubsub = await _shout(_router(provider), scripted_pubsub, {"traceparent": unsampled})
    assert exporter.get_finished_spans() == ()
    meta = pubsub.metas[0]
    assert meta is not None
    version, trace_id, _span_id, flags = meta["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00")


async def test_publish_propagation_can_be_off(spans: Any, scripted_pubsub: Any) -> None:
    provider, exporter = spans
    pubsub = await _shout(_router(provider, propagate_publish=False), scripted_pubsub)
    assert pubsub.metas == [None, {"traceparent": TRACEPARENT}]
    assert [s.name for s in exporter.get_finished_spans()] == ["process SHOUT"]


async def test_unreported_publish_spans_are_bounded(spans: Any) -> None:
    from wskit.middleware import tracing

    provider, exporter = spans
    plugin = with_tracing(tracer_provider=provider)
    for i in range(tracing._MAX_PENDING + 5):
        plugin._publish_hook(f"t{i}", Ping, None)
    assert len(plugin._pending) == tracing._MAX_PENDING
    ended = [s.name for s in exporter.get_finished_spans()]
    assert ended == [f"publish t{i}" for i in range(5)]  # the oldest, ended when evicted


async def test_one_plugin_two_routers_same_type_rpc_in_one(spans: Any) -> None:
    """Span names, kinds and start attributes are built once per type: a type
    that is an RPC on one router and an event on another still gets the right ones,
    and every span starts with the same attributes for the sampler."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult

    from wskit.core.testing import Harness

    seen: list[dict[str, Any]] = []

    class Recording(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            attributes = kwargs.get("attributes", args[4] if len(args) > 4 else None)
            seen.append(dict(attributes or {}))
            return ALWAYS_ON.should_sample(*args, **kwargs)

        def get_description(self) -> str:
            return "Recording"

    _, exporter = spans
    provider = TracerProvider(sampler=Recording())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plugin = with_tracing(tracer_provider=provider)
    AskEvent = define_message("ASK", any_object())
    as_rpc = create_router().plugin(plugin)
    as_event = create_router().plugin(plugin)

    @as_rpc.rpc(Ask)
    async def ask(ctx: Any) -> None:
        ctx.reply({})

    @as_event.on(AskEvent)
    async def told(ctx: Any) -> None:
        pass

    for router, send in ((as_rpc, True), (as_event, False), (as_rpc, True)):
        async with Harness(router) as h:
            conn = await h.connect()
            if send:
                await conn.request(Ask, {})
            else:
                conn.send(AskEvent, {})
            await h.flush()
    finished = exporter.get_finished_spans()
    assert [(s.name, s.kind) for s in finished] == [
        ("rpc ASK", SpanKind.SERVER),
        ("process ASK", SpanKind.CONSUMER),
        ("rpc ASK", SpanKind.SERVER),
    ]
    start = {
        "messaging.system": "wskit",
        "messaging.operation.type": "process",
        "messaging.destination.name": "ASK",
    }
    assert seen == [start, start, start]
    assert [dict(s.attributes or {})["messaging.operation.name"] for s in finished] == [
        "rpc",
        "process",
        "rpc",
    ]


# ---------------------------------------------------------------- traceparent

_VALID_TRACEPARENTS = [
    TRACEPARENT,
    f"00-{TRACE_ID}-{PARENT_ID}-00",
    f"00-{TRACE_ID}-{PARENT_ID}-ff",
    f"00-{'f' * 32}-{'f' * 16}-03",
    f"00-{'0' * 31}1-{'0' * 15}1-01",
]
_OTHER_TRACEPARENTS = [
    # Accepted by the propagator, in forms the fast path leaves to it.
    f" 00-{TRACE_ID}-{PARENT_ID}-01",
    f"\t00-{TRACE_ID}-{PARENT_ID}-01 \t",
    f"00-{TRACE_ID}-{PARENT_ID}-01\n",
    f"01-{TRACE_ID}-{PARENT_ID}-01",
    f"01-{TRACE_ID}-{PARENT_ID}-01-future-fields",
    # Refused by the propagator.
    "",
    "00",
    f"00-{TRACE_ID}-{PARENT_ID}",
    f"00-{TRACE_ID}-{PARENT_ID}-01-",
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID.upper()}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-0A",
    f"ff-{TRACE_ID}-{PARENT_ID}-01",
    f"0g-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{'0' * 32}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01",
    f"00-{TRACE_ID[:-1]}_-{PARENT_ID}-01",
    f"00-{TRACE_ID[:-2]}+1-{PARENT_ID}-01",
    f"00_{TRACE_ID}_{PARENT_ID}_01",
    f"00-{TRACE_ID}0-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-1",
    f"00-{TRACE_ID}-{PARENT_ID}-01" + " " * 500,
    f"00-{TRACE_ID}-{PARENT_ID}-01" + "x" * 500,
]


def _remote_parent(context: Any) -> tuple[Any, ...]:
    """What a message span's parent context holds: its keys and the remote span context."""
    from opentelemetry import trace

    span_context = trace.get_current_span(context).get_span_context()
    return (
        sorted(context),
        span_context.trace_id,
        span_context.span_id,
        span_context.is_remote,
        int(span_context.trace_flags),
        span_context.trace_state.to_header(),
        span_context.is_valid,
    )


def _both(meta: Mapping[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    plugin = with_tracing()
    ours = plugin._extract(meta)
    theirs = TraceContextTextMapPropagator().extract(meta, context=Context())
    return _remote_parent(ours), _remote_parent(theirs)


@pytest.mark.parametrize("traceparent", _VALID_TRACEPARENTS + _OTHER_TRACEPARENTS)
@pytest.mark.parametrize("tracestate", [None, "vendor=1,other=abc", "not a tracestate"])
def test_traceparent_is_read_exactly_as_the_w3c_propagator_reads_it(
    traceparent: str, tracestate: str | None
) -> None:
    meta: dict[str, Any] = {"traceparent": traceparent}
    if tracestate is not None:
        meta["tracestate"] = tracestate
    ours, theirs = _both(meta)
    assert ours == theirs


def test_traceparent_read_without_the_propagator_only_in_the_w3c_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    calls: list[Any] = []
    extract = TraceContextTextMapPropagator.extract

    def counting(self: Any, carrier: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(dict(carrier))
        return extract(self, carrier, *args, **kwargs)

    monkeypatch.setattr(TraceContextTextMapPropagator, "extract", counting)
    plugin = with_tracing()
    for traceparent in _VALID_TRACEPARENTS:
        plugin._extract({"traceparent": traceparent})
    assert calls == []
    for traceparent in _OTHER_TRACEPARENTS:
        plugin._extract({"traceparent": traceparent})
    plugin._extract({"traceparent": TRACEPARENT, "tracestate": "vendor=1"})
    assert [c["traceparent"] for c in calls] == [*_OTHER_TRACEPARENTS, TRACEPARENT]


def test_a_custom_propagator_reads_every_traceparent() -> None:
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    seen: list[Any] = []

    class Recording(TraceContextTextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Context:
            seen.append(carrier["traceparent"])
            return super().extract(carrier, context=context)

    plugin = with_tracing(propagator=Recording())
    plugin._extract({"traceparent": TRACEPARENT})
    assert seen == [TRACEPARENT]


_near_hex = st.text("0123456789abcdefABCDEF_-+ g", min_size=0, max_size=34)


def _ids(valid: str) -> st.SearchStrategy[str]:
    n = len(valid)
    hex_ish = st.text("0123456789abcdef", min_size=n - 1, max_size=n + 1)
    return st.one_of(st.just(valid), st.just("0" * n), hex_ish, _near_hex)


@given(
    version=st.sampled_from(["00", "01", "ff", "0A", "0", " 00"]),
    trace_id=_ids(TRACE_ID),
    span_id=_ids(PARENT_ID),
    flags=st.one_of(st.sampled_from(["00", "01", "ff", "AB", "1"]), _near_hex),
    tail=st.sampled_from(["", " ", "\n", "-", "-x", "\t \t"]),
)
def test_any_traceparent_is_read_as_the_propagator_reads_it(
    version: str, trace_id: str, span_id: str, flags: str, tail: str
) -> None:
    ours, theirs = _both({"traceparent": f"{version}-{trace_id}-{span_id}-{flags}{tail}"})
    assert ours == theirs


async def test_trace_context_continues_through_the_read_traceparent(
    spans: Any, scripted_pubsub: Any
) -> None:
    """A message with a W3C traceparent: its span, and the publish from its handler,
    continue the client's trace (sampled or not) with the right parents."""
    provider, exporter = spans
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    pubsub = await _shout(_router(provider), scripted_pubsub, {"traceparent": traceparent})
    publish, shout = exporter.get_finished_spans()
    assert shout.parent is not None and shout.parent.is_remote
    assert _hex(shout.parent.span_id, 16) == PARENT_ID
    assert _hex(shout.context.trace_id, 32) == TRACE_ID
    assert publish.parent is not None and publish.parent.span_id == shout.context.span_id
    assert pubsub.metas[0] == {
        "traceparent": f"00-{TRACE_ID}-{_hex(publish.context.span_id, 16)}-01"
    }


@pytest.mark.parametrize(
    "span_context",
    [
        SpanContext(int(TRACE_ID, 16), int(PARENT_ID, 16), False, TraceFlags(1)),
        SpanContext(1, 1, False, TraceFlags(0)),
        SpanContext(2**128 - 1, 2**64 - 1, True, TraceFlags(0xFF)),
        SpanContext(
            int(TRACE_ID, 16),
            int(PARENT_ID, 16),
            False,
            TraceFlags(1),
            TraceState([("vendor", "1"), ("other", "abc")]),
        ),
        SpanContext(0, int(PARENT_ID, 16), False, TraceFlags(1)),
        INVALID_SPAN_CONTEXT,
    ],
)
def test_publish_trace_context_is_written_as_the_w3c_propagator_writes_it(
    span_context: SpanContext,
) -> None:
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from wskit.middleware.tracing import _inject_w3c

    ours: dict[str, Any] = {"other": 1}
    theirs: dict[str, Any] = {"other": 1}
    _inject_w3c(ours, span_context)
    context = set_span_in_context(NonRecordingSpan(span_context), Context())
    TraceContextTextMapPropagator().inject(theirs, context=context)
    assert ours == theirs


async def test_a_custom_propagator_writes_the_publish_trace_context(
    spans: Any, scripted_pubsub: Any
) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    class Tagged(TraceContextTextMapPropagator):
        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            super().inject(carrier, context=context)
            carrier["tracestate"] = "custom=1"

    provider, exporter = spans
    pubsub = await _shout(_router(provider, propagator=Tagged()), scripted_pubsub)
    first = pubsub.metas[0]
    assert first is not None and first["tracestate"] == "custom=1"
    publish = exporter.get_finished_spans()[0]
    context = publish.context
    assert first["traceparent"] == (
        f"00-{_hex(context.trace_id, 32)}-{_hex(context.span_id, 16)}"
        f"-{_hex(context.trace_flags, 2)}"
    )
