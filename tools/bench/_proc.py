"""Process plumbing shared by the socket benchmarks: a server and a load generator
in child processes on loopback, the server's CPU time and RSS read from /proc.

The protocol between a benchmark and its children: a server prints ``listening``
once it accepts connections and exits when its stdin closes; a load generator
prints ``start`` when it starts counting, then one result line (``end`` and
its figures), and exits 0; an idle generator prints ``baseline``, opens its
connections on ``go``, prints ``open <n>``, and closes them on ``done``.
"""

from __future__ import annotations

import os
import socket
import subprocess

_CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class ServerProcess:
    """A benchmark server started with ``argv`` (listening on ``port``); waits
    until it says ``listening``. :meth:`stop` closes its stdin and waits."""

    def __init__(self, argv: list[str], port: int, label: str) -> None:
        self.port = port
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "listening":
            self.stop()
            raise RuntimeError(f"{label} server did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_generator(
    server: ServerProcess, argv: list[str], label: str, *, timeout: float = 120
) -> tuple[list[str], float]:
    """Run the load generator ``argv`` against ``server``: the figures of its
    result line (after ``end``) and the server's CPU seconds between its
    ``start`` line and its result line."""
    gen = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert gen.stdout is not None
    line = gen.stdout.readline().strip()
    if line != "start":
        gen.kill()
        raise RuntimeError(f"{label}: generator said {line!r}")
    cpu0 = cpu_seconds(server.pid)
    figures = gen.stdout.readline().split()[1:]
    cpu1 = cpu_seconds(server.pid)
    if gen.wait(timeout=timeout) != 0:
        raise RuntimeError(f"{label}: load generator failed")
    return figures, cpu1 - cpu0


def idle_growth(server: ServerProcess, argv: list[str], conns: int, label: str) -> float:
    """The server's RSS growth per idle connection (bytes) while the idle
    generator ``argv`` holds ``conns`` connections open."""
    gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert gen.stdin is not None and gen.stdout is not None
    assert gen.stdout.readline().strip() == "baseline"
    before = rss_bytes(server.pid)
    gen.stdin.write("go\n")
    gen.stdin.flush()
    assert gen.stdout.readline().strip() == f"open {conns}"
    after = rss_bytes(server.pid)
    gen.stdin.write("done\n")
    gen.stdin.flush()
    if gen.wait(timeout=60) != 0:
        raise RuntimeError(f"{label}: idle generator failed")
    return (after - before) / conns
