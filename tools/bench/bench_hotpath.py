"""The hot path end to end: wskit-aiohttp against a hand-written aiohttp server.

Run: ``hatch run bench:python tools/bench/bench_hotpath.py [--duration 4] [--runs 3]``
(``--loops asyncio,uvloop`` runs every server on both event loops; ``--only ping,rpc``
picks workloads; ``--servers raw,wskit-pydantic`` picks servers).

Servers, each in its own process pinned to CPU 0 (``sched_setaffinity``):

- ``raw``: a hand-written aiohttp server doing the same work as wskit: ``json.loads``,
  dispatch on ``type`` through a dict, strict pydantic models (unknown keys
  forbidden) for the payload, the reply envelope with the correlationId,
  ``json.dumps`` and ``send_str`` per frame;
- ``wskit-pydantic`` / ``wskit-attrs``: the same routes as a wskit router with
  ``wskit.pydantic`` / ``wskit.attrs`` schemas on ``wskit.aiohttp`` (defaults: wskit also
  validates every payload it sends, which the hand-written server does not);
- ``wskit-pydantic-trusted`` (only with ``--servers``): the same without validating what
  handlers send (``with_pydantic(validate_outgoing=False)``), to show what that check costs;
- ``wskit-pydantic-task`` (only with ``--servers``, Python 3.12+): the router option
  ``eager_start=False`` (each batch of frames is handled by a task that first runs at the
  event loop's next iteration, as on Python 3.10 and 3.11).

Workloads (50 connections, one request in flight each, closed loop):

- ``ping``: ``PING {text}`` → ``PONG {reply}``;
- ``rpc``: ``ECHO {text, n}`` → one ``$ws:rpc-progress`` frame, then ``ECHO_RESULT``;
- ``fanout``: 1,000 subscribers; a publisher sends ``SAY {text, n}``, the server
  validates it and delivers ``NEWS`` to every subscriber; the next publish goes out
  once all 1,000 arrived. Reported as server CPU µs per delivery;
- ``idle``: server memory growth per idle connection with 1,000 connections open
  (each made one round trip first).

The load generator runs in another process pinned to CPU 1: a minimal asyncio
WebSocket client (prebuilt masked frames, header-only parsing) on uvloop when it is
installed. Its own CPU use is printed: a generator near 100% of its core would
compress the ratios toward 1. Each (server, workload) pair runs ``--runs`` times on
a fresh server, the servers interleaved; the median is reported, with every run's
figure. Ratios compare wskit with ``raw`` on the same event loop: throughput (higher is
better) and server CPU µs per operation (lower is better).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import struct
import sys
import time
from typing import Any

from _proc import ServerProcess, free_port, idle_growth, run_generator

CONNS = 50
SUBSCRIBERS = 1000
IDLE_CONNS = 1000
WARMUP_S = 1.0
TEXT = "hello from the benchmark"
SERVER_CPU = 0
CLIENT_CPU = 1

# ======================================================================= servers


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def raw_app() -> Any:
    from aiohttp import WSMsgType, web
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Strict(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")

    class Ping(Strict):
        text: str

    class Echo(Strict):
        text: str
        n: int

    class Say(Strict):
        text: str
        n: int

    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    subscribers: set[web.WebSocketResponse] = set()

    async def ping(ws: Any, meta: dict[str, Any], payload: Any) -> None:
        p = Ping.model_validate(payload)
        await ws.send_str(dumps({"type": "PONG", "meta": {}, "payload": {"reply": p.text}}))

    async def echo(ws: Any, meta: dict[str, Any], payload: Any) -> None:
        p = Echo.model_validate(payload)
        out_meta = {"correlationId": meta.get("correlationId")}
        body = {"text": p.text, "n": p.n + 1}
        await ws.send_str(dumps({"type": "$ws:rpc-progress", "meta": out_meta, "payload": body}))
        await ws.send_str(dumps({"type": "ECHO_RESULT", "meta": out_meta, "payload": body}))

    async def subscribe(ws: Any, meta: dict[str, Any], payload: Any) -> None:
        subscribers.add(ws)
        await ws.send_str(dumps({"type": "SUBSCRIBED", "meta": {}}))

    async def say(ws: Any, meta: dict[str, Any], payload: Any) -> None:
        p = Say.model_validate(payload)
        frame = dumps({"type": "NEWS", "meta": {}, "payload": {"text": p.text, "n": p.n}})
        for sub in tuple(subscribers):
            await sub.send_str(frame)

    handlers = {"PING": ping, "ECHO": echo, "SUBSCRIBE": subscribe, "SAY": say}

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    obj = json.loads(msg.data)
                    await handlers[obj["type"]](ws, obj.get("meta") or {}, obj.get("payload"))
                except (ValueError, KeyError, ValidationError):
                    error = {"code": "INVALID_ARGUMENT", "message": "Invalid message"}
                    await ws.send_str(dumps({"type": "ERROR", "meta": {}, "payload": error}))
        finally:
            subscribers.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    return app


def wskit_app(validator: str, *, validate_outgoing: bool = True, eager: bool = True) -> Any:
    from wskit.aiohttp import create_app
    from wskit.pubsub import with_pubsub

    if validator == "pydantic":
        from wskit.pydantic import create_router, message, rpc
        from wskit.pydantic import with_pydantic as plugin
    else:
        from wskit.attrs import create_router, message, rpc
        from wskit.attrs import with_attrs as plugin

    Ping = message("PING", text=str)
    Pong = message("PONG", reply=str)
    Echo = rpc("ECHO", {"text": str, "n": int}, "ECHO_RESULT", {"text": str, "n": int})
    Subscribe = message("SUBSCRIBE")
    Subscribed = message("SUBSCRIBED")
    Say = message("SAY", text=str, n=int)
    News = message("NEWS", text=str, n=int)
    router = (
        create_router(eager_start=eager)
        .plugin(plugin(validate_outgoing=validate_outgoing))
        .plugin(with_pubsub())
    )

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {"reply": ctx.payload.text})

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        body = {"text": ctx.payload.text, "n": ctx.payload.n + 1}
        ctx.progress(body)
        ctx.reply(body)

    @router.on(Subscribe)
    async def subscribe(ctx: Any) -> None:
        await ctx.topics.subscribe("news")
        ctx.send(Subscribed)

    @router.on(Say)
    async def say(ctx: Any) -> None:
        await ctx.publish("news", News, {"text": ctx.payload.text, "n": ctx.payload.n})

    return create_app(router, path="/ws")


SERVERS = {
    "raw": raw_app,
    "wskit-pydantic": lambda: wskit_app("pydantic"),
    "wskit-attrs": lambda: wskit_app("attrs"),
    # Not in the default run: wskit without validating what handlers send (the raw
    # server does not validate its replies either), to show what that check costs.
    "wskit-pydantic-trusted": lambda: wskit_app("pydantic", validate_outgoing=False),
    # Also not in the default run: without the router option eager_start (it only
    # makes a difference on Python 3.12+).
    "wskit-pydantic-task": lambda: wskit_app("pydantic", eager=False),
}
DEFAULT_SERVERS = ("raw", "wskit-pydantic", "wskit-attrs")


def serve(kind: str, port: int, loop_kind: str) -> None:
    _raise_fd_limit()
    os.sched_setaffinity(0, {SERVER_CPU})
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(SERVERS[kind](), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("listening", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    _run(main(), loop_kind)


def _run(coro: Any, loop_kind: str) -> None:
    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


# =============================================================== load generator


def client_frame(text: str) -> bytes:
    """A masked client text frame (mask key 0: XOR leaves the payload as is)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        header = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return header + b"\0\0\0\0" + data


class WsClient(asyncio.Protocol):
    """Handshake, then count server frames; ``on_frames(count)`` after each read."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.handshaken = False
        self.frames = 0
        self.last: bytes = b""
        self.keep_last = True
        self.on_frames: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(bytes(buf[:200]).decode()))
                return
            del buf[: end + 4]
            self.handshaken = True
            self.open.set_result(None)
        pos, size, got = 0, len(buf), 0
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if size < start + length:
                break
            if self.keep_last:
                self.last = bytes(buf[start : start + length])
            pos = start + length
            got += 1
        if pos:
            del buf[:pos]
        if got:
            self.frames += got
            if self.on_frames is not None:
                self.on_frames(got)

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)


async def connect(port: int) -> WsClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: WsClient(port), "127.0.0.1", port)
    await client.open
    return client


async def request(client: WsClient, frame: bytes, replies: int) -> bytes:
    """Send one request and wait for its replies (used for checks, not for load)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    target = client.frames + replies

    def on_frames(n: int) -> None:
        if client.frames >= target and not done.done():
            done.set_result(None)

    client.on_frames = on_frames
    client.send(frame)
    await asyncio.wait_for(done, 10)
    client.on_frames = None
    return client.last


#: ``--hold`` (count_instructions.py): the generator stops at two quiet points, before
#: and after its measured window, and says so (``ready``, then its ``end`` line) and
#: waits for a line on stdin; no request is in flight at either point, so counters
#: switched on and read there see exactly the measured window's work.
HOLD = False


async def _hold(word: str) -> None:
    print(word, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def gen_closed_loop(port: int, duration: float, workload: str) -> None:
    if workload == "ping":
        text = json.dumps({"type": "PING", "payload": {"text": TEXT}}, separators=(",", ":"))
        replies, expect = 1, {"type": "PONG", "meta": {}, "payload": {"reply": TEXT}}
    else:
        text = json.dumps(
            {"type": "ECHO", "meta": {"correlationId": "c1"}, "payload": {"text": TEXT, "n": 1}},
            separators=(",", ":"),
        )
        replies = 2
        body = {"text": TEXT, "n": 2}
        expect = {"type": "ECHO_RESULT", "meta": {"correlationId": "c1"}, "payload": body}
    frame = client_frame(text)
    clients = [await connect(port) for _ in range(CONNS)]
    for c in clients:  # correctness first
        got = json.loads(await request(c, frame, replies))
        assert got == expect, got
        c.keep_last = False
    count = 0
    counting = False
    sending = True
    outstanding = 0  # requests still unanswered once sending stopped
    quiet: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def make(c: WsClient) -> Any:
        pending = [replies]

        def on_frames(n: int) -> None:
            nonlocal count, outstanding
            pending[0] -= n
            while pending[0] <= 0:  # a full answer arrived: next request
                pending[0] += replies
                if counting:
                    count += 1
                if sending:
                    c.send(frame)
                else:
                    outstanding -= 1
                    if not outstanding:
                        quiet.set_result(None)

        return on_frames

    async def quiesce() -> None:  # (--hold) stop sending; every client has one request out
        nonlocal sending, outstanding, quiet
        quiet = asyncio.get_running_loop().create_future()
        sending, outstanding = False, len(clients)
        await quiet

    for c in clients:
        c.on_frames = make(c)
        c.send(frame)
    await asyncio.sleep(WARMUP_S)
    if HOLD:
        await quiesce()
        await _hold("ready")
        sending = True
        for c in clients:
            c.send(frame)
    counting = True
    cpu0, t0 = _cpu(), time.perf_counter()
    print("start", flush=True)
    await asyncio.sleep(duration)
    if HOLD:
        await quiesce()  # (the answers to requests still out are counted)
    counting = False
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    print(f"end {count} {elapsed} {cpu}", flush=True)
    if HOLD:
        await _hold("")
    for c in clients:
        c.on_frames = None
        assert c.transport is not None
        c.transport.close()


async def gen_fanout(port: int, duration: float) -> None:
    subscribe = client_frame('{"type":"SUBSCRIBE"}')
    subs = []
    for _ in range(SUBSCRIBERS // 100):
        batch = await asyncio.gather(*(connect(port) for _ in range(100)))
        for c in batch:
            got = json.loads(await request(c, subscribe, 1))
            assert got["type"] == "SUBSCRIBED", got
            c.keep_last = False
        subs += batch
    publisher = await connect(port)
    loop = asyncio.get_running_loop()
    delivered = 0
    target = 0
    round_done: asyncio.Future[None] = loop.create_future()

    def on_frames(n: int) -> None:
        nonlocal delivered, round_done
        delivered += n
        if delivered >= target and not round_done.done():
            round_done.set_result(None)

    for s in subs:
        s.on_frames = on_frames
    n = 0

    async def one_round() -> None:
        nonlocal n, target, round_done
        n += 1
        target += SUBSCRIBERS
        round_done = loop.create_future()
        if delivered >= target:
            round_done.set_result(None)
        say = json.dumps({"type": "SAY", "payload": {"text": TEXT, "n": n}}, separators=(",", ":"))
        publisher.send(client_frame(say))
        await asyncio.wait_for(round_done, 30)

    warm_end = time.perf_counter() + WARMUP_S
    while time.perf_counter() < warm_end:
        await one_round()
    last = subs[-1]
    last.keep_last = True
    await one_round()
    got = json.loads(last.last)
    assert got == {"type": "NEWS", "meta": {}, "payload": {"text": TEXT, "n": n}}, got
    last.keep_last = False
    rounds = 0
    if HOLD:
        await _hold("ready")
    cpu0, t0 = _cpu(), time.perf_counter()
    print("start", flush=True)
    while time.perf_counter() - t0 < duration:
        await one_round()
        rounds += 1
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    print(f"end {rounds * SUBSCRIBERS} {elapsed} {cpu}", flush=True)
    if HOLD:
        await _hold("")
    for c in [*subs, publisher]:
        assert c.transport is not None
        c.transport.close()


async def gen_idle(port: int) -> None:
    frame = client_frame(json.dumps({"type": "PING", "payload": {"text": TEXT}}))
    warm = await connect(port)
    await request(warm, frame, 1)
    assert warm.transport is not None
    warm.transport.close()
    print("baseline", flush=True)
    assert sys.stdin.readline().strip() == "go"
    clients: list[WsClient] = []
    for _ in range(IDLE_CONNS // 100):
        batch = await asyncio.gather(*(connect(port) for _ in range(100)))
        await asyncio.gather(*(request(c, frame, 1) for c in batch))
        clients += batch
    print(f"open {len(clients)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for c in clients:
        assert c.transport is not None
        c.transport.close()


def generate(workload: str, port: int, duration: float) -> None:
    _raise_fd_limit()
    os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if workload == "idle":
        coro = gen_idle(port)
    elif workload == "fanout":
        coro = gen_fanout(port, duration)
    else:
        coro = gen_closed_loop(port, duration, workload)
    if uvloop is not None:
        uvloop.run(coro)
    else:
        asyncio.run(coro)


# ================================================================== orchestrator


def start_server(kind: str, loop_kind: str) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", kind, str(port), loop_kind]
    return ServerProcess(argv, port, kind)


def measure_load(
    server: ServerProcess, label: str, workload: str, duration: float
) -> tuple[float, float, float]:
    """(operations/s, server CPU µs per operation, generator CPU share) of this
    file's ``workload`` generator against ``server``."""
    argv = [sys.executable, __file__, "--generate", workload, str(server.port), str(duration)]
    (count, elapsed, gen_cpu), cpu = run_generator(server, argv, f"{label}/{workload}")
    ops = int(count)
    return ops / float(elapsed), cpu / ops * 1e6, float(gen_cpu) / float(elapsed)


def run_load(
    kind: str, loop_kind: str, workload: str, duration: float
) -> tuple[float, float, float]:
    """(operations/s, server CPU µs per operation, generator CPU share)."""
    server = start_server(kind, loop_kind)
    try:
        return measure_load(server, kind, workload, duration)
    finally:
        server.stop()


def run_idle(kind: str, loop_kind: str) -> float:
    """Server RSS growth per idle connection, in bytes."""
    server = start_server(kind, loop_kind)
    try:
        argv = [sys.executable, __file__, "--generate", "idle", str(server.port), "0"]
        return idle_growth(server, argv, IDLE_CONNS, kind)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--runs", type=int, default=3, help="fresh servers per figure (median)")
    parser.add_argument("--loops", default="asyncio", help="asyncio,uvloop")
    parser.add_argument("--only", default="ping,rpc,fanout,idle", help="workloads")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "LOOP"))
    parser.add_argument("--generate", nargs=3, metavar=("WORKLOAD", "PORT", "DURATION"))
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    if args.generate:
        global HOLD
        HOLD = args.hold
        generate(args.generate[0], int(args.generate[1]), float(args.generate[2]))
        return

    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    print(
        f"python {sys.version.split()[0]}, aiohttp {v('aiohttp')}, pydantic {v('pydantic')}, "
        f"uvloop {v('uvloop')}, cpus {os.cpu_count()} (server on CPU {SERVER_CPU}, "
        f"generator on CPU {CLIENT_CPU}); {args.runs} fresh servers per figure, median"
    )
    workloads = [w for w in args.only.split(",") if w]
    servers = [s for s in args.servers.split(",") if s]
    for loop_kind in args.loops.split(","):
        print(f"\n== event loop: {loop_kind}")
        results: dict[tuple[str, str], tuple[float, float, float, list[float]]] = {}
        for workload in [w for w in workloads if w != "idle"]:
            # Interleaved (raw, wskit-pydantic, wskit-attrs, raw, ...) so that load from
            # elsewhere on the machine falls on every server alike.
            measured: dict[str, list[tuple[float, float, float]]] = {k: [] for k in servers}
            for _ in range(args.runs):
                for kind in servers:
                    measured[kind].append(run_load(kind, loop_kind, workload, args.duration))
            for kind in servers:
                runs = measured[kind]
                rates = [r[0] for r in runs]
                results[kind, workload] = (
                    statistics.median(rates),
                    statistics.median(r[1] for r in runs),
                    max(r[2] for r in runs),
                    rates,
                )
            head = f"{'server':>15} {'ops/s':>10} {'CPU us/op':>10} {'gen CPU':>8}  runs"
            print(f"\n{workload}: {head}")
            pad = " " * (len(workload) + 1)
            for kind in servers:
                rate, cpu, gen, rates = results[kind, workload]
                spread = ", ".join(f"{r:,.0f}" for r in rates)
                print(f"{pad} {kind:>15} {rate:>10,.0f} {cpu:>10.2f} {gen:>7.0%}  [{spread}]")
            if "raw" in servers:
                for kind in servers:
                    if kind == "raw":
                        continue
                    rate, cpu = results[kind, workload][:2]
                    base_rate, base_cpu = results["raw", workload][:2]
                    # Each run's own ratio (the two servers ran back to back), so the
                    # spread shows how far one run's machine state moves a ratio.
                    paired = sorted(
                        w[0] / r[0] for w, r in zip(measured[kind], measured["raw"], strict=True)
                    )
                    middle = statistics.median(paired)
                    print(
                        f"{pad} {kind} / raw: throughput {rate / base_rate:.2f}x, "
                        f"CPU per op {cpu / base_cpu:.2f}x; run by run "
                        f"{paired[0]:.2f}-{paired[-1]:.2f}x (median {middle:.2f}x)"
                    )
        if "idle" in workloads:
            print(f"\nidle: server RSS growth per connection, {IDLE_CONNS} connections")
            mem = {
                kind: statistics.median(run_idle(kind, loop_kind) for _ in range(args.runs))
                for kind in servers
            }
            for kind in servers:
                print(f"      {kind:>15} {mem[kind] / 1024:>8.1f} KiB")
            if "raw" in mem:
                for kind in servers:
                    if kind != "raw":
                        print(f"      {kind} / raw: {mem[kind] / mem['raw']:.2f}x")


if __name__ == "__main__":
    main()
