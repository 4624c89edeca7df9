"""Fixtures for wskit-middleware: an SDK tracer provider with an in-memory exporter,
a fresh Prometheus registry, and a logger whose records are kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

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
