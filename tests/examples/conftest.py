"""The examples are run from the repository root (``python -m examples.<name>``); their
tests import them the same way."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wskit.redis.testing import RedisServer

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A private redis-server on a free loopback port (never the machine's 6379)."""
    server = RedisServer()
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
