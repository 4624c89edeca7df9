"""Interop fixtures: the original WS-Kit TypeScript server (``ts/server.ts``, run by Bun from
npm), an equivalent wskit-aiohttp server, clients for both and raw-frame helpers.

Setup: the pinned npm packages (``ts/package.json``, ``ts/package-lock.json``: Bun, the
``@ws-kit`` packages and zod) are installed into ``ts/node_modules`` (gitignored) with
``npm ci`` when missing or stale. Without npm, or if the install fails, every interop test
**fails** with the reason: these tests prove the wire compatibility the project promises, so
they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import LoopbackServer, loopback_server
from wskit.client import Client
from wskit.client.testing import StateRecorder
from wskit.pydantic import create_router, message, rpc, with_pydantic

TS_DIR = Path(__file__).parent / "ts"
SAFETY_TIMEOUT = 10.0  # seconds; a safety net only, never the thing a test waits for
INSTALL_TIMEOUT = 100.0  # below the per-test timeout: our message, not a timeout traceback
START_TIMEOUT = 20.0

# -- the schemas of ts/server.ts, for wskit (client and the equivalent server) -----------

Note = message("NOTE", text=str)
NoteAck = message("NOTE_ACK", text=str)
Tagged = message("TAGGED", {"text": str}, meta={"room": (str | None, None)})
TaggedAck = message("TAGGED_ACK", {"text": str}, meta={"room": (str | None, None)})
Labeled = message("LABELED", {"text": str}, meta={"label": (str | None, None)})
Ping = message("PING")
Pong = message("PONG")
Drop = message("DROP", code=int)
Echo = rpc("ECHO", {"text": str}, "ECHO_REPLY", {"text": str})
Count = rpc("COUNT", {"n": int}, "COUNT_DONE", {"value": int})
Fail = rpc("FAIL", {"code": str}, "FAIL_REPLY", {"ok": bool})

SCHEMAS = SimpleNamespace(
    Note=Note,
    NoteAck=NoteAck,
    Tagged=Tagged,
    TaggedAck=TaggedAck,
    Labeled=Labeled,
    Ping=Ping,
    Pong=Pong,
    Drop=Drop,
    Echo=Echo,
    Count=Count,
    Fail=Fail,
)


def build_wskit_router() -> Any:
    """The wskit twin of ts/server.ts: same types, same answers."""
    router = create_router().plugin(with_pydantic())

    @router.on(Note)
    async def note(ctx: Any) -> None:
        ctx.send(NoteAck, {"text": ctx.payload.text})

    @router.on(Tagged)
    async def tagged(ctx: Any) -> None:
        room = ctx.meta.get("room")
        ctx.send(TaggedAck, {"text": ctx.payload.text}, meta={} if room is None else {"room": room})

    @router.on(Labeled)
    async def labeled(ctx: Any) -> None:
        ctx.send(NoteAck, {"text": ctx.payload.text})

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(Pong)

    @router.on(Drop)
    async def drop(ctx: Any) -> None:
        ctx.connection.request_close(ctx.payload.code, "dropped by request")

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        ctx.reply({"text": ctx.payload.text})

    @router.rpc(Count)
    async def count(ctx: Any) -> None:
        for i in range(ctx.payload.n):
            ctx.progress({"value": i})
        ctx.reply({"value": ctx.payload.n})

    @router.rpc(Fail)
    async def fail(ctx: Any) -> None:
        ctx.error(ctx.payload.code, "boom", {"attempt": 1})

    return router


# -- installing the TypeScript side ------------------------------------------------------


def _fail_setup(message: str) -> NoReturn:
    pytest.fail(f"interop setup: {message}", pytrace=False)


def _lock_digest() -> str:
    # .ci/run writes the same marker: `cat package-lock.json package.json | sha256sum`.
    data = (TS_DIR / "package-lock.json").read_bytes() + (TS_DIR / "package.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


def _pinned_bun_version() -> str:
    deps: dict[str, str] = json.loads((TS_DIR / "package.json").read_text())["dependencies"]
    return deps["bun"]


def _bun_candidates(modules: Path) -> list[Path]:
    # bun's postinstall puts the platform binary at bun/bin/bun.exe; where install scripts
    # did not run, the binary is still in its platform package (@oven/bun-<os>-<arch>...).
    found = [modules / "bun" / "bin" / "bun.exe"]
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    prefix = f"bun-{sys.platform}-{arch}"
    oven = modules / "@oven"
    if oven.is_dir():
        found += [p / "bin" / "bun" for p in sorted(oven.iterdir()) if p.name.startswith(prefix)]
    return found


def _runnable_bun(modules: Path, version: str) -> Path | None:
    for candidate in _bun_candidates(modules):
        if not candidate.is_file():
            continue
        try:
            out = subprocess.run(
                [str(candidate), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return candidate
    return None


def ensure_ts_installed() -> Path:
    """Install the pinned npm packages if needed (``npm ci``); return the Bun executable."""
    modules = TS_DIR / "node_modules"
    marker = modules / ".wskit-interop-installed"
    digest = _lock_digest()
    version = _pinned_bun_version()
    lock_path = Path(tempfile.gettempdir()) / (
        "wskit-interop-" + hashlib.sha256(str(TS_DIR).encode()).hexdigest()[:16] + ".lock"
    )
    with open(lock_path, "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run installing into the same tree
        if marker.is_file() and marker.read_text().strip() == digest:
            bun = _runnable_bun(modules, version)
            if bun is not None:
                return bun
        npm = shutil.which("npm")
        if npm is None:
            _fail_setup(
                "npm not found on PATH: the interop tests run the WS-Kit TypeScript server "
                "with Bun from npm (Debian: apt-get install nodejs npm)"
            )
        started = time.monotonic()
        try:
            out = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=TS_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _fail_setup(f"`npm ci` in {TS_DIR} did not finish in {INSTALL_TIMEOUT:.0f} s")
        if out.returncode != 0:
            _fail_setup(
                f"`npm ci` in {TS_DIR} failed (exit {out.returncode}):\n"
                f"{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
            )
        bun = _runnable_bun(modules, version)
        if bun is None:
            _fail_setup(
                f"npm installed the packages but no runnable bun {version} was found in "
                f"{modules} (looked at: {', '.join(map(str, _bun_candidates(modules)))})"
            )
        marker.write_text(digest + "\n")
        # Shown with -s: what the first run on a clean clone paid for the install.
        print(f"interop: npm ci took {time.monotonic() - started:.1f} s", file=sys.stderr)
        return bun


# -- the TypeScript server process -------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class TsServer:
    """``bun ts/server.ts <port>`` on 127.0.0.1: started, killed and restarted on one port.

    Everything the server writes to stdout (one JSON record a line: ``ready``, then an
    ``error`` record per error its router reports) is collected in :attr:`records`.
    Waits are event-driven and bounded; nothing sleeps.
    """

    def __init__(self, bun: Path, port: int | None = None) -> None:
        self.bun = bun
        self.port = port or free_port()
        self.records: list[dict[str, Any]] = []
        #: How many times the server started (and said it was ready).
        self.starts = 0
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=200)
        self._threads: list[threading.Thread] = []
        self._barriers = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Spawn the server and wait (bounded) for its ``ready`` record."""
        assert not self.running, "already running"
        deadline = time.monotonic() + timeout
        while not self._spawn(deadline):
            self._reap(kill=True)
            stderr = "\n".join(self._stderr)
            # The port still held by the previous process: try again until the deadline.
            if "EADDRINUSE" in stderr and time.monotonic() < deadline:
                with self._cond:
                    self._cond.wait(0.05)  # a bounded pause between bind attempts
                continue
            raise RuntimeError(
                f"the WS-Kit TS server did not start on port {self.port} in {timeout} s:\n{stderr}"
            )
        self.starts += 1

    def _spawn(self, deadline: float) -> bool:
        with self._cond:
            mark = len(self.records)
        self._stderr.clear()
        proc = subprocess.Popen(
            [str(self.bun), "server.ts", str(self.port)],
            cwd=TS_DIR,
            env={**os.environ, "NO_COLOR": "1", "DO_NOT_TRACK": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._proc = proc
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(proc,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

        def settled() -> bool:
            exited = proc.poll() is not None
            return exited or any(r.get("event") == "ready" for r in self.records[mark:])

        with self._cond:
            ready = self._cond.wait_for(settled, max(0.0, deadline - time.monotonic()))
            return ready and proc.poll() is None

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "output", "line": line}
            with self._cond:
                self.records.append(record)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())
        with self._cond:
            self._cond.notify_all()

    def _reap(self, *, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        for thread in self._threads:
            thread.join(5.0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    async def kill(self) -> None:
        """SIGKILL: a crash; clients see their connections reset."""
        await asyncio.to_thread(self._reap, kill=True)

    async def restart(self) -> None:
        """Start again on the same port (after :meth:`kill`)."""
        await asyncio.to_thread(self.start)

    def stop(self) -> None:
        self._reap(kill=False)

    # -- what the server reported

    def mark(self) -> int:
        with self._cond:
            return len(self.records)

    def errors(self, since: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self.records[since:] if r.get("event") == "error"]

    async def wait_error(
        self, predicate: Callable[[dict[str, Any]], bool], since: int = 0
    ) -> dict[str, Any]:
        """The first error record after ``since`` matching ``predicate`` (bounded wait)."""

        def find() -> dict[str, Any] | None:
            return next((r for r in self.errors(since) if predicate(r)), None)

        def wait() -> dict[str, Any] | None:
            with self._cond:
                self._cond.wait_for(lambda: find() is not None, SAFETY_TIMEOUT)
            return find()

        found = await asyncio.to_thread(wait)
        if found is None:
            raise AssertionError(
                f"the TS server reported no matching error in {SAFETY_TIMEOUT} s; "
                f"errors: {self.errors(since)}"
            )
        return found

    async def barrier(self) -> int:
        """Make sure every record caused by earlier traffic has been collected.

        Sends a frame of a reserved type that the server reports as an error and waits
        for that report: stdout is ordered, so everything before it is in. Returns the
        index just past the barrier's own record.
        """
        self._barriers += 1
        tag = f"$wskit-barrier-{self._barriers}"
        since = self.mark()
        async with ws_connect(self.url, open_timeout=SAFETY_TIMEOUT) as ws:
            await ws.send(json.dumps({"type": tag}))
            await self.wait_error(lambda r: tag in r["message"], since)
        with self._cond:
            for i in range(len(self.records) - 1, -1, -1):
                if tag in str(self.records[i].get("message")):
                    return i + 1
        raise AssertionError("barrier record vanished")  # pragma: no cover


class TsView:
    """One test's view of the session's TS server: its URL, and the errors it reported
    during the test. At teardown any error the test did not take fails the test."""

    def __init__(self, server: TsServer) -> None:
        self.server = server
        self._since = server.mark()

    @property
    def url(self) -> str:
        return self.server.url

    async def take_errors(self) -> list[dict[str, Any]]:
        """The errors reported since the test started (or the last take), consumed."""
        end = await self.server.barrier()
        errors = [r for r in self.server.errors(self._since) if not _is_barrier(r)]
        self._since = end
        return errors

    async def wait_error(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return await self.server.wait_error(predicate, self._since)


def _is_barrier(record: dict[str, Any]) -> bool:
    return "$wskit-barrier-" in str(record.get("message"))


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bun_executable() -> Path:
    """The pinned Bun, installed from npm by this fixture if needed (failing, not skipping)."""
    return ensure_ts_installed()


@pytest.fixture(scope="session")
def ts_session_server(bun_executable: Path) -> Iterator[TsServer]:
    server = TsServer(bun_executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def ts_server(ts_session_server: TsServer) -> AsyncIterator[TsView]:
    """The session's TS server; fails the test on errors it reported that were not taken."""
    view = TsView(ts_session_server)
    yield view
    left = await view.take_errors()
    assert not left, f"the TS server reported errors the test did not expect: {left}"


@pytest.fixture
async def private_ts_server(bun_executable: Path) -> AsyncIterator[TsServer]:
    """A TS server of the test's own (to kill and restart on the same port)."""
    server = TsServer(bun_executable)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def wskit_server() -> AsyncIterator[LoopbackServer]:
    """The equivalent wskit router on wskit-aiohttp, on a free loopback port."""
    async with loopback_server(create_app(build_wskit_router(), path="/ws"), path="/ws") as srv:
        yield srv


@pytest.fixture
def schemas() -> SimpleNamespace:
    return SCHEMAS


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Client]]:
    """``make_client(url, compat=False, **options)``: a wskit client, closed at teardown.

    ``compat=True`` asks for ``compat="ws-kit-ts"``: a client that never writes
    ``meta.timeoutMs``/``meta.idempotencyKey``, which a strict TS server rejects.
    """
    clients: list[Client] = []

    def make(url: str, *, compat: bool = False, **options: Any) -> Client:
        options.setdefault("reconnect", False)
        if compat:
            options["compat"] = "ws-kit-ts"
        client = Client(url, **options)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
def record_states() -> Callable[[Client], StateRecorder]:
    return functools.partial(StateRecorder, timeout=SAFETY_TIMEOUT)


# -- raw frames --------------------------------------------------------------------------

SENTINEL = "wskit-sentinel"


@dataclass
class Exchange:
    """What a server answered to one frame: the frames before the sentinel's reply, and
    the close code if it closed the connection instead."""

    frames: list[dict[str, Any]]
    close_code: int | None = None


async def exchange(url: str, frame: str | bytes) -> Exchange:
    """Send ``frame`` on a fresh connection, then an ``ECHO`` sentinel; collect every
    answer until the sentinel's reply (both servers answer one connection's frames in
    order, so what comes before it is the whole answer to ``frame``)."""
    sentinel = json.dumps(
        {"type": "ECHO", "meta": {"correlationId": SENTINEL}, "payload": {"text": "end"}}
    )
    frames: list[dict[str, Any]] = []

    async def collect(ws: Any) -> Exchange:
        while True:
            try:
                raw = await ws.recv()
            except websockets.ConnectionClosed as exc:
                return Exchange(frames, exc.rcvd.code if exc.rcvd else None)
            data = json.loads(raw)
            meta = data.get("meta") or {}
            if data.get("type") == "ECHO_REPLY" and meta.get("correlationId") == SENTINEL:
                return Exchange(frames)
            frames.append(data)

    async with ws_connect(url, open_timeout=SAFETY_TIMEOUT) as ws:
        await ws.send(frame)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(sentinel)
        return await asyncio.wait_for(collect(ws), SAFETY_TIMEOUT)


@pytest.fixture(name="exchange")
def exchange_fixture() -> Callable[[str, str | bytes], Any]:
    """:func:`exchange`, for test modules (they cannot import this conftest)."""
    return exchange
