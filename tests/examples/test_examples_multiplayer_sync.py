"""examples/multiplayer_sync: per-connection data, version conflicts answered ABORTED with
the current board, taken cells refused for good, every player sees every change."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.multiplayer_sync.app import Board, Claim, Join, build_router
from wskit.core import RpcError
from wskit.core.testing import Harness

ROOT = Path(__file__).resolve().parents[2]


async def test_conflicts_and_per_connection_data() -> None:
    async with Harness(build_router()) as h:
        alice = await h.connect(data={"name": "alice"})
        bob = await h.connect(data={"name": "bob"})
        assert (alice.data["colour"], bob.data["colour"]) == ("red", "blue")
        assert await alice.request(Join) == {"colour": "red", "version": 0, "board": {}}
        assert (await bob.request(Join))["colour"] == "blue"

        assert await alice.request(Claim, {"cell": "a1", "basedOn": 0}) == {"version": 1}
        with pytest.raises(RpcError) as stale:
            await bob.request(Claim, {"cell": "b2", "basedOn": 0})
        assert stale.value.code == "ABORTED"
        assert stale.value.details == {"version": 1, "board": {"a1": "red"}}
        assert await bob.request(Claim, {"cell": "b2", "basedOn": 1}) == {"version": 2}

        with pytest.raises(RpcError) as taken:
            await bob.request(Claim, {"cell": "a1", "basedOn": 2})
        assert (taken.value.code, taken.value.message) == ("ALREADY_EXISTS", "a1 belongs to red")

        for conn in (alice, bob):
            assert conn.payloads(Board) == [
                {"version": 1, "board": {"a1": "red"}, "by": "alice"},
                {"version": 2, "board": {"a1": "red", "b2": "blue"}, "by": "bob"},
            ]
