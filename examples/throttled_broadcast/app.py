"""Throttled broadcast: clients send cursor positions as fast as they move; the server keeps
only the latest position per user and broadcasts one ``CURSORS`` batch per 50 ms window, so
subscribers get at most 20 messages a second however fast anyone types."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from wskit.client import Client
from wskit.pubsub import with_pubsub
from wskit.pydantic import create_router, message, with_pydantic

WINDOW_MS = 50


class Point(BaseModel):
    x: int
    y: int


Move = message("MOVE", x=int, y=int)
Cursors = message("CURSORS", positions=dict[str, Point])


def build_router() -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub())
    latest: dict[str, Point] = {}  # user -> position, since the last broadcast
    publishing: set[asyncio.Task[Any]] = set()
    timer: Any = None
    router.stats = {"moves": 0, "broadcasts": 0}  # type: ignore[attr-defined]
    router.publishing = publishing  # type: ignore[attr-defined]  # tests wait on these

    def broadcast() -> None:
        nonlocal timer
        timer = None
        batch = dict(latest)
        latest.clear()
        router.stats["broadcasts"] += 1  # type: ignore[attr-defined]
        task = asyncio.get_running_loop().create_task(
            router.publish("cursors", Cursors, {"positions": batch})
        )
        publishing.add(task)
        task.add_done_callback(publishing.discard)

    @router.on_open
    async def watch(ctx: Any) -> None:
        await ctx.topics.subscribe("cursors")

    @router.on(Move)
    async def move(ctx: Any) -> None:
        nonlocal timer
        router.stats["moves"] += 1  # type: ignore[attr-defined]
        latest[ctx.data["user"]] = Point(x=ctx.payload.x, y=ctx.payload.y)
        if timer is None:  # the first move of a window starts its timer
            timer = router.clock.call_later(WINDOW_MS, broadcast)

    return router


def authenticate(request: Any) -> dict[str, str]:
    return {"user": request.query.get("user", "anon")}


async def demo(url: str) -> list[str]:
    seen: dict[str, Point] = {}
    batches = 0
    async with Client(url + "?user=alice") as alice, Client(url + "?user=bob") as viewer:
        final = asyncio.Event()

        def on_cursors(msg: Any) -> None:
            nonlocal batches
            batches += 1
            seen.update(msg.payload.positions)
            if seen.get("alice") == Point(x=199, y=398):
                final.set()

        viewer.on(Cursors, on_cursors)
        for i in range(200):
            alice.send(Move, payload={"x": i, "y": 2 * i})
        await asyncio.wait_for(final.wait(), 10)
    return [
        f"200 moves sent, the viewer got {'fewer than 20' if batches < 20 else batches} batches",
        f"last position seen: {seen['alice']!r}",
    ]
