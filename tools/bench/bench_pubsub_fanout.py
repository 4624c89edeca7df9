"""Fan-out benchmark: one publish delivered to 1,000 and 10,000 WebSocket subscribers.

Run: ``hatch run bench:python tools/bench/bench_pubsub_fanout.py [--sizes 1000,10000]``

Three servers, each in its own process, serve the same number of real loopback
WebSocket connections opened by a load generator in another process:

- ``wskit``: a wskit router on ``wskit.aiohttp`` (default options) with
  ``with_pubsub()`` (in-memory adapter); every connection subscribes to one
  topic in ``on_open``; each round is one ``router.publish(topic, Chat, {...})``.
- ``raw``: a bare aiohttp WebSocket server; each round is
  ``for ws in sockets: await ws.send_str(frame)`` with the same frame,
  serialized beforehand (the floor any aiohttp-based server can reach).
- ``socketio``: python-socketio ``AsyncServer`` on aiohttp; every client joins
  a room; each round is ``await sio.emit("chat", {...}, room=...)``.

Each target is run ``--repeats`` times (interleaved), each run doing 2 warm-up
and 20 (N=1,000) or 7 (N=10,000) measured rounds. A round's time runs from
just before the publish call until the load generator reports (over a control
TCP connection) that every client has received that round's message.
deliveries/s = subscribers / round time; the median round is reported. The
load generator is a minimal asyncio WebSocket client (handshake and frame
parsing only), the same for all three servers, so that the client side costs
as little as possible. It also checks that every client got every message
exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

from _proc import free_port  # tools/bench/ is on sys.path

TOPIC = "bench:room"
TEXT = "hello from the benchmark"
WARMUP = 2


def rounds_for(n: int) -> int:
    return 20 if n <= 1000 else 7


# ======================================================================= servers


async def control_rounds(n: int, ctl_port: int, publish: Any, ready: asyncio.Event) -> list[float]:
    """Wait for the load generator, run warm-up + measured rounds, return times."""
    got_ctl: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def on_ctl(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got_ctl.set_result((r, w))

    ctl = await asyncio.start_server(on_ctl, "127.0.0.1", ctl_port)
    reader, writer = await got_ctl
    await asyncio.wait_for(ready.wait(), 600)
    writer.write(b"R")  # all clients are subscribed: start
    await writer.drain()
    times: list[float] = []
    total = WARMUP + rounds_for(n)
    for k in range(total):
        t0 = time.perf_counter()
        await publish(k)
        if os.environ.get("BENCH_DEBUG"):
            print(f"publish call {1000 * (time.perf_counter() - t0):.2f} ms", file=sys.stderr)
        ack = await reader.readexactly(1)
        t1 = time.perf_counter()
        assert ack == b"A"
        if k >= WARMUP:
            times.append(t1 - t0)
    writer.write(b"Q")
    await writer.drain()
    await reader.read()  # the generator closes when done checking
    ctl.close()
    return times


async def serve_wskit(n: int, port: int, ctl_port: int) -> list[float]:
    from aiohttp import web

    from wskit.aiohttp import create_app
    from wskit.pubsub import with_pubsub
    from wskit.pydantic import create_router, message, with_pydantic

    chat = message("CHAT", text=str, n=int)
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub())
    ready = asyncio.Event()
    opened = 0

    @router.on_open
    async def on_open(ctx: Any) -> None:
        nonlocal opened
        await ctx.topics.subscribe(TOPIC)
        opened += 1
        if opened == n:
            ready.set()

    async def publish(k: int) -> None:
        result = await router.publish(TOPIC, chat, {"text": TEXT, "n": k})
        assert result.ok and result.matched == n, result

    app = create_app(router, path="/ws")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    try:
        return await control_rounds(n, ctl_port, publish, ready)
    finally:
        await runner.cleanup()


async def serve_raw(n: int, port: int, ctl_port: int) -> list[float]:
    from aiohttp import WSMsgType, web

    sockets: list[web.WebSocketResponse] = []
    ready = asyncio.Event()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        if len(sockets) == n:
            ready.set()
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
        sockets.remove(ws)
        return ws

    async def publish(k: int) -> None:
        # Pre-serialized: the same bytes wskit sends for this round.
        frame = json.dumps(
            {"type": "CHAT", "meta": {}, "payload": {"text": TEXT, "n": k}},
            separators=(",", ":"),
        )
        for ws in sockets:
            await ws.send_str(frame)

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    try:
        return await control_rounds(n, ctl_port, publish, ready)
    finally:
        for ws in list(sockets):
            await ws.close()
        await runner.cleanup()


async def serve_socketio(n: int, port: int, ctl_port: int) -> list[float]:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(
        async_mode="aiohttp", ping_interval=600, ping_timeout=600, logger=False
    )
    app = web.Application()
    sio.attach(app)
    ready = asyncio.Event()
    joined = 0

    @sio.event  # type: ignore[untyped-decorator,misc]
    async def join(sid: str) -> None:
        nonlocal joined
        await sio.enter_room(sid, TOPIC)
        joined += 1
        if joined == n:
            ready.set()

    async def publish(k: int) -> None:
        await sio.emit("chat", {"text": TEXT, "n": k}, room=TOPIC)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    try:
        return await control_rounds(n, ctl_port, publish, ready)
    finally:
        await runner.cleanup()


SERVERS = {"wskit": serve_wskit, "raw": serve_raw, "socketio": serve_socketio}


# ================================================================ load generator


def client_frame(text: str) -> bytes:
    """A masked text frame (clients must mask)."""
    data = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data)]) + mask + masked


class Counter:
    def __init__(self, n: int) -> None:
        self.n = n
        self.total = 0
        self.target = n
        self.done: asyncio.Event = asyncio.Event()

    def hit(self) -> None:
        self.total += 1
        if self.total >= self.target:
            self.done.set()


class Client(asyncio.Protocol):
    """Minimal WebSocket client: handshake, then count text frames."""

    def __init__(self, counter: Counter, path: str, socketio: bool) -> None:
        self.counter = counter
        self.path = path
        self.socketio = socketio
        self.buf = bytearray()
        self.handshaken = False
        self.received = 0
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.joined.set_exception(RuntimeError(bytes(buf[:200]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self.handshaken = True
            if not self.socketio and not self.joined.done():
                self.joined.set_result(None)
        while len(buf) >= 2:
            length = buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = struct.unpack_from("!H", buf, 2)[0]
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = struct.unpack_from("!Q", buf, 2)[0]
                offset = 10
            if len(buf) < offset + length:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[offset : offset + length])
            del buf[: offset + length]
            if opcode == 0x1:
                self.on_text(payload)

    def on_text(self, payload: bytes) -> None:
        if not self.socketio:
            self.received += 1
            self.counter.hit()
            return
        assert self.transport is not None
        if payload.startswith(b"42"):
            self.received += 1
            self.counter.hit()
        elif payload.startswith(b"0{"):
            self.transport.write(client_frame("40"))
        elif payload.startswith(b"40"):
            self.transport.write(client_frame('42["join"]'))
            if not self.joined.done():
                self.joined.set_result(None)
        elif payload == b"2":
            self.transport.write(client_frame("3"))


async def load_generator(kind: str, n: int, port: int, ctl_port: int) -> None:
    loop = asyncio.get_running_loop()
    counter = Counter(n)
    path = "/socket.io/?EIO=4&transport=websocket" if kind == "socketio" else "/ws"
    clients: list[Client] = []
    gate = asyncio.Semaphore(200)

    async def open_one() -> None:
        async with gate:
            _, proto = await loop.create_connection(
                lambda: Client(counter, path, kind == "socketio"), "127.0.0.1", port
            )
            clients.append(proto)
            await proto.joined

    await asyncio.gather(*(open_one() for _ in range(n)))
    reader, writer = await asyncio.open_connection("127.0.0.1", ctl_port)
    assert await reader.readexactly(1) == b"R"
    total = WARMUP + rounds_for(n)
    for k in range(1, total + 1):
        counter.target = n * k
        await counter.done.wait()
        counter.done.clear()
        writer.write(b"A")
    assert await reader.readexactly(1) == b"Q"
    counts = {c.received for c in clients}
    if counts != {total} or counter.total != n * total:
        raise SystemExit(f"delivery check failed: per-client counts {sorted(counts)[:5]}")
    for c in clients:
        assert c.transport is not None
        c.transport.close()
    writer.close()


# ================================================================== orchestrator


def run_one(kind: str, n: int) -> list[float]:
    port, ctl_port = free_port(), free_port()
    me = os.path.abspath(__file__)
    server = subprocess.Popen(
        [sys.executable, me, "--serve", kind, str(n), str(port), str(ctl_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until the server listens before starting the generator.
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.05)
        gen = subprocess.Popen(
            [sys.executable, me, "--generate", kind, str(n), str(port), str(ctl_port)]
        )
        out, _ = server.communicate(timeout=900)
        if gen.wait(timeout=120) != 0:
            raise RuntimeError(f"{kind}: load generator failed")
    finally:
        if server.poll() is None:
            server.kill()
    if server.returncode != 0:
        raise RuntimeError(f"{kind} server failed")
    return [float(x) for x in json.loads(out.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument(
        "--repeats", type=int, default=3, help="server runs per target, interleaved (default 3)"
    )
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "N", "PORT", "CTL"))
    parser.add_argument("--generate", nargs=4, metavar=("KIND", "N", "PORT", "CTL"))
    args = parser.parse_args()
    if args.serve:
        kind, n, port, ctl = args.serve
        times = asyncio.run(SERVERS[kind](int(n), int(port), int(ctl)))
        print(json.dumps(times))
        return
    if args.generate:
        kind, n, port, ctl = args.generate
        asyncio.run(load_generator(kind, int(n), int(port), int(ctl)))
        return

    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, aiohttp {version('aiohttp')}, "
        f"python-socketio {version('python-socketio')}, cpus {os.cpu_count()}"
    )
    print("one publish fanned out to N loopback WebSocket subscribers; median of all rounds\n")
    print(f"{'N':>6} {'server':>9} {'median ms':>10} {'deliveries/s':>13} {'rounds':>7}")
    summary: list[str] = []
    for n in (int(s) for s in args.sizes.split(",")):
        rates: dict[str, float] = {}
        samples: dict[str, list[float]] = {"wskit": [], "raw": [], "socketio": []}
        # Interleave the targets so that a burst of machine load hits all of them alike.
        for _ in range(args.repeats):
            for kind in samples:
                samples[kind].extend(run_one(kind, n))
        for kind, times in samples.items():
            med = statistics.median(times)
            rates[kind] = n / med
            print(f"{n:>6} {kind:>9} {med * 1000:>10.2f} {rates[kind]:>13,.0f} {len(times):>7}")
        vs_raw = rates["wskit"] / rates["raw"]
        vs_sio = rates["wskit"] / rates["socketio"]
        summary.append(
            f"N={n}: wskit/raw = {vs_raw:.2f}x (target >= 0.8x: "
            f"{'met' if vs_raw >= 0.8 else 'NOT met'}), wskit/python-socketio = {vs_sio:.2f}x "
            f"(target >= 3x: {'met' if vs_sio >= 3 else 'NOT met'})"
        )
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
