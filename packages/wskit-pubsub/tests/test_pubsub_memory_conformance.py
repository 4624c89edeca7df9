"""The in-memory adapter passes the shared adapter conformance suite."""

from __future__ import annotations

import pytest

from wskit.pubsub import MemoryPubSub
from wskit.pubsub.testing import (
    AdapterConformance,
    AdapterFactory,
    BackendOutage,
    DistributedAdapterConformance,
    InProcessBroker,
)


class TestMemoryPubSubConformance(AdapterConformance):
    @pytest.fixture
    def make_adapter(self) -> AdapterFactory:
        return MemoryPubSub


class TestInProcessBrokerConformance(DistributedAdapterConformance):
    """The suite's distributed half, run against the in-process fake broker
    (keeps the suite itself honest before a real broker adapter uses it)."""

    @pytest.fixture
    def broker(self) -> InProcessBroker:
        return InProcessBroker()

    @pytest.fixture
    def make_adapter(self, broker: InProcessBroker) -> AdapterFactory:
        return broker.adapter

    @pytest.fixture
    def backend_outage(self, broker: InProcessBroker) -> BackendOutage:
        return BackendOutage(stop=broker.stop, start=broker.start)


class TestInProcessBrokerHistoryConformance(DistributedAdapterConformance):
    """The history cases of the distributed suite against the fake broker, whose
    outage loses the history (a new epoch), like Redis without persistence."""

    @pytest.fixture
    def broker(self) -> InProcessBroker:
        return InProcessBroker(history=True, lose_history=True)

    @pytest.fixture
    def make_adapter(self, broker: InProcessBroker) -> AdapterFactory:
        return broker.adapter

    @pytest.fixture
    def backend_outage(self, broker: InProcessBroker) -> BackendOutage:
        return BackendOutage(stop=broker.stop, start=broker.start)
