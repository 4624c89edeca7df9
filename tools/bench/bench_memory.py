"""Memory per idle connection, two ways: RSS growth and Python heap growth (tracemalloc).

Run: ``hatch run bench:python tools/bench/bench_memory.py [--runs 3] [--sites 12]``
(``--servers raw,wskit-pydantic,wskit-attrs`` picks servers; ``bench313`` for Python 3.13).

The servers are bench_hotpath.py's (the hand-written aiohttp server and wskit-aiohttp with
each validator), and so is the idle workload: 1,000 connections, each made one PING round
trip, then held open. Each (server, run) is a fresh interpreter with the server in
process, so the heap can be traced:

- **RSS growth per connection** (without tracing) is what bench_hotpath.py's ``idle`` row
  reports. It moves by several percent from run to run with where the allocator's arenas
  happen to fall (the same server measured 1.09x and 1.17x of the hand-written one on two
  runs of one evening);
- **traced growth per connection** (separate runs, under ``tracemalloc``, after
  ``gc.collect()``) is the Python heap that the 1,000 connections keep: what the objects a
  connection holds add up to. It repeats to the byte, so it shows what a change to those
  objects saves.

``--sites N`` lists the N allocation sites (file:line) that grow most per connection on the
last run of each server. Ratios are against ``raw`` in the same run (lower is better; the
hot-path target for RSS is <= 1.1x).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tracemalloc
from typing import Any

import bench_hotpath as hot  # tools/bench/ is on sys.path when this file runs as a script
from _proc import free_port, rss_bytes


async def _measure(kind: str, mode: str, sites: int) -> dict[str, Any]:
    from aiohttp import web

    runner = web.AppRunner(hot.SERVERS[kind](), access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gen = await asyncio.create_subprocess_exec(
        sys.executable,
        hot.__file__,
        "--generate",
        "idle",
        str(port),
        "0",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert gen.stdin is not None and gen.stdout is not None
    try:
        assert (await gen.stdout.readline()).strip() == b"baseline"
        traced = mode == "traced"
        gc.collect()
        if traced:
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
        rss_before = rss_bytes(os.getpid())
        gen.stdin.write(b"go\n")
        await gen.stdin.drain()
        line = (await asyncio.wait_for(gen.stdout.readline(), 120)).decode().strip()
        assert line == f"open {hot.IDLE_CONNS}", line
        n = hot.IDLE_CONNS
        if not traced:
            return {"value": (rss_bytes(os.getpid()) - rss_before) / n}
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
        tracemalloc.stop()
        return {
            "value": sum(s.size_diff for s in stats) / n,
            "sites": [(s.size_diff / n, s.count_diff / n, str(s.traceback)) for s in stats[:sites]],
        }
    finally:
        gen.stdin.write(b"done\n")
        await gen.stdin.drain()
        await asyncio.wait_for(gen.wait(), 60)
        await runner.cleanup()


def _one(kind: str, mode: str, sites: int) -> None:
    hot._raise_fd_limit()
    os.sched_setaffinity(0, {hot.SERVER_CPU})
    print(json.dumps(asyncio.run(_measure(kind, mode, sites))), flush=True)


def _short(path: str) -> str:
    """A site's path from its package or the stdlib on."""
    return re.sub(r"^.*?(site-packages/|/packages/|/lib/python3\.\d+/)", "", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", default=",".join(hot.DEFAULT_SERVERS))
    parser.add_argument("--sites", type=int, default=0, help="list the top N sites")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(*args.one, args.sites)
        return
    kinds = args.servers.split(",")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.runs):
        for mode in ("rss", "traced"):  # (tracemalloc's own records would inflate RSS)
            for kind in kinds:  # interleaved, a fresh interpreter each
                argv = [sys.executable, __file__, "--one", kind, mode, "--sites", str(args.sites)]
                out = subprocess.run(
                    argv, check=True, capture_output=True, text=True, timeout=300
                ).stdout
                results.setdefault((kind, mode), []).append(json.loads(out.splitlines()[-1]))
    print(
        f"python {sys.version.split()[0]}, {hot.IDLE_CONNS} idle connections, "
        f"{args.runs} fresh servers each, median (every run)"
    )
    modes = ("rss", "traced")
    base = {m: statistics.median(r["value"] for r in results["raw", m]) for m in modes}
    for kind in kinds:
        line = f"{kind:>16}"
        for metric in modes:
            values = [r["value"] for r in results[kind, metric]]
            median = statistics.median(values)
            every = ", ".join(f"{v / 1024:.1f}" for v in values)
            line += f"   {metric} {median / 1024:5.1f} KiB ({every})"
            if kind != "raw":
                line += f" = {median / base[metric]:.2f}x"
        print(line)
    if args.sites:
        for kind in kinds:
            print(f"\n{kind}: top allocation sites, bytes (blocks) per connection")
            for size, count, where in results[kind, "traced"][-1]["sites"]:
                print(f"  {size:8.0f} ({count:4.1f})  {_short(where)}")


if __name__ == "__main__":
    main()
