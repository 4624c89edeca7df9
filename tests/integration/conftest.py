"""Fixtures for cross-package integration tests: a private redis-server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
