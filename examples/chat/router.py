"""The chat demo's router, with no server attached: rooms over the in-memory pub/sub and
history as an RPC with progress. Served over aiohttp by :mod:`examples.chat.app` and inside
FastAPI by :mod:`examples.fastapi_chat`; the messages are in :mod:`examples.chat.schemas`.

A connection whose name was refused (see :func:`guest_names`) is closed as soon as it opens,
with code 4401 and the reason, which a browser page can read (it cannot read an HTTP 401).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from itertools import count
from pathlib import Path
from typing import Any

from wskit.core import CloseError
from wskit.core.asyncapi import sends
from wskit.pubsub import PubSubError, with_pubsub
from wskit.pydantic import create_router, with_pydantic

from .schemas import (
    NAME_RULE,
    ROOM_RULE,
    History,
    HistoryChunk,
    Join,
    JoinedRoom,
    Leave,
    Line,
    Message,
    Notice,
    Say,
    Welcome,
)

__all__ = [
    "CHUNK",
    "HISTORY_SIZE",
    "NAME",
    "REFUSED_NAME",
    "STATIC",
    "History",
    "HistoryChunk",
    "Join",
    "Leave",
    "Line",
    "Message",
    "Notice",
    "Say",
    "Welcome",
    "build_router",
    "guest_names",
]

STATIC = Path(__file__).with_name("static")
HISTORY_SIZE = 200
CHUNK = 20
REFUSED_NAME = 4401  # close code for a name the server refuses (4000-4999: application)
NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
_ROOM = re.compile(r"^[a-z0-9_-]{1,32}$")


def build_router() -> Any:
    """A fresh router with its own rooms (one per server instance)."""
    router = (
        create_router().plugin(with_pydantic()).plugin(with_pubsub(max_topics_per_connection=20))
    )
    history: dict[str, deque[Line]] = defaultdict(lambda: deque(maxlen=HISTORY_SIZE))

    def topic(room: str, ctx: Any) -> str | None:
        """The room's topic, or None after answering INVALID_ARGUMENT (never renamed)."""
        if not _ROOM.match(room):
            ctx.error("INVALID_ARGUMENT", f"{ROOM_RULE}: {room!r}")
            return None
        return f"room:{room}"

    @router.on_open
    @sends(Welcome)
    async def welcome(ctx: Any) -> None:
        refused = ctx.data.get("refused")
        if refused:
            raise CloseError(REFUSED_NAME, refused)
        ctx.send(Welcome, {"user": ctx.data["user"]})

    @router.rpc(Join)
    @sends(Notice, topic="room:{room}")
    async def join(ctx: Any) -> None:
        name = topic(ctx.payload.room, ctx)
        if name is None:
            return
        if not ctx.topics.has(name):
            try:
                await ctx.topics.subscribe(name)
            except PubSubError as exc:
                ctx.error("RESOURCE_EXHAUSTED", str(exc))
                return
            text = f"{ctx.data['user']} joined"
            await ctx.publish(name, Notice, {"room": ctx.payload.room, "text": text})
        ctx.reply(JoinedRoom(room=ctx.payload.room))

    @router.on(Leave)
    @sends(Notice, topic="room:{room}")
    async def leave(ctx: Any) -> None:
        name = topic(ctx.payload.room, ctx)
        if name is not None and ctx.topics.has(name):
            await ctx.topics.unsubscribe(name)
            text = f"{ctx.data['user']} left"
            await ctx.publish(name, Notice, {"room": ctx.payload.room, "text": text})

    @router.on(Say)
    @sends(Message, topic="room:{room}")
    async def say(ctx: Any) -> None:
        name = topic(ctx.payload.room, ctx)
        if name is None:
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
        if topic(room, ctx) is None:
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


def guest_names() -> Any:
    """``user_for(name)``: the connection data for a ``?name=`` value: a guest name when
    empty, and for a name the server refuses, data that makes the router close the
    connection with 4401 and the reason as soon as it opens."""
    guests = count(1)

    def user_for(name: str) -> dict[str, str]:
        name = name.strip()
        if not name:
            return {"user": f"guest-{next(guests)}"}
        if not NAME.match(name):
            return {"user": "", "refused": f"{NAME_RULE}: {name[:40]!r} is not one"}
        return {"user": name}

    return user_for
