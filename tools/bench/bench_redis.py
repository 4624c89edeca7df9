"""Cross-instance pub/sub over one Redis: wskit vs python-socketio, plus limiter rate.

Run: ``hatch run bench:python tools/bench/bench_redis.py`` (needs redis-server and
python-socketio; loopback only, bounded, one run, prints every figure).

Setup (same process, same event loop, same private redis-server for both):

- two "instances" A and B; B has one local subscriber to the topic/room, A has none;
- wskit: ``router_a.publish(topic, ...)`` through ``with_pubsub(redis_pubsub(...))``
  → Redis → B's adapter → B's plugin fan-out (frame serialized, queued on B's
  connection, whose transport discards it);
- python-socketio: ``AsyncRedisManager.emit(event, data, room=...)`` on A → Redis →
  B's manager → ``AsyncServer._send_eio_packet`` for B's participant (patched to
  record, not send);
- latency: one message in flight at a time, publish call to B's hand-off (p50, p99);
- throughput: ``MESSAGES`` publishes issued in windows of ``WINDOW`` concurrent
  calls; messages/s from the first publish to the last hand-off on B;
- limiter: ``redis_rate_limiter.consume`` decisions/s, sequential and ``WINDOW``
  concurrent.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import redis.asyncio as redis
from _drivers import Sink  # tools/bench/ is on sys.path

try:
    import socketio
except ImportError:  # pragma: no cover - the comparison needs it
    sys.exit("bench_redis needs python-socketio (pip install python-socketio) for the comparison")

from wskit.core import any_object, create_router, define_message
from wskit.pubsub import PublishEnvelope, get_pubsub, with_pubsub
from wskit.redis import redis_pubsub, redis_rate_limiter
from wskit.redis.testing import RedisServer

LATENCY_SAMPLES = 2_000
MESSAGES = 20_000
WINDOW = 64  # concurrent publishes; stays below redis-py's default pool size (socketio)
LIMITER_DECISIONS = 20_000
LIMITER_WINDOW = 64  # below redis-py's default pool size
DEADLINE_S = 60.0

Chat = define_message("CHAT", any_object())


class NullTransport:
    async def send(self, frame: str) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


async def measure(
    publish: Callable[[int], Awaitable[Any]], sink: Sink
) -> tuple[float, float, float]:
    # Latency: one in flight.
    samples = []
    for i in range(LATENCY_SAMPLES):
        start = time.perf_counter()
        base = sink.count
        await publish(i)
        await sink.until(base + 1)
        samples.append((sink.last_at - start) * 1000.0)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    # Throughput: windows of concurrent publishes.
    base = sink.count
    start = time.perf_counter()
    for first in range(0, MESSAGES, WINDOW):
        await asyncio.gather(*(publish(i) for i in range(first, min(first + WINDOW, MESSAGES))))
    await sink.until(base + MESSAGES)
    rate = MESSAGES / (sink.last_at - start)
    return p50, p99, rate


async def bench_wskit(url: str) -> tuple[float, float, float]:
    client_a, client_b = redis.Redis.from_url(url), redis.Redis.from_url(url)
    adapter_a = redis_pubsub(client_a, channel_prefix="bench:")
    adapter_b = redis_pubsub(client_b, channel_prefix="bench:")
    router_a = create_router().plugin(with_pubsub(adapter_a))
    router_b = create_router().plugin(with_pubsub(adapter_b))
    sink = Sink(DEADLINE_S)
    pubsub_b = get_pubsub(router_b)
    inner = pubsub_b.deliver

    def deliver(envelope: PublishEnvelope) -> int:
        n = inner(envelope)
        sink.hit()
        return n

    pubsub_b.deliver = deliver  # type: ignore[method-assign]
    await get_pubsub(router_a).start()
    conn = router_b.connect({}, max_buffered_bytes=1 << 30)
    pump = asyncio.get_running_loop().create_task(conn.pump(NullTransport()))
    await conn.open()
    await pubsub_b.topics(conn).subscribe("room")

    async def publish(i: int) -> None:
        result = await router_a.publish("room", Chat, {"i": i, "text": "hello world"})
        if not result.ok:
            raise RuntimeError(f"wskit publish failed: {result}")

    try:
        return await measure(publish, sink)
    finally:
        await conn.handle_close(1000, "")
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await get_pubsub(router_a).close()
        await pubsub_b.close()
        await client_a.aclose()
        await client_b.aclose()


async def bench_socketio(url: str) -> tuple[float, float, float]:
    mgr_a = socketio.AsyncRedisManager(url, channel="bench-sio")
    mgr_b = socketio.AsyncRedisManager(url, channel="bench-sio")
    server_a = socketio.AsyncServer(client_manager=mgr_a, async_mode="aiohttp")
    server_b = socketio.AsyncServer(client_manager=mgr_b, async_mode="aiohttp")
    sink = Sink(DEADLINE_S)

    async def send_eio_packet(eio_sid: str, pkt: Any) -> None:
        sink.hit()

    server_b._send_eio_packet = send_eio_packet  # type: ignore[method-assign]
    for server in (server_a, server_b):
        server.manager_initialized = True
        server.manager.initialize()
    sid = await mgr_b.connect("eio-1", "/")
    mgr_b.basic_enter_room(sid, "/", "room", eio_sid="eio-1")
    await mgr_a.connect("eio-0", "/")  # A knows the namespace, like a live server

    async def publish(i: int) -> None:
        await mgr_a.emit("chat", {"i": i, "text": "hello world"}, namespace="/", room="room")

    # Wait until both listeners are subscribed (their tasks subscribe on start).
    for _ in range(500):
        await publish(-1)
        try:
            await asyncio.wait_for(sink.until(sink.count + 1), 0.02)
            break
        except asyncio.TimeoutError:
            continue
    for _ in range(50):  # drain the warm-up echoes
        await asyncio.sleep(0.001)
    try:
        return await measure(publish, sink)
    finally:
        for mgr in (mgr_a, mgr_b):
            task = getattr(mgr, "thread", None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await mgr.redis.aclose()


async def bench_limiter(url: str) -> tuple[float, float]:
    client = redis.Redis.from_url(url)
    limiter = redis_rate_limiter(client, capacity=1_000_000, tokens_per_second=1_000_000)
    await limiter.consume("warm")
    start = time.perf_counter()
    for i in range(LIMITER_DECISIONS // 4):
        await limiter.consume(f"k{i % 100}")
    sequential = (LIMITER_DECISIONS // 4) / (time.perf_counter() - start)
    start = time.perf_counter()
    for first in range(0, LIMITER_DECISIONS, LIMITER_WINDOW):
        n = min(LIMITER_WINDOW, LIMITER_DECISIONS - first)
        await asyncio.gather(*(limiter.consume(f"k{(first + j) % 100}") for j in range(n)))
    concurrent = LIMITER_DECISIONS / (time.perf_counter() - start)
    await client.aclose()
    return sequential, concurrent


async def main() -> None:
    async with RedisServer() as server:
        versions = f"redis-py {version('redis')}; python-socketio {version('python-socketio')}"
        print(f"redis-server on {server.url}; python {sys.version.split()[0]}; {versions}")
        print(f"latency: {LATENCY_SAMPLES} sequential; throughput: {MESSAGES} msgs, "
              f"window {WINDOW}; one subscriber on instance B")  # fmt: skip
        w = await bench_wskit(server.url)
        s = await bench_socketio(server.url)
        seq, conc = await bench_limiter(server.url)
    print()
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}{'msgs/s':>12}")
    print(f"{'wskit redis_pubsub':28}{w[0]:>10.3f}{w[1]:>10.3f}{w[2]:>12.0f}")
    print(f"{'socketio AsyncRedisManager':28}{s[0]:>10.3f}{s[1]:>10.3f}{s[2]:>12.0f}")
    print(f"throughput ratio wskit / socketio: {w[2] / s[2]:.2f}x (target >= 2x)")
    print(f"p50 latency ratio socketio / wskit: {s[0] / w[0]:.2f}x")
    print()
    print(f"redis_rate_limiter: {seq:.0f} decisions/s sequential, "
          f"{conc:.0f} decisions/s with {LIMITER_WINDOW} concurrent")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
