"""The chat demo's server: rooms over the in-memory pub/sub, history as an RPC with
progress, and a static page at ``/``. The messages are in schemas.py.

A name the server refuses is not refused at the HTTP upgrade (a browser cannot read a 401
there): the WebSocket opens and is closed at once with code 4401 and the reason, which the
page shows.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from itertools import count
from pathlib import Path
from typing import Any

from aiohttp import web

from wskit.aiohttp import create_app
from wskit.core import CloseError
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

STATIC = Path(__file__).with_name("static")
HISTORY_SIZE = 200
CHUNK = 20
REFUSED_NAME = 4401  # close code for a name the server refuses (4000-4999: application)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
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
    async def welcome(ctx: Any) -> None:
        refused = ctx.data.get("refused")
        if refused:
            raise CloseError(REFUSED_NAME, refused)
        ctx.send(Welcome, {"user": ctx.data["user"]})

    @router.rpc(Join)
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
    async def leave(ctx: Any) -> None:
        name = topic(ctx.payload.room, ctx)
        if name is not None and ctx.topics.has(name):
            await ctx.topics.unsubscribe(name)
            text = f"{ctx.data['user']} left"
            await ctx.publish(name, Notice, {"room": ctx.payload.room, "text": text})

    @router.on(Say)
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
    async def gone(ctx: Any) -> None:
        for name in list(ctx.topics):
            room = name.removeprefix("room:")
            text = f"{ctx.data['user']} left"
            await ctx.router.publish(name, Notice, {"room": room, "text": text})

    return router


def make_app(router: Any | None = None) -> web.Application:
    """The demo's aiohttp app: the page at ``/``, the WebSocket at ``/ws``."""
    guests = count(1)

    def authenticate(request: web.Request) -> dict[str, str]:
        name = request.query.get("name", "").strip()
        if not name:
            return {"user": f"guest-{next(guests)}"}
        if not _NAME.match(name):
            # Accepted, then closed by on_open with the reason the page shows.
            return {"user": "", "refused": f"{NAME_RULE}: {name[:40]!r} is not one"}
        return {"user": name}

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    return create_app(router or build_router(), path="/ws", app=app, authenticate=authenticate)
