"""Prometheus metrics (``pip install wskit-middleware[prometheus]``).

::

    from wskit.middleware.prometheus import add_metrics_route, with_metrics

    metrics = with_metrics()                 # registers in prometheus_client.REGISTRY
    router.plugin(metrics)
    add_metrics_route(app)                   # aiohttp: GET /metrics

The metrics (``wskit`` is the default ``namespace``):

=========================================  ====================================================
``wskit_connections``                      connections open now (gauge)
``wskit_connections_opened_total``         connections opened
``wskit_connections_closed_total``         connections closed
``wskit_messages_total{type,outcome}``     inbound messages by type and outcome (``ok`` or the
                                           error code the client got); messages refused
                                           before routing have ``type="(unknown)"`` unless
                                           their type is a route's
``wskit_message_duration_seconds{type}``   handler latency (histogram)
``wskit_errors_total{code}``               errors by code: every error the router reports and
                                           every ``ctx.error()`` answer
``wskit_outbound_buffered_bytes``          bytes waiting in outbound buffers now (gauge)
``wskit_slow_consumer_closes_total``       connections closed because their outbound buffer
                                           overflowed (a client that stopped reading)
``wskit_publishes_total{type,outcome}``    publishes by message type and outcome (``ok`` or
                                           the publish error, e.g. ``ADAPTER_ERROR``)
``wskit_deliveries_total``                 subscribers the publishes matched, as the pub/sub
                                           adapter counts them (exact in memory)
=========================================  ====================================================
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from wskit.core.connection import ErrorInfo
from wskit.core.context import CloseContext, MessageContext, OpenContext
from wskit.core.errors import ErrorCode, RpcError
from wskit.core.pubsub import PublishRecord
from wskit.core.router import Next, Router
from wskit.middleware._outcome import OK, outcome, rejected, slow_consumer_closed

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DEFAULT_BUCKETS",
    "UNKNOWN_TYPE",
    "Metrics",
    "add_metrics_route",
    "metrics_handler",
    "with_metrics",
]

#: Handler latency buckets, in seconds (0.5 ms to 10 s).
DEFAULT_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
#: The ``type`` label of messages whose type is no route's (keeps label values bounded).
UNKNOWN_TYPE: Final = "(unknown)"

_Ctx = MessageContext[Any, Any]


class Metrics:
    """The plugin :func:`with_metrics` returns: apply it with ``router.plugin()``.
    One instance may serve several routers; its gauges then add them up."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "wskit",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.registry = registry
        self._routers: list[Router[Any]] = []
        ns = namespace
        self.connections = Gauge(
            "connections", "Connections open now", namespace=ns, registry=registry
        )
        self.connections.set_function(self._open_connections)
        self.opened = Counter(
            "connections_opened", "Connections opened", namespace=ns, registry=registry
        )
        self.closed = Counter(
            "connections_closed", "Connections closed", namespace=ns, registry=registry
        )
        self.messages = Counter(
            "messages",
            "Inbound messages by type and outcome (ok or the error code answered)",
            ["type", "outcome"],
            namespace=ns,
            registry=registry,
        )
        self.duration = Histogram(
            "message_duration_seconds",
            "Handler latency by message type",
            ["type"],
            namespace=ns,
            registry=registry,
            buckets=tuple(buckets),
        )
        self.errors = Counter("errors", "Errors by code", ["code"], namespace=ns, registry=registry)
        self.buffered = Gauge(
            "outbound_buffered_bytes",
            "Bytes waiting in outbound buffers now",
            namespace=ns,
            registry=registry,
        )
        self.buffered.set_function(self._buffered_bytes)
        self.slow_consumers = Counter(
            "slow_consumer_closes",
            "Connections closed because their outbound buffer overflowed",
            namespace=ns,
            registry=registry,
        )
        self.publishes = Counter(
            "publishes",
            "Publishes by message type and outcome (ok or the publish error)",
            ["type", "outcome"],
            namespace=ns,
            registry=registry,
        )
        self.deliveries = Counter(
            "deliveries",
            "Subscribers matched by publishes, as the pub/sub adapter counts them",
            namespace=ns,
            registry=registry,
        )
        # Labelled children, cached: labels() costs more than the increment.
        self._message_children: dict[tuple[str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._error_children: dict[str, Any] = {}

    def __call__(self, router: Router[Any]) -> Router[Any]:
        if router not in self._routers:
            self._routers.append(router)
        router.use(self.middleware)
        router.on_open(self._opened)
        router.on_close(self._closed)
        router.observe(self._observed)
        router.observe_publish(self._published)
        return router

    # ---------------------------------------------------------------- gauges

    def _open_connections(self) -> float:
        return float(sum(len(r.connections) for r in self._routers))

    def _buffered_bytes(self) -> float:
        return float(sum(c.buffered_bytes for r in self._routers for c in r.connections.values()))

    # -------------------------------------------------------------- counting

    def _count_message(self, message_type: str, result: str) -> None:
        key = (message_type, result)
        child = self._message_children.get(key)
        if child is None:
            child = self._message_children[key] = self.messages.labels(*key)
        child.inc()

    def _count_error(self, code: str) -> None:
        child = self._error_children.get(code)
        if child is None:
            child = self._error_children[code] = self.errors.labels(code)
        child.inc()

    async def middleware(self, ctx: _Ctx, next_: Next) -> None:
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            await next_()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            elapsed = time.perf_counter() - start
            message_type = ctx.type
            histogram = self._duration_children.get(message_type)
            if histogram is None:
                histogram = self._duration_children[message_type] = self.duration.labels(
                    message_type
                )
            histogram.observe(elapsed)
            result = outcome(ctx, failure)
            self._count_message(message_type, result)
            if failure is None and ctx.error_code is not None:
                self._count_error(result)  # answered with ctx.error(): never reported

    def _opened(self, ctx: OpenContext[Any]) -> None:
        self.opened.inc()

    def _closed(self, ctx: CloseContext[Any]) -> None:
        self.closed.inc()
        if slow_consumer_closed(ctx.connection):
            self.slow_consumers.inc()

    def _observed(self, exc: BaseException, info: ErrorInfo) -> None:
        self._count_error(exc.code if isinstance(exc, RpcError) else ErrorCode.INTERNAL)
        found = rejected(exc, info)
        if found is not None:
            message_type, code = found
            conn = info.connection
            known = (
                message_type is not None and conn is not None and message_type in conn.router.routes
            )
            self._count_message(message_type if known and message_type else UNKNOWN_TYPE, code)

    def _published(self, record: PublishRecord) -> None:
        result = record.result
        self.publishes.labels(record.type, OK if result.ok else (result.error or "UNKNOWN")).inc()
        if result.ok and result.matched:
            self.deliveries.inc(result.matched)


def with_metrics(
    *,
    registry: CollectorRegistry | None = REGISTRY,
    namespace: str = "wskit",
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> Metrics:
    """Count what the router does, as Prometheus metrics in ``registry``
    (default the global one; pass a ``CollectorRegistry()`` to keep them apart).

    Apply the result to one or more routers with ``router.plugin()``; the
    metrics are created here, once (a second ``with_metrics()`` on the same
    registry and namespace is refused by prometheus_client as a duplicate).
    """
    return Metrics(registry=registry, namespace=namespace, buckets=buckets)


def metrics_handler(
    registry: CollectorRegistry = REGISTRY,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving ``registry`` in the Prometheus text format
    (OpenMetrics when the scraper asks for it)."""
    from aiohttp import web
    from prometheus_client.exposition import choose_encoder

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    return metrics


def add_metrics_route(
    app: web.Application,
    *,
    path: str = "/metrics",
    registry: CollectorRegistry = REGISTRY,
) -> None:
    """Serve ``registry`` at ``GET path`` on an aiohttp app (needs aiohttp,
    e.g. through wskit-aiohttp)."""
    app.router.add_get(path, metrics_handler(registry))
