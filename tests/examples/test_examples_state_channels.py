"""examples/state_channels: clients converge, and a gap in the numbers forces a resync."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from examples.state_channels.app import Set, StateChannel, build_router, demo
from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server
from wskit.client import Client

ROOT = Path(__file__).resolve().parents[2]


async def test_two_clients_converge() -> None:
    async with loopback_server(create_app(build_router())) as server:
        assert await demo(server.url) == [
            "alice sees v2 {'body': 'World', 'title': 'Hello'}",
            "bob   sees v2 {'body': 'World', 'title': 'Hello'}",
        ]


async def test_a_gap_forces_a_resync() -> None:
    async with loopback_server(create_app(build_router())) as server:  # noqa: SIM117
        async with Client(server.url) as writer, Client(server.url) as reader:
            channel = StateChannel(reader, "doc")
            await channel.open()
            assert (channel.version, channel.state) == (0, {})
            for i in range(3):
                writer.send(Set, payload={"channel": "doc", "key": f"k{i}", "value": str(i)})
            await channel.wait_for_version(3)
            assert channel.resyncs == 0
            # A change numbered past the next one means something was lost: resync.
            channel.apply(SimpleNamespace(channel="doc", version=9, key="x", value="lost?"))
            writer.send(Set, payload={"channel": "doc", "key": "k3", "value": "3"})
            await channel.wait_for_version(4)
            assert channel.resyncs == 1
            assert channel.state == {"k0": "0", "k1": "1", "k2": "2", "k3": "3"}
