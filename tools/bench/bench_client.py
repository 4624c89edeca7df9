"""wskit-client request throughput against a raw ``websockets`` client sending the same frames.

Run: ``hatch run bench:python tools/bench/bench_client.py [--requests 20000] [--concurrency 64]``

The server (a wskit router with one pydantic RPC, ``ECHO``, on ``wskit.aiohttp`` with
default options) runs in its own process; this process is the load generator. Two
clients, one connection each, run the same closed-loop workload one after the other:
``--concurrency`` workers, each with one request in flight, ``--requests`` in total.

- ``raw``: a ``websockets.asyncio.client`` connection doing by hand what a minimal RPC
  client must do: build the same envelope (``type``, ``meta.timestamp``,
  ``meta.correlationId`` = uuid4, ``payload``), ``json.dumps``, send, and a reader task
  that ``json.loads`` each reply and resolves the future for its correlationId.
- ``wskit``: ``await client.request(Echo, payload={"text": ...})``: the same frames on
  the wire, plus what the client adds: outbound pydantic validation, inbound envelope
  and pydantic validation of the reply into a model, the request timeout timer, the
  pending-request table and the writer task.

The ratio is wskit requests/s / raw requests/s from ONE run (target >= 0.8). When the
server saturates first, that ratio hides the client's own cost, so the load generator's
CPU time per request is printed too (``raw/wskit`` < 1 means wskit spends more CPU per
request). A second figure with one request in flight (latency-bound) is printed for
context. Both clients share the machine with the server process: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

from _proc import free_port  # tools/bench/ is on sys.path

TEXT = "hello from the benchmark"


# ======================================================================= server


def _schemas() -> Any:
    from wskit.pydantic import rpc

    return rpc("ECHO", {"text": str}, "ECHO_REPLY", {"text": str})


def run_server(port: int) -> None:
    from aiohttp import web

    from wskit.aiohttp import create_app
    from wskit.pydantic import create_router, with_pydantic

    echo = _schemas()
    router = create_router().plugin(with_pydantic())

    @router.rpc(echo)
    async def handle(ctx: Any) -> None:
        ctx.reply({"text": ctx.payload.text})

    async def main() -> None:
        runner = web.AppRunner(create_app(router, path="/ws"), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        # Stop when the parent closes our stdin (bounded: the parent always does).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


# ======================================================================= clients


async def run_raw(url: str, total: int, concurrency: int) -> tuple[float, float]:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    pending: dict[str, asyncio.Future[Any]] = {}
    async with connect(url) as ws:

        async def reader() -> None:
            async for frame in ws:
                obj = json.loads(frame)
                fut = pending.pop(obj["meta"]["correlationId"], None)
                if fut is not None and not fut.done():
                    fut.set_result(obj["payload"])

        async def request(text: str) -> Any:
            cid = str(uuid.uuid4())
            frame = json.dumps(
                {
                    "type": "ECHO",
                    "meta": {"timestamp": int(time.time() * 1000), "correlationId": cid},
                    "payload": {"text": text},
                },
                separators=(",", ":"),
            )
            fut = loop.create_future()
            pending[cid] = fut
            await ws.send(frame)
            return await fut

        read_task = asyncio.create_task(reader())
        try:
            return await _drive(request, total, concurrency)
        finally:
            read_task.cancel()


async def run_wskit(url: str, total: int, concurrency: int) -> tuple[float, float]:
    from wskit.client import Client

    echo = _schemas()
    async with Client(url, reconnect=False) as client:

        async def request(text: str) -> Any:
            return await client.request(echo, payload={"text": text})

        return await _drive(request, total, concurrency)


async def _drive(request: Any, total: int, concurrency: int) -> tuple[float, float]:
    """Warm up, then run ``total`` requests with ``concurrency`` in flight.

    Returns (requests/s, this process's CPU microseconds per request)."""
    for _ in range(200):
        await request(TEXT)
    per_worker = total // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            reply = await request(TEXT)
            text = reply["text"] if isinstance(reply, dict) else reply.text
            assert text == TEXT

    done = per_worker * concurrency
    start = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - start
    return done / elapsed, cpu / done * 1e6


# ======================================================================= main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve)
        return

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("server did not start")
        url = f"ws://127.0.0.1:{port}/ws"

        async def bench() -> dict[str, tuple[float, float]]:
            out: dict[str, tuple[float, float]] = {}
            n, c = args.requests, args.concurrency
            out["raw"] = await run_raw(url, n, c)
            out["wskit"] = await run_wskit(url, n, c)
            seq = max(1000, n // 10)
            out["raw_seq"] = await run_raw(url, seq, 1)
            out["wskit_seq"] = await run_wskit(url, seq, 1)
            return out

        r = asyncio.run(bench())
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    def show(title: str, raw: tuple[float, float], wskit: tuple[float, float]) -> None:
        print(title)
        print(f"  raw websockets client : {raw[0]:>8.0f} req/s  {raw[1]:>6.1f} us CPU/request")
        print(f"  wskit.client          : {wskit[0]:>8.0f} req/s  {wskit[1]:>6.1f} us CPU/request")
        print(f"  throughput ratio wskit/raw : {wskit[0] / raw[0]:.2f}x")
        print(f"  client CPU ratio raw/wskit : {raw[1] / wskit[1]:.2f}x (client-side cost)")

    show(
        f"{args.requests} requests, {args.concurrency} in flight, one connection "
        f"(target: throughput ratio >= 0.80)",
        r["raw"],
        r["wskit"],
    )
    show("one request in flight (latency-bound)", r["raw_seq"], r["wskit_seq"])


if __name__ == "__main__":
    main()
