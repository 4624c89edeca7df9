"""What topic history costs on Redis: throughput against a plain topic, resume time.

Run: ``hatch run bench:python tools/bench/bench_history.py`` (needs redis-server;
loopback only, bounded, one run, prints every figure).

- Throughput (same process, same private redis-server): two instances A and B,
  one subscriber on B; ``MESSAGES`` publishes from ``router_a.publish`` in
  windows of ``WINDOW`` concurrent calls, to a plain topic (``PUBLISH``) and to
  a history topic (the append-and-publish script, ``MAXLEN`` 1000); messages/s
  from the first publish to the last hand-off on B's connection. Rounds
  alternate plain/history so machine load hits both alike; the ratio is
  history / plain (target >= 0.5).
- Resume: ``MISSED`` messages published to a history topic while nobody
  listens; then a raw WebSocket client of instance B (aiohttp on loopback)
  sends ``FOLLOW`` with the position it had; time from sending it to the last
  replayed frame read by the client. Also with the in-memory adapter, same
  server code, for comparison.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from importlib.metadata import version
from typing import Any

import aiohttp
import redis.asyncio as redis
from _drivers import Sink  # tools/bench/ is on sys.path
from aiohttp import web

from wskit.aiohttp import create_app
from wskit.core import any_object, create_router, define_message
from wskit.pubsub import HistoryPolicy, MemoryPubSub, get_pubsub, with_pubsub
from wskit.redis import redis_pubsub
from wskit.redis.testing import RedisServer

MESSAGES = 20_000
WINDOW = 64
ROUNDS = 3
MISSED = 10_000
DEADLINE_S = 120.0

Chat = define_message("CHAT", any_object())
Follow = define_message("FOLLOW", any_object())


class CountingTransport:
    """B's connection: counts the frames written (no socket)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def send(self, frame: str) -> None:
        if frame.startswith('{"type":"CHAT"'):
            self.sink.hit()

    async def ping(self) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


async def throughput(url: str) -> tuple[list[float], list[float]]:
    history = {"feed:*": HistoryPolicy(max_messages=1000)}
    client_a, client_b = redis.Redis.from_url(url), redis.Redis.from_url(url)
    router_a = create_router().plugin(
        with_pubsub(redis_pubsub(client_a, channel_prefix="bench:"), history=history)
    )
    router_b = create_router().plugin(
        with_pubsub(redis_pubsub(client_b, channel_prefix="bench:"), history=history)
    )
    sink = Sink(DEADLINE_S)
    await get_pubsub(router_a).start()
    conn = router_b.connect({}, max_buffered_bytes=1 << 30)
    pump = asyncio.get_running_loop().create_task(conn.pump(CountingTransport(sink)))
    await conn.open()
    topics = get_pubsub(router_b).topics(conn)
    await topics.subscribe("room")
    await topics.subscribe("feed:room")
    plain: list[float] = []
    hist: list[float] = []

    async def run(topic: str) -> float:
        async def publish(i: int) -> None:
            result = await router_a.publish(topic, Chat, {"i": i, "text": "hello world"})
            if not result.ok:
                raise RuntimeError(f"publish failed: {result}")

        base = sink.count
        start = time.perf_counter()
        for first in range(0, MESSAGES, WINDOW):
            last = min(first + WINDOW, MESSAGES)
            await asyncio.gather(*(publish(i) for i in range(first, last)))
        await sink.until(base + MESSAGES)
        return MESSAGES / (sink.last_at - start)

    try:
        await run("room")  # warm-up (connections, script load)
        await run("feed:room")
        for _ in range(ROUNDS):
            plain.append(await run("room"))
            hist.append(await run("feed:room"))
        return plain, hist
    finally:
        await conn.handle_close(1000, "")
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await get_pubsub(router_a).close()
        await get_pubsub(router_b).close()
        await client_a.aclose()
        await client_b.aclose()


async def resume(adapter: Any, publisher_adapter: Any) -> tuple[float, int]:
    """``MISSED`` publishes, then a client of B resumes from before them over a
    real socket; returns (seconds, frames replayed)."""
    history = {"feed:*": HistoryPolicy(max_messages=MISSED * 2)}
    router_b = create_router().plugin(with_pubsub(adapter, history=history))
    router_a = (
        router_b
        if publisher_adapter is adapter
        else create_router().plugin(with_pubsub(publisher_adapter, history=history))
    )

    @router_b.on(Follow)
    async def follow(ctx: Any) -> None:
        await ctx.topics.subscribe(ctx.payload["topic"], since=ctx.payload.get("since"))

    runner = web.AppRunner(create_app(router_b, path="/ws"), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        page = await adapter.read_history("feed:resume", None, limit=1, policy=history["feed:*"])
        since = {"epoch": page.epoch, "offset": page.top}
        for first in range(0, MISSED, WINDOW):
            results = await asyncio.gather(
                *(
                    router_a.publish("feed:resume", Chat, {"i": i, "text": "hello world"})
                    for i in range(first, min(first + WINDOW, MISSED))
                )
            )
            if not all(r.ok for r in results):
                raise RuntimeError("publish failed")
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"ws://127.0.0.1:{port}/ws", max_msg_size=0) as ws,
        ):
            payload = {"topic": "feed:resume", "since": since}
            frame = {"type": "FOLLOW", "meta": {}, "payload": payload}
            start = time.perf_counter()
            await ws.send_str(json.dumps(frame))
            got = 0
            for _ in range(MISSED + 10):
                msg = await asyncio.wait_for(ws.receive(), DEADLINE_S)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"unexpected {msg}")
                if msg.data.startswith('{"type":"CHAT"'):
                    got += 1
                    if got == MISSED:
                        break
            return time.perf_counter() - start, got
    finally:
        await runner.cleanup()
        await get_pubsub(router_b).close()
        if router_a is not router_b:
            await get_pubsub(router_a).close()


async def main() -> None:
    print(f"wskit bench_history (redis-py {version('redis')}, aiohttp {version('aiohttp')})")
    async with RedisServer() as server:
        plain, hist = await throughput(server.url)
        ratio = statistics.median(h / p for h, p in zip(hist, plain, strict=True))
        print(f"\nthroughput, {MESSAGES} publishes from A, {WINDOW} concurrent, 1 subscriber on B")
        print(f"  plain topic     msgs/s: {', '.join(f'{r:.0f}' for r in plain)}")
        print(f"  history topic   msgs/s: {', '.join(f'{r:.0f}' for r in hist)}")
        print(f"  history / plain (median of {ROUNDS} paired rounds): {ratio:.2f}x (target 0.5x)")

        client_a, client_b = redis.Redis.from_url(server.url), redis.Redis.from_url(server.url)
        try:
            seconds, got = await resume(
                redis_pubsub(client_b, channel_prefix="bench-resume:"),
                redis_pubsub(client_a, channel_prefix="bench-resume:"),
            )
        finally:
            await client_a.aclose()
            await client_b.aclose()
        print(f"\nresume of {MISSED} missed messages over a loopback WebSocket")
        print(f"  redis  (published on A, resumed on B): {seconds * 1000:.0f} ms for {got} frames")
    memory = MemoryPubSub()
    seconds, got = await resume(memory, memory)
    print(f"  memory (same instance):               {seconds * 1000:.0f} ms for {got} frames")


if __name__ == "__main__":
    asyncio.run(main())
