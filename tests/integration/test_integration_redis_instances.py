"""Several real aiohttp servers sharing one (private) Redis, real WebSocket clients.

- a publish on one instance reaches every subscriber on every instance exactly once;
- Redis is killed and restarted mid-stream: every publish during the outage is
  reported failed to the publishing client, delivery resumes afterwards, and
  subscribers got exactly the publishes reported ok (nothing silently lost);
- a rate limit is shared across instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import LoopbackServer, loopback_server
from wskit.core import any_object, create_router, define_message
from wskit.pubsub import get_pubsub, with_pubsub
from wskit.ratelimit import rate_limit
from wskit.redis import RedisPubSub, redis_pubsub, redis_rate_limiter
from wskit.redis.testing import RedisServer

Join = define_message("JOIN", any_object())
Joined = define_message("JOINED", any_object())
Say = define_message("SAY", any_object())
Published = define_message("PUBLISHED", any_object())
Chat = define_message("CHAT", any_object())
Ping = define_message("PING", any_object())
Pong = define_message("PONG", any_object())

TIMEOUT = 5.0


@dataclass
class Instance:
    server: LoopbackServer
    adapter: RedisPubSub
    client: redis.Redis


def make_router(adapter: RedisPubSub, client: redis.Redis) -> Any:
    router = create_router().plugin(with_pubsub(adapter))
    limiter = redis_rate_limiter(client, capacity=3, tokens_per_second=0.001, prefix="it:")

    @router.on(Join)
    async def join(ctx: Any) -> None:
        await ctx.topics.subscribe(ctx.payload["topic"])
        ctx.send(Joined, {"topic": ctx.payload["topic"]})

    @router.on(Say)
    async def say(ctx: Any) -> None:
        result = await ctx.publish("room", Chat, {"n": ctx.payload["n"]})
        ctx.send(
            Published,
            {"n": ctx.payload["n"], "ok": result.ok, "error": result.error,
             "retryable": result.retryable},
        )  # fmt: skip

    @router.on(Ping, middleware=[rate_limit(limiter=limiter)])
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {})

    return router


@contextlib.asynccontextmanager
async def instances(redis_server: RedisServer, count: int) -> AsyncIterator[list[Instance]]:
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            client = redis.Redis.from_url(redis_server.url)
            stack.push_async_callback(client.aclose)
            adapter = redis_pubsub(client, channel_prefix="it:")  # library defaults
            router = make_router(adapter, client)
            stack.push_async_callback(get_pubsub(router).close)
            app = create_app(
                router, path="/ws", authenticate=lambda req: {"user_id": req.query["user"]}
            )
            server = await stack.enter_async_context(loopback_server(app, path="/ws"))
            out.append(Instance(server, adapter, client))
        yield out


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, type_: str, payload: Any) -> None:
        await self.ws.send_str(json.dumps({"type": type_, "meta": {}, "payload": payload}))

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame: dict[str, Any] = json.loads(msg.data)
        return frame

    async def expect(self, type_: str) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == type_, frame
        return frame


@contextlib.asynccontextmanager
async def clients(
    session: aiohttp.ClientSession, urls: list[str], user: str = "u"
) -> AsyncIterator[list[Client]]:
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for url in urls:
            ws = await stack.enter_async_context(session.ws_connect(f"{url}?user={user}"))
            out.append(Client(ws))
        yield out


async def join_all(subscribers: list[Client]) -> None:
    for c in subscribers:
        await c.send("JOIN", {"topic": "room"})
        assert (await c.expect("JOINED"))["payload"] == {"topic": "room"}


async def test_publish_reaches_every_subscriber_on_every_instance_once(
    redis_server: RedisServer,
) -> None:
    async with instances(redis_server, 3) as insts, aiohttp.ClientSession() as session:
        urls = [i.server.url for i in insts for _ in range(2)]  # two clients per instance
        async with (
            clients(session, urls) as subs,
            clients(session, [insts[1].server.url]) as (publisher,),
        ):
            await join_all(subs)
            for n in range(30):
                await publisher.send("SAY", {"n": n})
            results = [(await publisher.expect("PUBLISHED"))["payload"] for _ in range(30)]
            assert all(r["ok"] for r in results)
            for c in subs:
                got = [(await c.expect("CHAT"))["payload"]["n"] for _ in range(30)]
                assert got == list(range(30))
            # Exactly once: a marker published afterwards is the very next frame.
            await publisher.send("SAY", {"n": "marker"})
            assert (await publisher.expect("PUBLISHED"))["payload"]["ok"]
            for c in subs:
                assert (await c.expect("CHAT"))["payload"] == {"n": "marker"}
        assert sum(i.adapter.health().received for i in insts) == 3 * 31


async def test_redis_restart_mid_stream(redis_server: RedisServer) -> None:
    async with instances(redis_server, 2) as insts, aiohttp.ClientSession() as session:
        urls = [insts[0].server.url, insts[1].server.url, insts[1].server.url]
        async with (
            clients(session, urls) as subs,
            clients(session, [insts[0].server.url]) as (publisher,),
        ):
            await join_all(subs)
            reported: dict[int, dict[str, Any]] = {}

            async def say(n: int) -> dict[str, Any]:
                await publisher.send("SAY", {"n": n})
                result: dict[str, Any] = (await publisher.expect("PUBLISHED"))["payload"]
                reported[n] = result
                return result

            for n in range(0, 10):
                assert (await say(n))["ok"]
            for c in subs:
                assert [(await c.expect("CHAT"))["payload"]["n"] for _ in range(10)] == list(
                    range(10)
                )

            await redis_server.kill()
            for n in range(10, 20):
                result = await say(n)
                assert result == {"n": n, "ok": False, "error": "ADAPTER_ERROR", "retryable": True}
            assert not any(i.adapter.health().connected for i in insts)

            await redis_server.start()
            await asyncio.gather(*(i.adapter.wait_publish_ready(TIMEOUT) for i in insts))
            assert all(i.adapter.health().reconnects == 1 for i in insts)
            for n in range(20, 30):
                assert (await say(n))["ok"]
            delivered_ok = [n for n, r in sorted(reported.items()) if r["ok"]]
            assert delivered_ok == [*range(10), *range(20, 30)]
            for c in subs:
                got = [(await c.expect("CHAT"))["payload"]["n"] for _ in range(10)]
                assert got == list(range(20, 30))  # resumed; the outage ones were reported failed


async def test_rate_limit_is_shared_across_instances(redis_server: RedisServer) -> None:
    async with instances(redis_server, 2) as insts, aiohttp.ClientSession() as session:
        urls = [insts[0].server.url, insts[1].server.url]
        async with (
            clients(session, urls, user="alice") as (a, b),
            clients(session, urls[:1], user="bob") as (bob,),
        ):
            frames = []
            for c in (a, b, a, b):
                await c.send("PING", {})
                frames.append(await c.recv())
            assert [f["type"] for f in frames] == ["PONG", "PONG", "PONG", "ERROR"]
            assert frames[3]["payload"]["code"] == "RESOURCE_EXHAUSTED"
            assert frames[3]["payload"]["details"] == {"cost": 1, "capacity": 3, "remaining": 0}
            await bob.send("PING", {})  # another user: another bucket
            assert (await bob.recv())["type"] == "PONG"


pytestmark = pytest.mark.timeout(60)
