"""wskit-aiohttp end to end: RPC round trips/s and memory per idle connection.

Run: ``hatch run bench:python tools/bench/bench_aiohttp.py [--duration 5] [--repeats 2]``

Every server runs in its own process; the load generator runs in another one
(loopback only, bounded in time). One run prints every figure and ratio:

(a) RPC round trips/s, 50 concurrent connections, each with one request in
    flight (closed loop), against
    - ``wskit``: a wskit router (``wskit.pydantic`` schemas) on ``wskit.aiohttp``
      with its default options (``create_app(router, path="/ws")``);
    - ``raw``: a bare aiohttp WebSocket handler doing the same work by hand:
      ``json.loads``, dict dispatch on ``type``, pydantic validation (strict,
      unknown keys forbidden), reply envelope with the correlationId, ``json.dumps``;
(b) the same workload against python-socketio (``AsyncServer`` on aiohttp): an
    event with an ack (same pydantic validation in the handler);
(c) server RSS growth per idle connection with 1,000 open connections (each
    did one round trip first), wskit vs raw aiohttp.

The load generator is the same aiohttp WebSocket client for all targets (for
socket.io it speaks the Engine.IO v4 / Socket.IO v5 text packets itself).
Besides round trips/s it reports the server's CPU time per round trip (from
/proc), which does not depend on how busy the generator is. Both share the
machine's cores, so absolute numbers are machine-specific: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

from _proc import ServerProcess, free_port, idle_growth, run_generator

CONNS = 50
IDLE_CONNS = 1000
WARMUP_S = 1.0
TEXT = "hello from the benchmark"

# ======================================================================= servers


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _pydantic_model() -> Any:
    from pydantic import BaseModel, ConfigDict

    class Echo(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        text: str
        n: int

    return Echo


def wskit_app() -> Any:
    from wskit.aiohttp import create_app
    from wskit.pydantic import create_router, rpc, with_pydantic

    Echo = rpc("ECHO", {"text": str, "n": int}, "ECHO_RESULT", {"text": str, "n": int})
    router = create_router().plugin(with_pydantic())

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        ctx.reply({"text": ctx.payload.text, "n": ctx.payload.n + 1})

    return create_app(router, path="/ws")


def raw_app() -> Any:
    from aiohttp import WSMsgType, web
    from pydantic import ValidationError

    Echo = _pydantic_model()
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def echo(payload: Any) -> dict[str, Any]:
        p = Echo.model_validate(payload)
        return {"text": p.text, "n": p.n + 1}

    handlers = {"ECHO": ("ECHO_RESULT", echo)}

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                obj = json.loads(msg.data)
                meta = obj.get("meta") or {}
                reply_type, fn = handlers[obj["type"]]
                payload = fn(obj.get("payload"))
                out = {
                    "type": reply_type,
                    "meta": {"correlationId": meta.get("correlationId")},
                    "payload": payload,
                }
            except (ValueError, KeyError, ValidationError):
                out = {"type": "ERROR", "meta": {}, "payload": {"code": "INVALID_ARGUMENT"}}
            await ws.send_str(dumps(out))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    return app


def socketio_app() -> Any:
    import socketio
    from aiohttp import web

    Echo = _pydantic_model()
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=None)
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def echo(sid: str, data: Any) -> Any:
        p = Echo.model_validate(data)
        return {"text": p.text, "n": p.n + 1}

    return app


SERVERS = {"wskit": wskit_app, "raw": raw_app, "socketio": socketio_app}


def serve(kind: str, port: int) -> None:
    _raise_fd_limit()
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(SERVERS[kind](), access_log=None, handle_signals=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("listening", flush=True)
        # Until the orchestrator closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


# =============================================================== load generator


class Client:
    """One connection: ``call()`` sends a request and waits for its answer."""

    def __init__(self, kind: str, ws: Any) -> None:
        self.kind = kind
        self.ws = ws
        self.n = 0

    @classmethod
    async def connect(cls, session: Any, kind: str, port: int) -> Client:
        if kind == "socketio":
            url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            ws = await session.ws_connect(url, autoping=True)
            opened = await ws.receive_str()
            assert opened.startswith("0{"), opened
            await ws.send_str("40")
            connected = await ws.receive_str()
            assert connected.startswith("40"), connected
        else:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/ws")
        client = cls(kind, ws)
        reply = await client.call()
        client.check(reply)
        return client

    async def call(self) -> str:
        self.n += 1
        n = self.n
        ws = self.ws
        if self.kind == "socketio":
            await ws.send_str(f'42{n}["echo",{{"text":"{TEXT}","n":{n}}}]')
        else:
            await ws.send_str(
                f'{{"type":"ECHO","meta":{{"correlationId":"c{n}"}},'
                f'"payload":{{"text":"{TEXT}","n":{n}}}}}'
            )
        while True:
            data: str = await ws.receive_str()
            if self.kind == "socketio" and data == "2":  # engine.io ping
                await ws.send_str("3")
                continue
            return data

    def check(self, reply: str) -> None:
        n = self.n
        if self.kind == "socketio":
            assert reply == f'43{n}[{{"text":"{TEXT}","n":{n + 1}}}]', reply
        else:
            assert json.loads(reply) == {
                "type": "ECHO_RESULT",
                "meta": {"correlationId": f"c{n}"},
                "payload": {"text": TEXT, "n": n + 1},
            }, reply


async def generate_rpc(kind: str, port: int, duration: float) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        clients = await asyncio.gather(*(Client.connect(session, kind, port) for _ in range(CONNS)))
        counting = False
        count = 0
        stop = False

        async def loop(c: Client) -> None:
            nonlocal count
            while not stop:
                await c.call()
                if counting:
                    count += 1

        tasks = [asyncio.ensure_future(loop(c)) for c in clients]
        await asyncio.sleep(WARMUP_S)
        print("start", flush=True)
        counting = True
        t0 = time.perf_counter()
        await asyncio.sleep(duration)
        counting = False
        elapsed = time.perf_counter() - t0
        print(f"end {count} {elapsed}", flush=True)
        stop = True
        await asyncio.gather(*tasks)
        last = clients[0]
        last.check(await last.call())
        await asyncio.gather(*(c.ws.close() for c in clients))


async def generate_idle(kind: str, port: int) -> None:
    import aiohttp

    _raise_fd_limit()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the server's code paths with one connection, then report the baseline.
        warm = await Client.connect(session, kind, port)
        await warm.ws.close()
        print("baseline", flush=True)
        assert sys.stdin.readline().strip() == "go"
        clients: list[Client] = []
        for start in range(0, IDLE_CONNS, 100):
            clients += await asyncio.gather(
                *(Client.connect(session, kind, port) for _ in range(start, start + 100))
            )
        print(f"open {len(clients)}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await asyncio.gather(*(c.ws.close() for c in clients))


# ================================================================== orchestrator


def start_server(kind: str) -> ServerProcess:
    port = free_port()
    return ServerProcess([sys.executable, __file__, "--serve", kind, str(port)], port, kind)


def run_rpc(kind: str, duration: float) -> tuple[float, float]:
    """(round trips/s, server CPU µs per round trip)."""
    server = start_server(kind)
    try:
        argv = [sys.executable, __file__, "--rpc", kind, str(server.port), str(duration)]
        (count, elapsed), cpu = run_generator(server, argv, kind, timeout=60)
    finally:
        server.stop()
    return int(count) / float(elapsed), cpu / int(count) * 1e6


def run_idle(kind: str) -> float:
    """Server RSS growth per idle connection, in bytes."""
    server = start_server(kind)
    try:
        argv = [sys.executable, __file__, "--idle", kind, str(server.port)]
        return idle_growth(server, argv, IDLE_CONNS, kind)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per RPC run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per target, interleaved")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"))
    parser.add_argument("--rpc", nargs=3, metavar=("KIND", "PORT", "DURATION"))
    parser.add_argument("--idle", nargs=2, metavar=("KIND", "PORT"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.rpc:
        kind, port, duration = args.rpc
        asyncio.run(generate_rpc(kind, int(port), float(duration)))
        return
    if args.idle:
        asyncio.run(generate_idle(args.idle[0], int(args.idle[1])))
        return

    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, aiohttp {version('aiohttp')}, "
        f"pydantic {version('pydantic')}, python-socketio {version('python-socketio')}, "
        f"cpus {os.cpu_count()}"
    )
    print(
        f"(a)/(b) RPC round trips, {CONNS} connections, 1 in flight each, "
        f"{args.duration:g} s x {args.repeats} runs (median)\n"
    )
    rates: dict[str, list[float]] = {k: [] for k in SERVERS}
    cpus: dict[str, list[float]] = {k: [] for k in SERVERS}
    for _ in range(args.repeats):
        for kind in SERVERS:  # interleaved, so load bursts hit all alike
            rate, cpu = run_rpc(kind, args.duration)
            rates[kind].append(rate)
            cpus[kind].append(cpu)
    print(f"{'server':>9} {'round trips/s':>14} {'server CPU us/rt':>17}")
    rate = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    for kind in SERVERS:
        print(f"{kind:>9} {rate[kind]:>14,.0f} {cpu[kind]:>17.1f}")

    print(f"\n(c) server RSS growth per idle connection, {IDLE_CONNS} connections")
    mem = {kind: run_idle(kind) for kind in ("wskit", "raw")}
    for kind, per in mem.items():
        print(f"{kind:>9} {per / 1024:>10.1f} KiB/connection")

    a = rate["wskit"] / rate["raw"]
    b = rate["wskit"] / rate["socketio"]
    c = mem["wskit"] / mem["raw"]
    print("\nratios")
    print(
        f"  (a) wskit / raw aiohttp throughput    {a:5.2f}x  (target >= 0.8x)  "
        f"[server CPU per rt: {cpu['raw'] / cpu['wskit']:.2f}x]"
    )
    print(
        f"  (b) wskit / python-socketio throughput {b:5.2f}x  (target >= 2x)    "
        f"[server CPU per rt: {cpu['socketio'] / cpu['wskit']:.2f}x]"
    )
    print(f"  (c) wskit / raw aiohttp memory/conn    {c:5.2f}x  (target <= 1.25x)")


if __name__ == "__main__":
    main()
