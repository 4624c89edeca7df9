"""OpenTelemetry tracing (``pip install wskit-middleware[otel]``).

::

    from wskit.middleware.tracing import with_tracing

    router.plugin(with_tracing())          # the global tracer provider, W3C trace context

A span per handled message (``process <TYPE>``, kind CONSUMER) and per RPC
(``rpc <TYPE>``, kind SERVER), with the messaging semantic-convention
attributes; a span per publish (``publish <topic>``, kind PRODUCER).

Trace context travels in the envelope's standard meta fields
``meta.traceparent`` / ``meta.tracestate`` (W3C Trace Context), which every
message accepts:

- a message that carries ``meta.traceparent`` continues the client's trace
  (its span is a child of the client's span); without one, a new trace starts;
- ``ctx.publish()``/``router.publish()`` put the publish span's context into
  the published message's meta, so every subscriber's delivery carries a
  ``traceparent`` that continues the trace.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wskit.core.context import MessageContext
from wskit.core.pubsub import PublishRecord
from wskit.core.router import Next, Router
from wskit.core.schema import MessageSchema
from wskit.middleware._outcome import OK, SERVER_FAULTS, outcome

__all__ = ["MESSAGING_SYSTEM", "Tracing", "with_tracing"]

#: ``messaging.system`` of every span.
MESSAGING_SYSTEM: Final = "wskit"
_TRACER_NAME: Final = "wskit.middleware"
_VERSION: Final = "0.1.0"
#: Publish spans waiting for their outcome (a publish reports it synchronously,
#: so this only fills up when a pub/sub plugin never reports one).
_MAX_PENDING: Final = 1024

#: A ``traceparent`` as W3C Trace Context version 00 writes it (what
#: :meth:`Tracing._extract` reads without the propagator).
_TRACEPARENT: Final = re.compile("00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

_Ctx = MessageContext[Any, Any]


class Tracing:
    """The plugin :func:`with_tracing` returns: apply it with ``router.plugin()``."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        propagate_publish: bool = True,
    ) -> None:
        self.tracer = trace.get_tracer(_TRACER_NAME, _VERSION, tracer_provider=tracer_provider)
        self.propagator = propagator if propagator is not None else TraceContextTextMapPropagator()
        self.propagate_publish = propagate_publish
        self._pending: OrderedDict[str, trace.Span] = OrderedDict()
        self._root = otel_context.Context()
        # Per message type: the span's name, kind and start attributes (built once).
        self._starts: dict[str, _Start] = {}

    def __call__(self, router: Router[Any]) -> Router[Any]:
        router.use(self.middleware)
        if self.propagate_publish:
            router.add_publish_hook(self._publish_hook)
            router.observe_publish(self._published)
        return router

    # ------------------------------------------------------------- messages

    async def middleware(self, ctx: _Ctx, next_: Next) -> None:
        meta = ctx.meta
        parent = self._extract(meta) if "traceparent" in meta else self._root
        message_type = ctx.type
        rpc = ctx.is_rpc
        start = self._starts.get(message_type)
        if start is None or start[3] is not rpc:
            start = self._starts[message_type] = _start(message_type, rpc)
        name, kind, attributes, _ = start
        # The attributes a sampler may use go in at the start; the others only
        # onto spans that are recorded.
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        if span.is_recording():
            recorded: dict[str, Any] = {
                "messaging.operation.name": "rpc" if rpc else "process",
                "messaging.client.id": ctx.client_id,
            }
            cid = meta.get("correlationId")
            if cid is not None:
                recorded["messaging.message.conversation_id"] = cid
            span.set_attributes(recorded)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        failure: BaseException | None = None
        try:
            await next_()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            otel_context.detach(token)
            if span.is_recording():
                _finish(span, outcome(ctx, failure), failure)
            span.end()

    def _extract(self, meta: Mapping[str, Any]) -> otel_context.Context:
        """The parent context of a message that carries ``meta.traceparent``.

        With the default W3C propagator and no ``tracestate``, a value in the
        form every W3C tracer sends (version ``00``, lowercase hex, nothing
        around it) is read here, into the same context the propagator makes of
        it, without the propagator's generic getter and search (about 1.5 us
        less per message). Anything else (other versions, padding, malformed or
        all-zero ids, a ``tracestate``, another propagator) goes to
        ``propagator.extract()``: this path accepts a subset of what the
        propagator accepts, so whatever it refuses stays refused.
        """
        propagator = self.propagator
        if type(propagator) is TraceContextTextMapPropagator and "tracestate" not in meta:
            traceparent = meta["traceparent"]
            found = _TRACEPARENT.fullmatch(traceparent) if type(traceparent) is str else None
            if found is not None:
                trace_id = int(found[1], 16)
                span_id = int(found[2], 16)
                if trace_id and span_id:
                    flags = trace.TraceFlags(int(found[3], 16))
                    remote = trace.SpanContext(trace_id, span_id, True, flags)
                    return trace.set_span_in_context(trace.NonRecordingSpan(remote), self._root)
        return propagator.extract(meta, context=self._root)

    # -------------------------------------------------------------- publish

    def _publish_hook(
        self, topic: str, schema: MessageSchema[Any], meta: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        if meta and "traceparent" in meta:
            return None  # the caller set the trace context itself
        current = otel_context.get_current()
        span = self.tracer.start_span(
            f"publish {topic}",
            context=current,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": topic,
                "wskit.message.type": schema.type,
            },
        )
        carrier: dict[str, Any] = dict(meta) if meta else {}
        propagator = self.propagator
        if type(propagator) is TraceContextTextMapPropagator:
            _inject_w3c(carrier, span.get_span_context())
        else:
            propagator.inject(carrier, context=trace.set_span_in_context(span, current))
        traceparent = carrier.get("traceparent")
        if span.is_recording() and isinstance(traceparent, str):
            pending = self._pending
            pending[traceparent] = span
            while len(pending) > _MAX_PENDING:
                pending.popitem(last=False)[1].end()
        else:
            span.end()
        return carrier

    def _published(self, record: PublishRecord) -> None:
        traceparent = record.meta.get("traceparent")
        span = self._pending.pop(traceparent, None) if isinstance(traceparent, str) else None
        if span is None:
            return
        result = record.result
        if result.ok:
            if result.matched is not None:
                span.set_attribute("wskit.publish.matched", result.matched)
        else:
            span.set_attribute("error.type", result.error or "UNKNOWN")
            span.set_status(Status(StatusCode.ERROR, result.error))
        span.end()


_Start = tuple[str, SpanKind, Mapping[str, Any], bool]


def _start(message_type: str, rpc: bool) -> _Start:
    """A message span's name, kind and start attributes (read-only: one mapping
    serves every span of the type)."""
    attributes = MappingProxyType(
        {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": message_type,
        }
    )
    if rpc:
        return f"rpc {message_type}", SpanKind.SERVER, attributes, True
    return f"process {message_type}", SpanKind.CONSUMER, attributes, False


def _finish(span: trace.Span, result: str, failure: BaseException | None) -> None:
    if result == OK:
        return
    span.set_attribute("error.type", result)
    if failure is not None and isinstance(failure, Exception):
        span.record_exception(failure)
    if result in SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, result))


def _inject_w3c(carrier: dict[str, Any], span_context: trace.SpanContext) -> None:
    """What the default W3C propagator's ``inject()`` writes for a span whose context
    is ``span_context`` (without its context lookup and generic setter)."""
    if span_context == trace.INVALID_SPAN_CONTEXT:
        return
    carrier["traceparent"] = (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{span_context.trace_flags:02x}"
    )
    if span_context.trace_state:
        carrier["tracestate"] = span_context.trace_state.to_header()


def with_tracing(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    propagator: TextMapPropagator | None = None,
    propagate_publish: bool = True,
) -> Tracing:
    """Trace messages, RPCs and publishes with OpenTelemetry.

    - ``tracer_provider``: default the global one (``trace.set_tracer_provider``).
    - ``propagator``: how trace context is read from and written to meta;
      default W3C Trace Context (``traceparent``/``tracestate``, the two meta
      keys every message accepts).
    - ``propagate_publish``: put the trace context into published messages
      (default on). Subscribers then receive ``meta.traceparent``; a client
      whose schemas are strict about meta and do not know it (WS-Kit
      TypeScript) would refuse such deliveries, so switch it off for them.

    Span attributes: ``messaging.system`` (``wskit``),
    ``messaging.operation.type`` (``process``/``send``),
    ``messaging.operation.name`` (``process``/``rpc``/``publish``),
    ``messaging.destination.name`` (message type, or topic),
    ``messaging.client.id`` (connection id),
    ``messaging.message.conversation_id`` (correlation id), ``error.type`` (the
    error code the client got). Server faults (``INTERNAL``, ``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED``) also set the span status to ERROR; refusals
    (``INVALID_ARGUMENT``, ``PERMISSION_DENIED``...) only set ``error.type``.
    Register it first, so its span covers the other middleware.
    """
    return Tracing(
        tracer_provider=tracer_provider,
        propagator=propagator,
        propagate_publish=propagate_publish,
    )
