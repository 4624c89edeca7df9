"""User-space instructions per round trip, counted with callgrind: a measure that does
not move with the machine's load the way CPU time does.

Run: ``hatch run bench:python tools/bench/count_instructions.py [--servers raw,wskit-pydantic]
[--only ping,rpc] [--runs 3] [--duration 5]`` (needs ``valgrind``: ``apt-get install valgrind``).

Each server of ``bench_hotpath.py`` runs under ``valgrind --tool=callgrind`` with
instrumentation off. After a 2 s warm-up load, the load generator runs again with ``--hold``:
it stops at a quiet point once its connections are open (no request in flight), counting is
switched on (``callgrind_control -i on``), the generator runs for ``--duration`` seconds,
stops at a second quiet point after its last answer, and the counts are dumped
(``callgrind_control -d``) before it disconnects. So the handshakes and disconnections are
not counted, which matters most for fan-out (1,000 connections for a few publishes under
valgrind). Reported: instructions executed in user space divided by the round trips (or
deliveries) completed, per run, and wskit / raw. The server runs about 50 times slower
under valgrind, so its batches per event-loop iteration differ from a real run, and the
kernel's share (system calls: what write coalescing saves) is not counted at all: use it to
compare Python-level changes, and ``bench_hotpath.py`` for the end-to-end figures. Runs of
the same code agree within about 3%.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _proc import ServerProcess, free_port

HOTPATH = str(Path(__file__).with_name("bench_hotpath.py"))


def _generate(port: int, workload: str, seconds: float) -> int:
    """Run the load generator; the round trips (or deliveries) it completed."""
    argv = [sys.executable, HOTPATH, "--generate", workload, str(port), str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("end "):
            return int(line.split()[1])
    raise RuntimeError(f"generator printed no result: {out.stdout!r}")


def _counted(pid: int, port: int, workload: str, seconds: float) -> int:
    """Run the load generator with counting on in the server ``pid`` for exactly its
    measured window: from a quiet point after its connections are made (no request
    in flight) to one after its last answer, so neither the handshakes nor the
    disconnections are counted. The round trips (or deliveries) it completed."""
    argv = [sys.executable, HOTPATH, "--generate", workload, str(port), str(seconds), "--hold"]
    gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert gen.stdin is not None and gen.stdout is not None
    try:
        if (line := gen.stdout.readline().strip()) != "ready":
            raise RuntimeError(f"generator said {line!r}")
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True,
                       capture_output=True)  # fmt: skip
        gen.stdin.write("\n")
        gen.stdin.flush()
        lines = [gen.stdout.readline().strip() for _ in range(2)]  # "start", "end N ..."
        if lines[0] != "start" or not lines[1].startswith("end "):
            raise RuntimeError(f"generator said {lines!r}")
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True,
                       capture_output=True)  # fmt: skip
        gen.stdin.write("\n")
        gen.stdin.flush()
        if gen.wait(timeout=120) != 0:
            raise RuntimeError("load generator failed")
    finally:
        if gen.poll() is None:
            gen.kill()
    return int(lines[1].split()[1])


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def count(kind: str, workload: str, seconds: float) -> float:
    """Instructions per operation for one fresh server."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        port = free_port()
        argv = [
            "valgrind",
            "--quiet",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            HOTPATH,
            "--serve",
            kind,
            str(port),
            "asyncio",
        ]
        server = ServerProcess(argv, port, kind)
        try:
            _generate(port, workload, 2.0)  # warm-up, not counted
            ops = _counted(server.pid, port, workload, seconds)
        finally:
            server.stop()
        return _total(Path(f"{out}.1")) / ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="raw,wskit-pydantic")
    parser.add_argument("--only", default="ping,rpc", help="workloads (ping, rpc, fanout)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in every run
    servers = [s for s in args.servers.split(",") if s]
    print(f"python {sys.version.split()[0]}; user-space instructions per operation")
    for workload in [w for w in args.only.split(",") if w]:
        counts: dict[str, list[float]] = {k: [] for k in servers}
        for _ in range(args.runs):  # interleaved, as in bench_hotpath.py
            for kind in servers:
                counts[kind].append(count(kind, workload, args.duration))
        print(f"\n{workload}:")
        for kind in servers:
            runs = ", ".join(f"{c:,.0f}" for c in counts[kind])
            print(f"  {kind:>24} {statistics.median(counts[kind]):>10,.0f}  [{runs}]")
        if "raw" in counts:
            base = statistics.median(counts["raw"])
            for kind in servers:
                if kind != "raw":
                    print(f"  {kind} / raw: {statistics.median(counts[kind]) / base:.3f}x")


if __name__ == "__main__":
    main()
