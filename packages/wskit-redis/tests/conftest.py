"""Fixtures: a private redis-server per test (never the machine's own Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from wskit.redis.testing import RedisServer


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A fresh redis-server on a free loopback port; a missing binary fails the test."""
    server = RedisServer()
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
