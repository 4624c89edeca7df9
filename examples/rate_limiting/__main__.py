"""Run the rate limiting example: ``python -m examples.rate_limiting [--redis URL]``."""

from __future__ import annotations

import argparse
import asyncio

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server

from .app import authenticate, build_router, demo, memory_limiter, redis_limiter


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.rate_limiting")
    parser.add_argument("--redis", metavar="URL", help="use a Redis limiter (default: memory)")
    args = parser.parse_args()
    redis_client = None
    if args.redis:
        import redis.asyncio as redis

        redis_client = redis.Redis.from_url(args.redis)
    limiter = redis_limiter(redis_client) if redis_client else memory_limiter()
    app = create_app(build_router(limiter), authenticate=authenticate)
    try:
        async with loopback_server(app) as server:
            for line in await demo(server.url):
                print(line)
    finally:
        if redis_client is not None:
            await redis_client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
