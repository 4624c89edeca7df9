"""Several real aiohttp servers sharing one (private) Redis, real WebSocket clients.

- a publish on one instance reaches every subscriber on every instance exactly once;
- Redis is killed and restarted mid-stream: every publish during the outage is
  reported failed to the publishing client, delivery resumes afterwards, and
  subscribers got exactly the publishes reported ok (nothing silently lost);
- Redis is restarted several times under steady publishing (50/s from
  instance A, one subscriber on instance B): no publish reported ok is lost
  (at most those of the first 100 ms after Redis is back: pub/sub cannot know
  a peer's subscriptions) and delivery resumes within 1 s;
- a rate limit is shared across instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
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


RATE = 50  # publishes per second
RESTARTS = 3
#: Delivery across instances resumes within this long after Redis is back.
RESUME_BOUND = 1.0
#: Publishes reported ok may be lost only if sent this soon after Redis is back.
LOSS_WINDOW = 0.1


class Stream:
    """A publisher client on instance A sending ``SAY {"n"}`` at ``RATE``/s (a
    paced loop), and a subscriber client on instance B; records when each
    publish was sent, its result, and when the subscriber got it."""

    def __init__(self, publisher: Client, subscriber: Client) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.sent: dict[int, float] = {}
        self.results: dict[Any, dict[str, Any]] = {}
        self.received: dict[Any, float] = {}
        self.duplicates: list[Any] = []
        self.changed = asyncio.Event()
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Stream:
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._pace()),
            loop.create_task(self._results()),
            loop.create_task(self._deliveries()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(RATE * 60):  # bounded: a minute of publishing at most
            if self.stopping:
                return
            await self.publisher.send("SAY", {"n": n})
            self.sent[n] = time.monotonic()
            delay = start + (n + 1) / RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _results(self) -> None:
        while True:
            frame = await self.publisher.ws.receive()
            assert frame.type == aiohttp.WSMsgType.TEXT, frame
            payload = json.loads(frame.data)["payload"]
            self.results[payload["n"]] = payload
            self.changed.set()

    async def _deliveries(self) -> None:
        while True:
            frame = await self.subscriber.ws.receive()
            assert frame.type == aiohttp.WSMsgType.TEXT, frame
            n = json.loads(frame.data)["payload"]["n"]
            if n in self.received:
                self.duplicates.append(n)
            self.received.setdefault(n, time.monotonic())
            self.changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Re-check ``predicate`` on every frame until it holds (or fail)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not within {timeout}s: {what}")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def since(self, t: float, ok: bool) -> int:
        return sum(
            1 for n, r in list(self.results.items()) if self.sent.get(n, 0) >= t and r["ok"] is ok
        )


async def test_restarts_under_steady_publishing_lose_no_publish_reported_ok(
    redis_server: RedisServer,
) -> None:
    async with (
        instances(redis_server, 2) as (a, b),
        aiohttp.ClientSession() as session,
        clients(session, [b.server.url]) as (subscriber,),
        clients(session, [a.server.url]) as (publisher,),
    ):
        await join_all([subscriber])
        backs: list[float] = []
        kills: list[float] = []
        resumed: list[float] = []
        async with Stream(publisher, subscriber) as stream:
            steady_since = time.monotonic()
            for _ in range(RESTARTS):
                await stream.wait(
                    lambda t=steady_since: stream.since(t, ok=True) >= 15, 10, "steady"
                )
                await redis_server.kill()
                killed = time.monotonic()
                kills.append(killed)
                await stream.wait(lambda t=killed: stream.since(t, ok=False) >= 10, 10, "refused")
                back = time.monotonic()  # Redis is back at the earliest now
                await redis_server.start()
                backs.append(back)

                def delivered_since(t: float = back) -> list[float]:
                    return [
                        at for n, at in list(stream.received.items())
                        if stream.sent.get(n, 0) >= t
                    ]  # fmt: skip

                await stream.wait(lambda: bool(delivered_since()), 10, "delivery resumed")
                resumed.append(min(delivered_since()) - back)
                steady_since = time.monotonic()
            await stream.wait(lambda: stream.since(steady_since, ok=True) >= 5, 10, "steady")
            stream.stopping = True
            await stream.wait(lambda: len(stream.results) == len(stream.sent), 10, "results")
            # Pub/sub keeps each subscriber's order: once a marker published
            # last arrives, every earlier message that will ever arrive has.
            await publisher.send("SAY", {"n": "marker"})
            # (Its delivery through the other instance and the publisher's own answer
            # race each other: wait for both.)
            await stream.wait(
                lambda: "marker" in stream.received and "marker" in stream.results, 10, "marker"
            )
            assert stream.results["marker"]["ok"]

        ok = [n for n, r in stream.results.items() if r["ok"] and n != "marker"]
        refused = [n for n, r in stream.results.items() if not r["ok"]]
        lost = [n for n in ok if n not in stream.received]
        # Redis answers PUBLISH before it has written the message to every
        # subscriber: one it accepted just before it was killed can be lost
        # (sent in the last publishing period before a kill).
        at_kill = [n for n in lost if any(0 <= k - stream.sent[n] <= 1 / RATE for k in kills)]
        after_back = [n for n in lost if n not in at_kill]
        figures = (
            f"{len(stream.sent)} publishes, {len(ok)} ok, {len(refused)} refused; "
            f"lost-ok after Redis was back: {len(after_back)} {after_back}, "
            f"accepted just before the kill: {len(at_kill)} {at_kill}; delivery resumed "
            f"{', '.join(f'{r * 1000:.0f}' for r in resumed)} ms after Redis was back"
        )
        print(f"\nredis restarts under {RATE}/s: {figures}")
        assert all(
            stream.results[n] == {
                "n": n, "ok": False, "error": "ADAPTER_ERROR", "retryable": True
            }
            for n in refused
        )  # fmt: skip
        assert len(refused) >= 10 * RESTARTS
        assert stream.duplicates == []
        for n in after_back:  # only in the first 100 ms after Redis was back, if ever
            assert any(0 <= stream.sent[n] - t <= LOSS_WINDOW for t in backs), figures
        assert all(r <= RESUME_BOUND for r in resumed), figures
        for inst in (a, b):
            health = inst.adapter.health()
            assert (health.reconnects, health.connected) == (RESTARTS, True)


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
