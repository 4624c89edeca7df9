"""Private ``redis-server`` processes for tests and benchmarks.

:class:`RedisServer` spawns the Debian ``redis-server`` binary on a free
loopback port with persistence off, in its own temporary directory, and can
kill and restart it on the same port (outage tests). It never connects to a
Redis it did not start. A missing binary is an error, never a skip::

    async with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        ...
        await server.kill()       # SIGKILL: an outage
        await server.start()      # same port, empty data set

``RedisServer(password="...")`` requires ``AUTH`` (``requirepass``); its
``url`` then carries the password. ``RedisServer(appendonly=True)`` turns the
append-only file on with ``appendfsync always`` (every write is on disk before
Redis answers), so a killed server restarts with its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RedisServer", "RedisServerMissing", "free_port"]


class RedisServerMissing(RuntimeError):
    """The ``redis-server`` binary is not installed."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One private ``redis-server`` on ``127.0.0.1:<port>`` (a free port by default)."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str = "redis-server",
        password: str | None = None,
        appendonly: bool = False,
    ) -> None:
        path = shutil.which(executable)
        if path is None:
            raise RedisServerMissing(
                f"{executable!r} not found on PATH: install it (Debian: apt-get install "
                f"redis-server); the Redis tests need a real server and do not skip"
            )
        self.executable = path
        self.port = port or free_port(self.host)
        self.password = password
        self.appendonly = appendonly
        self._dir = tempfile.TemporaryDirectory(prefix="wskit-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        #: How many times the server process was started.
        self.starts = 0

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and wait (bounded) until it answers ``PING``."""
        if self.running:
            return
        auth = ["--requirepass", self.password] if self.password else []
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else [
            "--appendonly", "no"
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", self.host,
                "--save", "",
                *aof,
                "--dir", self._dir.name,
                "--protected-mode", "yes",
                "--daemonize", "no",
                "--loglevel", "warning",
                *auth,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"redis-server exited at start on port {self.port}: {err}")
            if await self._ping():
                return
            if time.monotonic() > deadline:
                await self.kill()
                raise TimeoutError(f"redis-server on port {self.port} not ready in {timeout}s")
            await asyncio.sleep(0.01)

    async def _ping(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 1.0
            )
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            line = await asyncio.wait_for(reader.readline(), 1.0)
            # Answering at all is enough: with requirepass, PING gets -NOAUTH.
            return line.startswith((b"+PONG", b"-NOAUTH"))
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def kill(self) -> None:
        """SIGKILL the server (an outage: clients see their sockets reset)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait)
        if proc.stderr is not None:
            proc.stderr.close()

    async def stop(self) -> None:
        """Terminate the server and remove its directory."""
        await self.kill()
        self._dir.cleanup()

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"
