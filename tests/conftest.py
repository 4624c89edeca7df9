"""Fixtures shared by the cross-package suites under ``tests/``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wskit.redis.testing import RedisServer


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A private redis-server on a free loopback port (never the machine's 6379); a
    missing binary fails the test."""
    async with RedisServer() as server:
        yield server
