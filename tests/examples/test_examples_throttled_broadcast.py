"""examples/throttled_broadcast: one batch per window with the latest position per user,
nothing before the window ends (driven by the fake clock), nothing when nobody moved."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from examples.throttled_broadcast.app import WINDOW_MS, Cursors, Move, build_router
from wskit.core.testing import Harness

ROOT = Path(__file__).resolve().parents[2]


async def advance(h: Harness[Any], router: Any, ms: float) -> None:
    """Move the fake clock; then let the broadcast the timer started reach everyone."""
    await h.advance(ms)
    await asyncio.gather(*router.publishing)
    await h.flush()


async def test_one_batch_per_window_with_the_latest_positions() -> None:
    router = build_router()
    async with Harness(router) as h:
        alice = await h.connect(data={"user": "alice"})
        bob = await h.connect(data={"user": "bob"})
        viewer = await h.connect(data={"user": "viewer"})
        for i in range(100):
            alice.send(Move, {"x": i, "y": i})
            if i % 2:
                bob.send(Move, {"x": -i, "y": 0})
        await h.flush()
        assert viewer.payloads(Cursors) == []  # the window is still open
        await advance(h, router, WINDOW_MS - 1)
        assert viewer.payloads(Cursors) == []
        await advance(h, router, 1)
        expected = {"positions": {"alice": {"x": 99, "y": 99}, "bob": {"x": -99, "y": 0}}}
        for conn in (alice, bob, viewer):
            assert conn.payloads(Cursors) == [expected]

        await advance(h, router, 10 * WINDOW_MS)  # nobody moved: nothing is sent
        assert len(viewer.payloads(Cursors)) == 1
        bob.send(Move, {"x": 1, "y": 1})
        await advance(h, router, WINDOW_MS)
        assert viewer.payloads(Cursors)[-1] == {"positions": {"bob": {"x": 1, "y": 1}}}
    assert router.stats == {"moves": 151, "broadcasts": 2}
