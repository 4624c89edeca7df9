"""examples/redis_fanout: two server processes on one (private) Redis; a message said on
either instance reaches the members on both, once each."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from wskit.redis.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]


async def test_two_processes_fan_out_through_redis(redis_server: RedisServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.redis_fanout", "--redis", redis_server.url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, err.decode()) == (0, "")
    lines = out.decode().splitlines()
    assert lines == [
        "alice joined lobby on instance one",
        "bob joined lobby on instance two",
        "alice got alice@one: hi",
        "alice got bob@two: hello",
        "bob got alice@one: hi",
        "bob got bob@two: hello",
    ]
    readme = (ROOT / "examples/redis_fanout/README.md").read_text(encoding="utf-8")
    assert "\n".join(lines) in readme
