"""One instance of the fan-out example:
``python -m examples.redis_fanout.server --name one --port 3001 --redis redis://127.0.0.1:6379/0``.

Every instance subscribes its own connections' rooms in Redis and publishes through Redis,
so a message said on one instance reaches the room's members on every instance."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import redis.asyncio as redis
from aiohttp import web

from wskit.aiohttp import create_app, serve_async
from wskit.pubsub import get_pubsub, with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic
from wskit.redis import redis_pubsub

Join = rpc("JOIN", {"room": str}, "JOINED", {"room": str, "instance": str})
Say = message("SAY", room=str, text=str)
Said = message("SAID", room=str, text=str, user=str, instance=str)


def build_app(redis_url: str, name: str) -> web.Application:
    client = redis.Redis.from_url(redis_url)
    adapter = redis_pubsub(client, channel_prefix="fanout:")
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub(adapter))

    @router.rpc(Join)
    async def join(ctx: Any) -> None:
        await ctx.topics.subscribe(f"room:{ctx.payload.room}")  # confirmed by Redis on return
        ctx.reply({"room": ctx.payload.room, "instance": name})

    @router.on(Say)
    async def say(ctx: Any) -> None:
        said = {**ctx.payload.model_dump(), "user": ctx.data["user"], "instance": name}
        result = await ctx.publish(f"room:{ctx.payload.room}", Said, said)
        if not result.ok:  # Redis down: tell the sender, never fail silently
            ctx.error("UNAVAILABLE", f"not delivered: {result.error}")

    def authenticate(request: web.Request) -> dict[str, str]:
        return {"user": request.query.get("user", "anon")}

    async def close(app: web.Application) -> None:
        await get_pubsub(router).close()
        await client.aclose()

    app = create_app(router, authenticate=authenticate)
    app.on_cleanup.append(close)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.redis_fanout.server")
    parser.add_argument("--name", required=True, help="this instance's name")
    parser.add_argument("--port", type=int, default=3000, help="(default: %(default)s)")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="(default: %(default)s)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_async(build_app(args.redis, args.name), port=args.port))


if __name__ == "__main__":
    main()
