"""State channels: a client subscribes to a channel, gets a snapshot with its version, then
one small CHANGED message per change, numbered; a client that sees a gap in the numbers
(a lost message, a reconnect) asks for a fresh snapshot instead of drifting."""

from __future__ import annotations

import asyncio
from typing import Any

from wskit.client import Client
from wskit.pubsub import with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic

# -- the contract, shared by the server and the client ---------------------------------------

Watch = rpc(
    "WATCH", {"channel": str}, "SNAPSHOT", {"channel": str, "version": int, "state": dict[str, str]}
)
Set = message("SET", channel=str, key=str, value=str)
Changed = message("CHANGED", channel=str, version=int, key=str, value=str)


# -- the server ---------------------------------------------------------------------------


def build_router() -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub())
    channels: dict[str, tuple[int, dict[str, str]]] = {}  # name -> (version, state)

    @router.rpc(Watch)
    async def watch(ctx: Any) -> None:
        name = ctx.payload.channel
        await ctx.topics.subscribe(f"state:{name}")  # before the snapshot: no change is missed
        version, state = channels.get(name, (0, {}))
        ctx.reply({"channel": name, "version": version, "state": state})

    @router.on(Set)
    async def set_value(ctx: Any) -> None:
        name, key, value = ctx.payload.channel, ctx.payload.key, ctx.payload.value
        version, state = channels.get(name, (0, {}))
        channels[name] = (version + 1, {**state, key: value})
        change = {"channel": name, "version": version + 1, "key": key, "value": value}
        await ctx.publish(f"state:{name}", Changed, change)  # only what changed

    return router


# -- the client side ------------------------------------------------------------------------


class StateChannel:
    """A client's copy of one channel: applies numbered changes, resyncs on a gap."""

    def __init__(self, client: Client, channel: str) -> None:
        self.client = client
        self.channel = channel
        self.version = -1
        self.state: dict[str, str] = {}
        self.resyncs = 0
        self.changed = asyncio.Event()

    async def open(self) -> None:
        self.client.on(Changed, lambda msg: self.apply(msg.payload))
        await self.resync()

    async def resync(self) -> None:
        snapshot = await self.client.request(Watch, payload={"channel": self.channel})
        self.version, self.state = snapshot.version, dict(snapshot.state)
        self.changed.set()

    def apply(self, change: Any) -> None:
        if change.channel != self.channel or change.version <= self.version:
            return  # another channel, or already in the snapshot
        if change.version != self.version + 1:  # a gap: something was lost
            self.resyncs += 1
            asyncio.get_running_loop().create_task(self.resync())
            return
        self.version = change.version
        self.state[change.key] = change.value
        self.changed.set()

    async def wait_for_version(self, version: int) -> None:
        while self.version < version:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


async def demo(url: str) -> list[str]:
    """Two clients watch one channel; one edits; both converge. Returns the transcript."""
    lines = []
    async with Client(url) as alice, Client(url) as bob:
        a, b = StateChannel(alice, "doc-1"), StateChannel(bob, "doc-1")
        await a.open()
        await b.open()
        alice.send(Set, payload={"channel": "doc-1", "key": "title", "value": "Hello"})
        bob.send(Set, payload={"channel": "doc-1", "key": "body", "value": "World"})
        await a.wait_for_version(2)
        await b.wait_for_version(2)
        lines.append(f"alice sees v{a.version} {dict(sorted(a.state.items()))}")
        lines.append(f"bob   sees v{b.version} {dict(sorted(b.state.items()))}")
    return lines
