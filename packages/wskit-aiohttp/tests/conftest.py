"""Fixtures for wskit-aiohttp: real aiohttp servers on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import LoopbackServer, loopback_server
from wskit.core import ErrorInfo, RpcContext
from wskit.pydantic import create_router, message, rpc, with_pydantic

#: Safety net only: every wait below is for a frame or an event, never a sleep.
TIMEOUT = 5.0

Ping = message("PING", text=str)
Pong = message("PONG", reply=str)
Boom = message("BOOM")
Flood = message("FLOOD", count=int, size=int)
Chunk = message("CHUNK", i=int, data=str)
GetUser = rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str})
NoReply = rpc("NO_REPLY", {"x": int}, "NO_REPLY_RESULT", {"x": int})
Slow = rpc("SLOW", {"x": int}, "SLOW_RESULT", {"x": int})
WhoAmI = rpc("WHO_AM_I", None, "YOU_ARE", {"user_id": str})


class App:
    """A router with a few routes, plus what the hooks saw."""

    def __init__(self, **router_options: Any) -> None:
        self.router = create_router(**router_options).plugin(with_pydantic())
        self.errors: list[tuple[BaseException, ErrorInfo]] = []
        self.opened: list[str] = []
        self.closed: list[tuple[str, int | None, str]] = []
        self.cancelled: asyncio.Event = asyncio.Event()
        self.slow_started: asyncio.Event = asyncio.Event()
        self.stale: asyncio.Event = asyncio.Event()
        self.overflowed: asyncio.Event = asyncio.Event()
        router = self.router

        @router.on(Ping)
        async def ping(ctx: Any) -> None:
            ctx.send(Pong, {"reply": ctx.payload.text})

        @router.on(Boom)
        async def boom(ctx: Any) -> None:
            raise RuntimeError("secret internal detail")

        @router.on(Flood)
        async def flood(ctx: Any) -> None:
            data = "x" * ctx.payload.size
            for i in range(ctx.payload.count):
                ctx.send(Chunk, {"i": i, "data": data})

        @router.rpc(GetUser)
        async def get_user(ctx: RpcContext[Any, Any, Any]) -> None:
            ctx.progress({"name": "partial"})
            ctx.reply({"name": f"user {ctx.payload.user_id}"})

        @router.rpc(NoReply)
        async def no_reply(ctx: Any) -> None:
            return None

        @router.rpc(Slow)
        async def slow(ctx: RpcContext[Any, Any, Any]) -> None:
            ctx.on_cancel(self.cancelled.set)
            self.slow_started.set()
            await asyncio.Event().wait()  # until cancelled

        @router.rpc(WhoAmI)
        async def who_am_i(ctx: Any) -> None:
            ctx.reply({"user_id": ctx.data.get("user_id", "anonymous")})

        @router.on_open
        async def opened(ctx: Any) -> None:
            self.opened.append(ctx.client_id)

        @router.on_close
        async def closed(ctx: Any) -> None:
            self.closed.append((ctx.client_id, ctx.code, ctx.reason))

        def observe(exc: BaseException, info: ErrorInfo) -> None:
            self.errors.append((exc, info))
            if getattr(exc, "code", None) == "RESOURCE_EXHAUSTED":
                self.overflowed.set()

        router.observe(observe)


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def make_app() -> Callable[..., App]:
    """``make_app(**router_options)``: an :class:`App` with other router options."""
    return App


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[LoopbackServer]]]:
    """``await start(router, path="/ws", **handler_options)`` → a running server."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(router: Any, *, path: str = "/ws", **options: Any) -> LoopbackServer:
            application = create_app(router, path=path, **options)
            return await stack.enter_async_context(loopback_server(application, path=path))

        yield _start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    if msg.type is aiohttp.WSMsgType.TEXT:
        return json.loads(msg.data)
    return msg


@pytest.fixture
def recv() -> Callable[[aiohttp.ClientWebSocketResponse], Awaitable[Any]]:
    """``await recv(ws)``: the next frame as JSON (or the raw message: CLOSE...)."""
    return _recv


@pytest.fixture
def wait_for() -> Callable[[Awaitable[Any]], Awaitable[Any]]:
    """``await wait_for(aw)``: await with the safety-net timeout."""

    async def _wait_for(aw: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(aw, TIMEOUT)

    return _wait_for
