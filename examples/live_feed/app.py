"""The live feed's server and follower (see the package docstring).

Wire protocol (JSON text frames, ``{"type", "meta", "payload"}``):

- client -> server: ``FOLLOW {feed, since}`` (``since``: ``{"epoch", "offset"}``
  or ``null``), ``SNAPSHOT {feed}`` (RPC);
- server -> client: ``TICK {seq, price}`` with ``meta.topicPosition``,
  ``$ws:topic-status`` (subscribed / recovered / gap), ``SNAPSHOT_STATE``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as redis
from pydantic import BaseModel

from wskit.client import Client, Message, ReconnectOptions
from wskit.core import StreamPosition, TopicStatus
from wskit.pubsub import HistoryPolicy, get_pubsub, with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic
from wskit.redis import redis_pubsub

TOPIC_PREFIX = "feed:"
HISTORY = HistoryPolicy(max_messages=10_000, max_age_ms=10 * 60_000)

_log = logging.getLogger("examples.live_feed")


class Position(BaseModel):
    epoch: str
    offset: int


Tick = message("TICK", seq=int, price=float)
Follow = message("FOLLOW", feed=str, since=(Position | None, None))
Snapshot = rpc(
    "SNAPSHOT",
    {"feed": str},
    "SNAPSHOT_STATE",
    {"seq": (int | None, None), "price": (float | None, None), "position": Position},
)


def build_router(redis_url: str) -> Any:
    """A server instance: pub/sub over Redis with history on ``feed:*``."""
    client = redis.Redis.from_url(redis_url)
    adapter = redis_pubsub(client, channel_prefix="live-feed:")
    router = create_router().plugin(with_pydantic())
    router.plugin(with_pubsub(adapter, history={f"{TOPIC_PREFIX}*": HISTORY}))

    @router.on(Follow)
    async def follow(ctx: Any) -> None:
        # The client says where it stopped; the plugin replays what it missed
        # (or answers "gap" when the history cannot).
        await ctx.topics.subscribe(TOPIC_PREFIX + ctx.payload.feed, since=ctx.payload.since)

    @router.rpc(Snapshot)
    async def snapshot(ctx: Any) -> None:
        # The newest tick still in the history, and where it stands.
        topic = TOPIC_PREFIX + ctx.payload.feed
        top = await adapter.read_history(topic, None, limit=1, policy=HISTORY)
        newest = StreamPosition(top.epoch, max(top.top - 1, 0))
        last = await adapter.read_history(topic, newest, limit=1, policy=HISTORY)
        tick = last.entries[0].payload if last.entries else {}
        ctx.reply(
            {
                "seq": tick.get("seq"),
                "price": tick.get("price"),
                "position": {"epoch": top.epoch, "offset": top.top},
            }
        )

    router.redis_client = client
    return router


async def publish_forever(router: Any, feed: str, every_ms: int) -> None:
    """The feed: one tick every ``every_ms``; a tick Redis refused (while it is
    down) is published again, so accepted ticks have consecutive ``seq``."""
    seq, price = 1, 100.0
    while True:
        result = await router.publish(TOPIC_PREFIX + feed, Tick, {"seq": seq, "price": price})
        if result.ok:
            seq += 1
            price = round(price + (0.25 if seq % 3 else -0.5), 2)
        await asyncio.sleep(every_ms / 1000)


async def close_router(router: Any) -> None:
    await get_pubsub(router).close()
    await router.redis_client.aclose()


async def follow_feed(url: str, feed: str, *, as_json: bool) -> None:
    """Follow ``feed`` until interrupted: print ticks and statuses; on a gap,
    reload a snapshot."""

    def show(event: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(event), flush=True)
        elif event["event"] == "tick":
            print(f"tick {event['seq']:>6}  {event['price']:>8.2f}  @{event['offset']}", flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in event.items()), flush=True)

    async with Client(url, reconnect=ReconnectOptions(initial_delay_ms=50)) as client:

        def on_tick(msg: Message[Any]) -> None:
            position = msg.position
            show(
                {
                    "event": "tick",
                    "seq": msg.payload.seq,
                    "price": msg.payload.price,
                    "epoch": position.epoch if position else None,
                    "offset": position.offset if position else None,
                }
            )

        reloads: set[asyncio.Task[None]] = set()

        async def reload() -> None:
            state = await client.request(Snapshot, payload={"feed": feed})
            show({"event": "snapshot", "seq": state.seq, "price": state.price})

        def on_status(status: TopicStatus) -> None:
            # Synchronous, so it runs in frame order: before the next tick.
            position = status.position
            show(
                {
                    "event": "status",
                    "status": status.status,
                    "reason": status.reason,
                    "epoch": position.epoch if position else None,
                    "offset": position.offset if position else None,
                }
            )
            if status.gap:  # messages were lost for good: reload the state
                task = asyncio.ensure_future(reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

        client.on(Tick, on_tick)
        client.follow(
            TOPIC_PREFIX + feed,
            lambda since: client.send(Follow, payload={"feed": feed, "since": since}),
            on_status=on_status,
        )
        await asyncio.Event().wait()  # until cancelled (Ctrl+C)
