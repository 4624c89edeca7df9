"""wskit.pubsub's adapter conformance suite, on a real (private) Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from wskit.pubsub.testing import AdapterFactory, DistributedAdapterConformance
from wskit.redis import redis_pubsub


class TestRedisPubSubConformance(DistributedAdapterConformance):
    @pytest.fixture
    def make_adapter(self, redis_client: redis.Redis) -> AdapterFactory:
        # Every call is a new "server instance" on the same Redis.
        return lambda: redis_pubsub(redis_client, channel_prefix="conformance:")
