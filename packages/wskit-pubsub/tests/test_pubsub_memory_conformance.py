"""The in-memory adapter passes the shared adapter conformance suite."""

from __future__ import annotations

import pytest

from wskit.pubsub import MemoryPubSub
from wskit.pubsub.testing import (
    AdapterConformance,
    AdapterFactory,
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
    def make_adapter(self) -> AdapterFactory:
        return InProcessBroker().adapter
