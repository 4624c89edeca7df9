"""wskit-redis: Redis backends for wskit — pub/sub fan-out across server
instances and a token-bucket rate limiter shared by all of them.

::

    import redis.asyncio as redis
    from wskit.pubsub import with_pubsub
    from wskit.ratelimit import rate_limit
    from wskit.redis import redis_pubsub, redis_rate_limiter

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    router.plugin(with_pubsub(adapter=redis_pubsub(client, channel_prefix="app:")))
    router.use(rate_limit(limiter=redis_rate_limiter(client, capacity=10, tokens_per_second=2)))
"""

from __future__ import annotations

from wskit.redis.pubsub import RedisPubSub, RedisPubSubHealth, redis_pubsub
from wskit.redis.ratelimit import TOKEN_BUCKET_LUA, RedisRateLimiter, redis_rate_limiter

__all__ = [
    "TOKEN_BUCKET_LUA",
    "RedisPubSub",
    "RedisPubSubHealth",
    "RedisRateLimiter",
    "redis_pubsub",
    "redis_rate_limiter",
]
