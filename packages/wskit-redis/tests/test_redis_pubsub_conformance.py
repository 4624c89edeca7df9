"""wskit.pubsub's adapter conformance suite, on a real (private) Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from wskit.pubsub.testing import AdapterFactory, BackendOutage, DistributedAdapterConformance
from wskit.redis import redis_pubsub
from wskit.redis.testing import RedisServer


class TestRedisPubSubConformance(DistributedAdapterConformance):
    @pytest.fixture
    def make_adapter(self, redis_client: redis.Redis) -> AdapterFactory:
        # Every call is a new "server instance" on the same Redis.
        return lambda: redis_pubsub(redis_client, channel_prefix="conformance:")

    @pytest.fixture
    def backend_outage(self, redis_server: RedisServer) -> BackendOutage:
        # SIGKILL and restart on the same port (an empty Redis).
        return BackendOutage(stop=redis_server.kill, start=redis_server.start)
