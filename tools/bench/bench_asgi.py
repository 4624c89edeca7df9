"""wskit-asgi on uvicorn against a hand-written Starlette endpoint on uvicorn (and
against wskit-aiohttp), end to end.

Run: ``hatch run bench:python tools/bench/bench_asgi.py [--duration 4] [--runs 3]``
(``--only ping,rpc`` picks workloads; ``--servers starlette,wskit-asgi`` picks servers).

Servers, each in its own process pinned to CPU 0:

- ``starlette``: a hand-written Starlette ``WebSocketRoute`` endpoint on uvicorn doing the
  same work as wskit: ``json.loads``, dispatch on ``type`` through a dict, strict pydantic
  models (unknown keys forbidden) for the payload, the reply envelope with the
  correlationId, ``json.dumps`` and ``await websocket.send_text`` per frame;
- ``wskit-asgi``: the same routes as a wskit router (``wskit.pydantic`` schemas) served by
  ``create_asgi_app`` on uvicorn (``wskit.asgi.build_server``, default options);
- ``wskit-aiohttp``: the same router on ``wskit.aiohttp`` (``create_app``, defaults).

Both uvicorn servers use the same settings (its default WebSocket implementation,
websockets-sansio; no permessage-deflate; asyncio loop; no access log).

Workloads (50 connections, one request in flight each, closed loop), from
``bench_hotpath.py``'s load generator (pinned to CPU 1, a minimal asyncio client):

- ``ping``: ``PING {text}`` → ``PONG {reply}``;
- ``rpc``: ``ECHO {text, n}`` → one ``$ws:rpc-progress`` frame, then ``ECHO_RESULT``.

Each (server, workload) pair runs ``--runs`` times on a fresh server; the median is
reported, with wskit-asgi / starlette (target ≥ 0.8x) and wskit-asgi / wskit-aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
from typing import Any

import bench_hotpath as hot
from _proc import ServerProcess, free_port

SERVER_CPU = hot.SERVER_CPU

# ======================================================================= servers


def starlette_app() -> Any:
    from pydantic import BaseModel, ConfigDict, ValidationError
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    class Strict(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")

    class Ping(Strict):
        text: str

    class Echo(Strict):
        text: str
        n: int

    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    async def ping(ws: WebSocket, meta: dict[str, Any], payload: Any) -> None:
        p = Ping.model_validate(payload)
        await ws.send_text(dumps({"type": "PONG", "meta": {}, "payload": {"reply": p.text}}))

    async def echo(ws: WebSocket, meta: dict[str, Any], payload: Any) -> None:
        p = Echo.model_validate(payload)
        out_meta = {"correlationId": meta.get("correlationId")}
        body = {"text": p.text, "n": p.n + 1}
        await ws.send_text(dumps({"type": "$ws:rpc-progress", "meta": out_meta, "payload": body}))
        await ws.send_text(dumps({"type": "ECHO_RESULT", "meta": out_meta, "payload": body}))

    handlers = {"PING": ping, "ECHO": echo}

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                text = await ws.receive_text()
                try:
                    obj = json.loads(text)
                    await handlers[obj["type"]](ws, obj.get("meta") or {}, obj.get("payload"))
                except (ValueError, KeyError, ValidationError):
                    error = {"code": "INVALID_ARGUMENT", "message": "Invalid message"}
                    await ws.send_text(dumps({"type": "ERROR", "meta": {}, "payload": error}))
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


def wskit_router() -> Any:
    from wskit.pydantic import create_router, message, rpc, with_pydantic

    Ping = message("PING", text=str)
    Pong = message("PONG", reply=str)
    Echo = rpc("ECHO", {"text": str, "n": int}, "ECHO_RESULT", {"text": str, "n": int})
    router = create_router().plugin(with_pydantic())

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {"reply": ctx.payload.text})

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        body = {"text": ctx.payload.text, "n": ctx.payload.n + 1}
        ctx.progress(body)
        ctx.reply(body)

    return router


UVICORN = {
    "ws_per_message_deflate": False,
    "lifespan": "off",
    "loop": "asyncio",
    "access_log": False,
    "log_level": "warning",
}


def serve_uvicorn(kind: str, port: int) -> None:
    import uvicorn

    from wskit.asgi import create_asgi_app
    from wskit.asgi.server import build_server

    if kind == "starlette":
        server = uvicorn.Server(
            uvicorn.Config(starlette_app(), host="127.0.0.1", port=port, **UVICORN)
        )
    else:
        ws_app = create_asgi_app(wskit_router())
        server = build_server(ws_app, host="127.0.0.1", port=port, **UVICORN)

    def wait_stdin() -> None:
        sys.stdin.read()  # until the orchestrator closes our stdin
        server.should_exit = True

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        print("listening", flush=True)
        threading.Thread(target=wait_stdin, daemon=True).start()
        await task

    asyncio.run(main())


def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    from wskit.aiohttp import create_app

    async def main() -> None:
        runner = web.AppRunner(create_app(wskit_router(), path="/ws"), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("listening", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


SERVERS = ("starlette", "wskit-asgi", "wskit-aiohttp")


def serve(kind: str, port: int) -> None:
    hot._raise_fd_limit()
    os.sched_setaffinity(0, {SERVER_CPU})
    if kind == "wskit-aiohttp":
        serve_aiohttp(port)
    else:
        serve_uvicorn(kind, port)


# ================================================================== orchestrator


def run_load(kind: str, workload: str, duration: float) -> tuple[float, float, float]:
    """(operations/s, server CPU µs per operation, generator CPU share)."""
    port = free_port()
    server = ServerProcess([sys.executable, __file__, "--serve", kind, str(port)], port, kind)
    try:
        return hot.measure_load(server, kind, workload, duration)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--runs", type=int, default=3, help="fresh servers per figure (median)")
    parser.add_argument("--only", default="ping,rpc", help="workloads")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return

    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    print(
        f"python {sys.version.split()[0]}, uvicorn {v('uvicorn')}, starlette {v('starlette')}, "
        f"websockets {v('websockets')}, aiohttp {v('aiohttp')}, pydantic {v('pydantic')}, "
        f"cpus {os.cpu_count()} (server on CPU {SERVER_CPU}, generator on CPU "
        f"{hot.CLIENT_CPU}); {args.runs} fresh servers per figure, median"
    )
    servers = [s for s in args.servers.split(",") if s]
    for workload in [w for w in args.only.split(",") if w]:
        rates: dict[str, list[float]] = {k: [] for k in servers}
        cpus: dict[str, list[float]] = {k: [] for k in servers}
        gens: dict[str, float] = dict.fromkeys(servers, 0.0)
        for _ in range(args.runs):  # interleaved, so load bursts hit every server alike
            for kind in servers:
                r, c, g = run_load(kind, workload, args.duration)
                rates[kind].append(r)
                cpus[kind].append(c)
                gens[kind] = max(gens[kind], g)
        head = f"{'server':>14} {'ops/s':>10} {'CPU us/op':>10} {'gen CPU':>8}  runs"
        print(f"\n{workload}: {head}")
        pad = " " * (len(workload) + 1)
        rate = {k: statistics.median(v) for k, v in rates.items()}
        cpu = {k: statistics.median(v) for k, v in cpus.items()}
        for kind in servers:
            spread = ", ".join(f"{r:,.0f}" for r in rates[kind])
            print(
                f"{pad} {kind:>14} {rate[kind]:>10,.0f} {cpu[kind]:>10.2f} "
                f"{gens[kind]:>7.0%}  [{spread}]"
            )
        if "wskit-asgi" in rate:
            for base, note in (("starlette", "target >= 0.8x"), ("wskit-aiohttp", "no target")):
                if base in rate:
                    print(
                        f"{pad} wskit-asgi / {base}: throughput "
                        f"{rate['wskit-asgi'] / rate[base]:.2f}x ({note}), "
                        f"CPU per op {cpu['wskit-asgi'] / cpu[base]:.2f}x"
                    )


if __name__ == "__main__":
    main()
