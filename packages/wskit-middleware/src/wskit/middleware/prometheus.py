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
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

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
    One instance may serve several routers; its gauges then add them up.

    It is also the Prometheus collector of the metrics: middleware and hooks only
    add to plain counters on the event loop (no locks, no label lookups), and
    :meth:`collect` builds the metric families when the registry is scraped.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "wskit",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = sorted(float(b) for b in buckets if b != float("inf"))
        if not bounds or bounds[0] <= 0 or len(set(bounds)) != len(bounds):
            raise ValueError("buckets must be distinct positive numbers (seconds)")
        self.namespace = namespace
        self.buckets: tuple[float, ...] = tuple(bounds)
        self._routers: list[Router[Any]] = []
        self._opened = 0
        self._closed = 0
        self._slow_consumers = 0
        self._deliveries = 0
        self._messages: dict[str, dict[str, int]] = {}  # type -> outcome -> count
        self._errors: dict[str, int] = {}
        self._publishes: dict[tuple[str, str], int] = {}
        # type -> [count in each bucket (not cumulative)..., count above the last, sum]
        self._durations: dict[str, list[float]] = {}
        if registry is not None:
            registry.register(self)

    def __call__(self, router: Router[Any]) -> Router[Any]:
        if router not in self._routers:
            self._routers.append(router)
        router.use(self.middleware)
        router.on_open(self._opened_hook)
        router.on_close(self._closed_hook)
        router.observe(self._observed)
        router.observe_publish(self._published)
        return router

    # ------------------------------------------------------------- counting

    def _count_message(self, message_type: str, result: str) -> None:
        counts = self._messages.get(message_type)
        if counts is None:
            counts = self._messages[message_type] = {}
        counts[result] = counts.get(result, 0) + 1

    def _count_error(self, code: str) -> None:
        counts = self._errors
        counts[code] = counts.get(code, 0) + 1

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
            row = self._durations.get(message_type)
            if row is None:
                row = self._durations[message_type] = [0.0] * (len(self.buckets) + 2)
            row[bisect_left(self.buckets, elapsed)] += 1
            row[-1] += elapsed
            result = outcome(ctx, failure)
            self._count_message(message_type, result)
            if failure is None and ctx.error_code is not None:
                self._count_error(result)  # answered with ctx.error(): never reported

    def _opened_hook(self, ctx: OpenContext[Any]) -> None:
        self._opened += 1

    def _closed_hook(self, ctx: CloseContext[Any]) -> None:
        self._closed += 1
        if slow_consumer_closed(ctx.connection):
            self._slow_consumers += 1

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
        key = (record.type, OK if result.ok else (result.error or "UNKNOWN"))
        self._publishes[key] = self._publishes.get(key, 0) + 1
        if result.ok and result.matched:
            self._deliveries += result.matched

    # ------------------------------------------------------------ collector

    def _families(self) -> _Families:
        ns = self.namespace
        return _Families(
            connections=GaugeMetricFamily(f"{ns}_connections", "Connections open now"),
            opened=CounterMetricFamily(f"{ns}_connections_opened", "Connections opened"),
            closed=CounterMetricFamily(f"{ns}_connections_closed", "Connections closed"),
            messages=CounterMetricFamily(
                f"{ns}_messages",
                "Inbound messages by type and outcome (ok or the error code answered)",
                labels=["type", "outcome"],
            ),
            durations=HistogramMetricFamily(
                f"{ns}_message_duration_seconds",
                "Handler latency by message type",
                labels=["type"],
            ),
            errors=CounterMetricFamily(f"{ns}_errors", "Errors by code", labels=["code"]),
            buffered=GaugeMetricFamily(
                f"{ns}_outbound_buffered_bytes", "Bytes waiting in outbound buffers now"
            ),
            slow_consumers=CounterMetricFamily(
                f"{ns}_slow_consumer_closes",
                "Connections closed because their outbound buffer overflowed",
            ),
            publishes=CounterMetricFamily(
                f"{ns}_publishes",
                "Publishes by message type and outcome (ok or the publish error)",
                labels=["type", "outcome"],
            ),
            deliveries=CounterMetricFamily(
                f"{ns}_deliveries",
                "Subscribers matched by publishes, as the pub/sub adapter counts them",
            ),
        )

    def describe(self) -> list[Metric]:
        """The metric names (what the registry checks for duplicates)."""
        return self._families().all()

    def collect(self) -> list[Metric]:
        """The metric families with their current values (called on a scrape; it
        may run in another thread: it only reads, from snapshots)."""
        f = self._families()
        open_now = [c for r in tuple(self._routers) for c in tuple(r.connections.values())]
        f.connections.add_metric([], len(open_now))
        f.buffered.add_metric([], sum(c.buffered_bytes for c in open_now))
        f.opened.add_metric([], self._opened)
        f.closed.add_metric([], self._closed)
        f.slow_consumers.add_metric([], self._slow_consumers)
        f.deliveries.add_metric([], self._deliveries)
        for message_type, outcomes in list(self._messages.items()):
            for result, count in list(outcomes.items()):
                f.messages.add_metric([message_type, result], count)
        for code, count in list(self._errors.items()):
            f.errors.add_metric([code], count)
        for (message_type, result), count in list(self._publishes.items()):
            f.publishes.add_metric([message_type, result], count)
        bounds = [repr(b) for b in self.buckets] + ["+Inf"]
        for message_type, row in list(self._durations.items()):
            counts = list(row)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, in_bucket in zip(bounds, counts[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((bound, cumulative))
            f.durations.add_metric([message_type], buckets, counts[-1])
        return f.all()


@dataclass(frozen=True, slots=True)
class _Families:
    connections: GaugeMetricFamily
    opened: CounterMetricFamily
    closed: CounterMetricFamily
    messages: CounterMetricFamily
    durations: HistogramMetricFamily
    errors: CounterMetricFamily
    buffered: GaugeMetricFamily
    slow_consumers: CounterMetricFamily
    publishes: CounterMetricFamily
    deliveries: CounterMetricFamily

    def all(self) -> list[Metric]:
        return [getattr(self, f.name) for f in fields(self)]


def with_metrics(
    *,
    registry: CollectorRegistry | None = REGISTRY,
    namespace: str = "wskit",
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> Metrics:
    """Count what the router does, as Prometheus metrics in ``registry``
    (default the global one; pass a ``CollectorRegistry()`` to keep them apart).

    Apply the result to one or more routers with ``router.plugin()``; the
    metrics are registered here, once (a second ``with_metrics()`` on the same
    registry and namespace is refused by prometheus_client as a duplicate).
    ``buckets``: the latency histogram's upper bounds, in seconds.
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
