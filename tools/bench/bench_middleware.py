"""wskit-middleware overhead end to end: RPC round trips/s over aiohttp with
logging + tracing + metrics on, against the same server with none of them.

Run: ``hatch run bench:python tools/bench/bench_middleware.py [--duration 5] [--repeats 3]``

Five servers, each in its own process, serve the same ECHO RPC (``wskit.pydantic``
schemas on ``wskit.aiohttp``, as in bench_aiohttp.py):

- ``off``: no middleware;
- ``sampled-off``: ``with_tracing()`` + ``with_metrics()`` + ``with_logging()``, the
  tracer provider sampling nothing (``ParentBased(ALWAYS_OFF)``, the usual setting for
  a busy service that samples at its edge), a log record written for every message;
- ``sampled-off, errors logged``: the same, but records of messages answered
  without an error are DEBUG (``with_logging(level=logging.DEBUG)``) under an INFO
  logger, so only connections and errors are written;
- ``sampled-off, 1% logged``: the same, with every message's record at INFO but
  ``with_logging(sample_rate=0.01)``: about one successful message in a hundred is
  written (errors and connections all);
- ``all-on``: every trace sampled and exported through a ``BatchSpanProcessor`` (to
  an exporter that discards the batches), every message logged.

Log records go through a ``StreamHandler`` with a formatter (time, level, logger,
message) to /dev/null: they are built, formatted and written. The load generator is
bench_aiohttp.py's (50 connections, one request in flight each, in its own
process); the runs are interleaved and the median is reported, with the server CPU
time per round trip (from /proc). Targets: ``sampled-off`` >= 0.85x and ``all-on`` >=
0.7x of ``off``'s throughput.

A second part measures each piece alone in process (no network): 20,000 pipelined
RPCs through the real router (tools/bench/_drivers.py), best of 5, as microseconds
added per message over the router without middleware. The rows marked "client
traceparent" send every request with a W3C ``meta.traceparent`` (a new trace id
and span id per request, flags ``00``: the client sampled it out), as a traced
client does; the others send none.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import bench_aiohttp  # tools/bench/ is on sys.path when this file runs as a script
from _proc import ServerProcess, free_port, run_generator

KINDS = ("off", "sampled-off", "sampled-off, errors logged", "sampled-off, 1% logged", "all-on")


def echo_router(kind: str, pieces: Sequence[str] = ("tracing", "metrics", "logging")) -> Any:
    """The ECHO router with the middleware of ``kind`` (one of :data:`KINDS`)."""
    from wskit.pydantic import create_router, rpc, with_pydantic

    Echo = rpc("ECHO", {"text": str, "n": int}, "ECHO_RESULT", {"text": str, "n": int})
    router = create_router(max_buffered_bytes=1 << 30).plugin(with_pydantic())
    if kind != "off":
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
        from prometheus_client import CollectorRegistry

        from wskit.middleware import with_logging
        from wskit.middleware.prometheus import with_metrics
        from wskit.middleware.tracing import with_tracing

        class Discard(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        sampler = ParentBased(ALWAYS_ON if kind == "all-on" else ALWAYS_OFF)
        provider = TracerProvider(sampler=sampler)
        # A queue long enough for the in-process part's bursts (no span dropped).
        provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 16))
        logger = logging.getLogger("bench.wskit")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if not logger.handlers:
            handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
            )
            logger.addHandler(handler)
        if "tracing" in pieces:
            router.plugin(with_tracing(tracer_provider=provider))
        if "tracing without an SDK" in pieces:
            from opentelemetry.trace import NoOpTracerProvider

            router.plugin(with_tracing(tracer_provider=NoOpTracerProvider()))
        if "metrics" in pieces:
            router.plugin(with_metrics(registry=CollectorRegistry()))
        if "logging" in pieces:
            quiet = kind == "sampled-off, errors logged"
            level = logging.DEBUG if quiet else logging.INFO
            rate = 0.01 if kind == "sampled-off, 1% logged" else 1.0
            router.plugin(with_logging(logger=logger, level=level, sample_rate=rate))

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        ctx.reply({"text": ctx.payload.text, "n": ctx.payload.n + 1})

    return router


def server_app(kind: str) -> Any:
    from wskit.aiohttp import create_app

    return create_app(echo_router(kind), path="/ws")


def serve(kind: str, port: int) -> None:
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(server_app(kind), access_log=None, handle_signals=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("listening", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


def run(kind: str, duration: float) -> tuple[float, float]:
    """(round trips/s, server CPU µs per round trip)."""
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(KINDS.index(kind)), str(port)]
    server = ServerProcess(argv, port, kind)
    try:
        gen_argv = [sys.executable, __file__, "--rpc", str(port), str(duration)]
        (count, elapsed), cpu = run_generator(server, gen_argv, kind, timeout=60)
    finally:
        server.stop()
    return int(count) / float(elapsed), cpu / int(count) * 1e6


IN_PROCESS = (
    ("logging (every message)", "sampled-off", ("logging",), False),
    ("logging (errors only)", "sampled-off, errors logged", ("logging",), False),
    ("logging (1% of successes)", "sampled-off, 1% logged", ("logging",), False),
    ("tracing, no SDK installed", "sampled-off", ("tracing without an SDK",), False),
    ("tracing, sampled off", "sampled-off", ("tracing",), False),
    ("tracing, sampled off, client traceparent", "sampled-off", ("tracing",), True),
    ("tracing, sampled", "all-on", ("tracing",), False),
    ("metrics", "sampled-off", ("metrics",), False),
    ("all three, sampled off", "sampled-off", ("tracing", "metrics", "logging"), False),
    ("all three, sampled", "all-on", ("tracing", "metrics", "logging"), False),
)


def in_process(messages: int = 20_000, rounds: int = 5) -> None:
    import random

    from _drivers import best_of, pipelined

    def frame(i: int, traced: bool) -> str:
        meta = f'"correlationId":"c{i}"'
        if traced:
            trace_id, span_id = random.getrandbits(128) | 1, random.getrandbits(64) | 1
            meta += f',"traceparent":"00-{trace_id:032x}-{span_id:016x}-00"'
        payload = f'{{"text":"{bench_aiohttp.TEXT}","n":{i}}}'
        return f'{{"type":"ECHO","meta":{{{meta}}},"payload":{payload}}}'

    frames = {traced: [frame(i, traced) for i in range(messages)] for traced in (False, True)}

    def cost(kind: str, pieces: Sequence[str] = (), traced: bool = False) -> float:
        def once() -> None:
            asyncio.run(pipelined(echo_router(kind, pieces), frames[traced], []))

        return best_of(once, rounds) / messages * 1e6

    base = cost("off")
    print(f"\nin process: {messages:,} pipelined RPCs, best of {rounds}, us per message")
    print(f"{'no middleware':>40} {base:6.1f}")
    for label, kind, pieces, traced in IN_PROCESS:
        total = cost(kind, pieces, traced)
        print(f"{label:>40} {total:6.1f}  (+{total - base:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per server, interleaved")
    parser.add_argument("--serve", nargs=2, metavar=("KIND_INDEX", "PORT"))
    parser.add_argument("--rpc", nargs=2, metavar=("PORT", "DURATION"))
    parser.add_argument("--in-process-only", action="store_true", help="skip the network part")
    args = parser.parse_args()
    if args.serve:
        serve(KINDS[int(args.serve[0])], int(args.serve[1]))
        return
    if args.rpc:
        asyncio.run(bench_aiohttp.generate_rpc("wskit", int(args.rpc[0]), float(args.rpc[1])))
        return

    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, aiohttp {version('aiohttp')}, "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"prometheus-client {version('prometheus-client')}, cpus {os.cpu_count()}"
    )
    if args.in_process_only:
        in_process()
        return
    print(
        f"RPC round trips, {bench_aiohttp.CONNS} connections, 1 in flight each, "
        f"{args.duration:g} s x {args.repeats} runs (median)\n"
    )
    rates: dict[str, list[float]] = {k: [] for k in KINDS}
    cpus: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(args.repeats):
        for kind in KINDS:  # interleaved, so load bursts hit all alike
            rate, cpu = run(kind, args.duration)
            rates[kind].append(rate)
            cpus[kind].append(cpu)
    print(f"{'server':>27} {'round trips/s':>14} {'server CPU us/rt':>17}   runs")
    rate = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    for kind in KINDS:
        runs = ", ".join(f"{r:,.0f}" for r in rates[kind])
        print(f"{kind:>27} {rate[kind]:>14,.0f} {cpu[kind]:>17.1f}   {runs}")
    print("\nratios (throughput vs off; server CPU per round trip: off / with)")
    targets = {"sampled-off": " (target >= 0.85x)", "all-on": " (target >= 0.7x)"}
    for kind in KINDS[1:]:
        ratio = rate[kind] / rate["off"]
        print(
            f"  {kind:>27}: {ratio:5.2f}x{targets.get(kind, ''):18}  "
            f"[server CPU per rt: {cpu['off'] / cpu[kind]:.2f}x]"
        )
    in_process()


if __name__ == "__main__":
    main()
