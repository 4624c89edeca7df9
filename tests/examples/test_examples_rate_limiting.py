"""examples/rate_limiting: the same behaviour with the memory and the Redis limiter, and two
server instances on one Redis share a user's bucket."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from examples.rate_limiting.app import (
    CAPACITY,
    authenticate,
    build_router,
    burst,
    demo,
    memory_limiter,
    redis_limiter,
)
from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server
from wskit.client import Client
from wskit.redis.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = [
    "8 at once: 5 passed, 3 refused with retryAfterMs",
    "8 more, one at a time with a RetryPolicy: all 8 passed",
]


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_memory_limiter() -> None:
    app = create_app(build_router(memory_limiter()), authenticate=authenticate)
    async with loopback_server(app) as server:
        assert await demo(server.url) == EXPECTED


async def test_redis_limiter(redis_client: redis.Redis) -> None:
    app = create_app(build_router(redis_limiter(redis_client)), authenticate=authenticate)
    async with loopback_server(app) as server:
        assert await demo(server.url) == EXPECTED


async def test_two_instances_share_one_bucket(redis_url: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]  # one per instance
    apps = [create_app(build_router(redis_limiter(c)), authenticate=authenticate) for c in clients]
    async with loopback_server(apps[0]) as one, loopback_server(apps[1]) as two:  # noqa: SIM117
        async with Client(one.url + "?user=ada") as a, Client(two.url + "?user=ada") as b:
            passed_one, _ = await burst(a, CAPACITY)
            passed_two, waits = await burst(b, 3)
            async with Client(two.url + "?user=bob") as bob:
                passed_bob, _ = await burst(bob, 3)
    for client in clients:
        await client.aclose()
    assert (passed_one, passed_two, passed_bob) == (CAPACITY, 0, 3)
    assert len(waits) == 3 and all(0 < w <= 1000 for w in waits)


async def test_runs_with_redis_as_documented(redis_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.rate_limiting",
        "--redis",
        redis_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, err) == (0, b"")
    assert out.decode().splitlines() == EXPECTED
