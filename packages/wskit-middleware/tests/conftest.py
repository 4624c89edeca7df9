"""Fixtures for wskit-middleware: an SDK tracer provider with an in-memory exporter,
a fresh Prometheus registry, a logger whose records are kept, and a pub/sub provider
whose publish results are scripted."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from wskit.core import PublishRecord, PublishResult
from wskit.core.testing import Harness


class Records(logging.Handler):
    """Keeps every record a logger emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def fields(self) -> list[dict[str, Any]]:
        return [r.wskit for r in self.records]  # type: ignore[attr-defined]


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger(f"test.wskit.middleware.{id(object())}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    records = Records()
    logger.addHandler(records)
    yield logger, records
    logger.removeHandler(records)


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def failing_harness() -> Any:
    """``failing_harness(router)``: a Harness that expects reported errors (for tests
    that make a handler raise a plain exception, or abort an RPC, on purpose: the
    harness fails a test on errors it was not told to expect)."""

    def make(router: Any, **options: Any) -> Harness[Any]:
        return Harness(router, allow_errors=True, **options)

    return make


class ScriptedPubSub:
    """A pub/sub provider that answers each publish with the next of ``results`` (the
    last one again once they run out), records the meta it was given, and reports
    each publish to the router's hooks as wskit-pubsub does."""

    def __init__(self, router: Any, *results: PublishResult) -> None:
        assert results, "give at least one PublishResult"
        self.router = router
        self.results = list(results)
        self.metas: list[Mapping[str, Any] | None] = []

    async def publish(
        self,
        topic: str,
        schema: Any,
        payload: Any,
        *,
        sender: Any = None,
        exclude_self: bool = False,
        partition_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        self.metas.append(meta)
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        record = PublishRecord(topic, schema.type, payload, dict(meta or {}), result)
        self.router.notify_publish(record)
        return result

    async def connection_opened(self, connection: Any) -> None:
        pass

    async def connection_closed(self, connection: Any) -> None:
        pass


@pytest.fixture
def scripted_pubsub() -> type[ScriptedPubSub]:
    """``scripted_pubsub(router, *results)``: a :class:`ScriptedPubSub`."""
    return ScriptedPubSub
