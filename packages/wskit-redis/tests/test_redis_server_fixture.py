"""wskit.redis.testing.RedisServer: private servers, kill and restart on the same port."""

from __future__ import annotations

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from wskit.redis.testing import RedisServer, RedisServerMissing


async def test_private_server_on_a_free_port(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    assert redis_server.running
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping() is True
        assert await client.config_get("save") == {"save": ""}
        assert await client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        await client.aclose()


async def test_kill_and_restart_on_the_same_port(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        await client.set("k", "v")
        port = redis_server.port
        await redis_server.kill()
        assert not redis_server.running
        with pytest.raises(RedisConnectionError):
            await client.get("k")
        await redis_server.start()
        assert (redis_server.port, redis_server.starts) == (port, 2)
        assert await client.get("k") is None  # persistence is off
    finally:
        await client.aclose()


def test_missing_binary_is_an_error_not_a_skip() -> None:
    with pytest.raises(RedisServerMissing, match="apt-get install redis-server"):
        RedisServer(executable="redis-server-that-does-not-exist")
