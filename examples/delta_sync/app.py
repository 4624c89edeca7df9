"""Delta sync: the server keeps a versioned document and a bounded log of recent changes.
A client that (re)connects says which version it has (``SYNC {since}``) and gets only the
changes after it, or the whole document when it is too far behind for the log."""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import BaseModel

from wskit.client import Client
from wskit.pubsub import with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic

LOG_SIZE = 50  # changes the server remembers; older clients get a snapshot


class Op(BaseModel):
    version: int
    key: str
    value: str


class SyncReply(BaseModel):
    mode: str  # "delta" or "snapshot"
    version: int
    ops: list[Op] = []
    state: dict[str, str] = {}


Sync = rpc("SYNC", {"since": int}, "SYNCED", SyncReply)
Put = message("PUT", key=str, value=str)
Changed = message("CHANGED", op=Op)


def build_router() -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub())
    doc: dict[str, str] = {}
    log: deque[Op] = deque(maxlen=LOG_SIZE)
    version = 0

    @router.rpc(Sync)
    async def sync(ctx: Any) -> None:
        await ctx.topics.subscribe("doc")
        since = ctx.payload.since
        oldest = log[0].version if log else version + 1
        if oldest - 1 <= since <= version:  # the log holds every change after `since`
            ops = [op for op in log if op.version > since]
            ctx.reply(SyncReply(mode="delta", version=version, ops=ops))
        else:  # unknown to the log (too old, or from another server's history)
            ctx.reply(SyncReply(mode="snapshot", version=version, state=doc))

    @router.on(Put)
    async def put(ctx: Any) -> None:
        nonlocal version
        version += 1
        op = Op(version=version, key=ctx.payload.key, value=ctx.payload.value)
        doc[op.key] = op.value
        log.append(op)
        await ctx.publish("doc", Changed, {"op": op})

    return router


class Replica:
    """A client's copy: resyncs with ``SYNC {since}`` every time the connection opens."""

    def __init__(self, url: str) -> None:
        self.client = Client(url)
        self.version = 0
        self.state: dict[str, str] = {}
        self.last_mode = ""
        self.client.on(Changed, lambda msg: self._apply(msg.payload.op))

    def _apply(self, op: Op) -> None:
        if op.version == self.version + 1:
            self.state[op.key] = op.value
            self.version = op.version

    async def connect(self) -> None:
        await self.client.connect()
        reply = await self.client.request(Sync, payload={"since": self.version})
        self.last_mode = reply.mode
        if reply.mode == "snapshot":
            self.state, self.version = dict(reply.state), reply.version
        for op in reply.ops:
            self._apply(op)

    async def close(self) -> None:
        await self.client.close()


async def demo(url: str) -> list[str]:
    lines = []
    async with Client(url) as writer:
        replica = Replica(url)
        await replica.connect()
        await replica.close()  # goes offline
        for i in range(3):
            writer.send(Put, payload={"key": f"k{i}", "value": str(i)})
        await writer.request(Sync, payload={"since": 0})  # the writes are applied
        await replica.connect()
        lines.append(f"back after 3 changes: {replica.last_mode}, v{replica.version}")
        await replica.close()
        for i in range(LOG_SIZE + 10):
            writer.send(Put, payload={"key": f"k{i % 5}", "value": f"x{i}"})
        await writer.request(Sync, payload={"since": 0})
        await replica.connect()
        lines.append(f"back after {LOG_SIZE + 10} changes: {replica.last_mode}, v{replica.version}")
        await replica.close()
    return lines
