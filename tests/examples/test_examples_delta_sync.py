"""examples/delta_sync: a client back from a short outage gets only the changes it missed;
one back from a long outage gets a snapshot; either way its copy equals the server's."""

from __future__ import annotations

from pathlib import Path

from examples.delta_sync.app import LOG_SIZE, Put, Replica, Sync, build_router
from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server
from wskit.client import Client

ROOT = Path(__file__).resolve().parents[2]


async def test_delta_then_snapshot() -> None:
    async with loopback_server(create_app(build_router())) as server:  # noqa: SIM117
        async with Client(server.url) as writer:
            replica = Replica(server.url)
            await replica.connect()
            assert (replica.last_mode, replica.version, replica.state) == ("delta", 0, {})
            writer.send(Put, payload={"key": "a", "value": "1"})
            await writer.request(Sync, payload={"since": 0})
            await replica.close()

            writer.send(Put, payload={"key": "b", "value": "2"})
            writer.send(Put, payload={"key": "a", "value": "3"})
            missed = await writer.request(Sync, payload={"since": 1})
            assert [(op.version, op.key) for op in missed.ops] == [(2, "b"), (3, "a")]
            await replica.connect()
            assert (replica.last_mode, replica.version) == ("delta", 3)
            assert replica.state == {"a": "3", "b": "2"}
            await replica.close()

            for i in range(LOG_SIZE + 1):
                writer.send(Put, payload={"key": "c", "value": str(i)})
            full = await writer.request(Sync, payload={"since": 0})
            await replica.connect()
            assert (replica.last_mode, replica.version) == ("snapshot", full.version)
            assert replica.state == full.state == {"a": "3", "b": "2", "c": str(LOG_SIZE)}
            await replica.close()
