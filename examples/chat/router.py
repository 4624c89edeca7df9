"""The chat demo's router, with no server attached: rooms over the in-memory
pub/sub and history as an RPC with progress. Served over aiohttp by
:mod:`examples.chat.app` and inside FastAPI by :mod:`examples.fastapi_chat`.

Wire protocol (JSON text frames, ``{"type", "meta", "payload"}``):

- client → server: ``JOIN {room}``, ``LEAVE {room}``, ``SAY {room, text}``,
  ``HISTORY {room}`` (RPC: ``meta.correlationId``; streamed as
  ``$ws:rpc-progress`` chunks, then a final ``HISTORY_CHUNK`` with ``done: true``).
- server → client: ``WELCOME {user}``, ``MESSAGE {room, user, text, ts}``,
  ``NOTICE {room, text}``.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from itertools import count
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from wskit.core.asyncapi import sends
from wskit.pubsub import PubSubError, with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic

STATIC = Path(__file__).with_name("static")
HISTORY_SIZE = 200
CHUNK = 20
NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
_ROOM = re.compile(r"^[a-z0-9_-]{1,32}$")


class Line(BaseModel):
    user: str
    text: str
    ts: int


class HistoryChunk(BaseModel):
    room: str
    lines: list[Line]
    done: bool


Join = message("JOIN", room=str)
Leave = message("LEAVE", room=str)
Say = message("SAY", room=str, text=(str, Field(min_length=1, max_length=500)))
Welcome = message("WELCOME", user=str)
Message = message("MESSAGE", room=str, user=str, text=str, ts=int)
Notice = message("NOTICE", room=str, text=str)
History = rpc("HISTORY", {"room": str}, "HISTORY_CHUNK", HistoryChunk)


def build_router() -> Any:
    """A fresh router with its own rooms (one per server instance)."""
    router = (
        create_router().plugin(with_pydantic()).plugin(with_pubsub(max_topics_per_connection=20))
    )
    history: dict[str, deque[Line]] = defaultdict(lambda: deque(maxlen=HISTORY_SIZE))

    def topic(room: str, ctx: Any) -> str:
        if not _ROOM.match(room):
            ctx.error("INVALID_ARGUMENT", "Room names are 1-32 of a-z 0-9 _ -")
            raise _Rejected
        return f"room:{room}"

    @router.on_open
    @sends(Welcome)
    async def welcome(ctx: Any) -> None:
        ctx.send(Welcome, {"user": ctx.data["user"]})

    @router.on(Join)
    @sends(Notice, topic="room:{room}")
    async def join(ctx: Any) -> None:
        try:
            name = topic(ctx.payload.room, ctx)
            if ctx.topics.has(name):
                return
            await ctx.topics.subscribe(name)
        except _Rejected:
            return
        except PubSubError as exc:
            ctx.error("RESOURCE_EXHAUSTED", str(exc))
            return
        text = f"{ctx.data['user']} joined"
        await ctx.publish(name, Notice, {"room": ctx.payload.room, "text": text})

    @router.on(Leave)
    @sends(Notice, topic="room:{room}")
    async def leave(ctx: Any) -> None:
        try:
            name = topic(ctx.payload.room, ctx)
        except _Rejected:
            return
        if ctx.topics.has(name):
            await ctx.topics.unsubscribe(name)
            text = f"{ctx.data['user']} left"
            await ctx.publish(name, Notice, {"room": ctx.payload.room, "text": text})

    @router.on(Say)
    @sends(Message, topic="room:{room}")
    async def say(ctx: Any) -> None:
        try:
            name = topic(ctx.payload.room, ctx)
        except _Rejected:
            return
        if not ctx.topics.has(name):
            ctx.error("FAILED_PRECONDITION", f"Join {ctx.payload.room!r} first")
            return
        line = Line(user=ctx.data["user"], text=ctx.payload.text, ts=int(time.time() * 1000))
        history[ctx.payload.room].append(line)
        await ctx.publish(name, Message, {"room": ctx.payload.room, **line.model_dump()})

    @router.rpc(History)
    async def get_history(ctx: Any) -> None:
        room = ctx.payload.room
        if not _ROOM.match(room):
            ctx.error("INVALID_ARGUMENT", "Room names are 1-32 of a-z 0-9 _ -")
            return
        lines = list(history.get(room, ()))
        # Stream the history in chunks (progress), then the last one as the reply.
        while len(lines) > CHUNK:
            chunk, lines = lines[:CHUNK], lines[CHUNK:]
            ctx.progress(HistoryChunk(room=room, lines=chunk, done=False))
        ctx.reply(HistoryChunk(room=room, lines=lines, done=True))

    @router.on_close
    @sends(Notice, topic="room:{room}")
    async def gone(ctx: Any) -> None:
        for name in list(ctx.topics):
            room = name.removeprefix("room:")
            text = f"{ctx.data['user']} left"
            await ctx.router.publish(name, Notice, {"room": room, "text": text})

    return router


class _Rejected(Exception):
    pass


def guest_names() -> Any:
    """``user_for(name)``: the connection data for a ``?name=`` value (a guest
    name when empty), or ``None`` for an invalid name (HTTP 401)."""
    guests = count(1)

    def user_for(name: str) -> dict[str, str] | None:
        name = name.strip()
        if not name:
            return {"user": f"guest-{next(guests)}"}
        return {"user": name} if NAME.match(name) else None

    return user_for
