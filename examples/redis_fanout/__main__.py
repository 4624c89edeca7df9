"""Run the fan-out example: two server processes on one Redis, a client on each.
``python -m examples.redis_fanout [--redis redis://127.0.0.1:6379/0]``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from wskit.client import Client

from .server import Join, Said, Say


@asynccontextmanager
async def instance(name: str, redis_url: str) -> AsyncIterator[str]:
    """Start ``python -m examples.redis_fanout.server`` on a free port; yield its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.redis_fanout.server",
        "--name", name, "--port", "0", "--redis", redis_url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        yield line.split()[2]  # "wskit: serving ws://127.0.0.1:PORT/ (Ctrl+C to stop)"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.redis_fanout")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="(default: %(default)s)"
    )
    args = parser.parse_args()
    async with instance("one", args.redis) as one, instance("two", args.redis) as two:  # noqa: SIM117
        async with Client(one + "?user=alice") as alice, Client(two + "?user=bob") as bob:
            inbox: asyncio.Queue[str] = asyncio.Queue()
            for name, client in (("alice", alice), ("bob", bob)):

                def received(msg: Any, name: str = name) -> None:
                    said = msg.payload
                    inbox.put_nowait(f"{name} got {said.user}@{said.instance}: {said.text}")

                client.on(Said, received)
                joined = await client.request(Join, payload={"room": "lobby"})
                print(f"{name} joined lobby on instance {joined.instance}")
            alice.send(Say, payload={"room": "lobby", "text": "hi"})
            bob.send(Say, payload={"room": "lobby", "text": "hello"})
            got = [await asyncio.wait_for(inbox.get(), 10) for _ in range(4)]
    for line in sorted(got):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
