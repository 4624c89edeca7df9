"""The same client against a server whose schemas are attrs classes (wskit.attrs):
typed payloads in and out, progress, errors and handlers."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from aiohttp import web

from wskit.aiohttp import create_app
from wskit.attrs import create_router, message, rpc, with_attrs
from wskit.client import Client, Message
from wskit.core.errors import RpcError, ValidationError


@attrs.define
class Query:
    term: str
    limit: int


@attrs.define
class Hits:
    count: int


Search = rpc("SEARCH", Query, "HITS", Hits)
Tick = message("TICK", n=int)
Start = message("START", n=int)


@pytest.fixture
async def attrs_server() -> Any:
    router = create_router().plugin(with_attrs())

    @router.rpc(Search)
    async def search(ctx: Any) -> None:
        if ctx.payload.term == "missing":
            raise RpcError("NOT_FOUND", "no such term")
        for i in range(ctx.payload.limit):
            ctx.progress(Hits(count=i))
        ctx.reply(Hits(count=ctx.payload.limit))

    @router.on(Start)
    async def start(ctx: Any) -> None:
        for i in range(ctx.payload.n):
            ctx.send(Tick, {"n": i})

    runner = web.AppRunner(create_app(router, path="/ws"), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()


async def test_attrs_request_progress_and_errors(attrs_server: str) -> None:
    async with Client(attrs_server, reconnect=False) as client:
        call = client.call(Search, payload=Query(term="x", limit=3))
        progress = [h async for h in call.progress()]
        result = await call
        assert progress == [Hits(0), Hits(1), Hits(2)]
        assert result == Hits(3) and isinstance(result, Hits)
        with pytest.raises(RpcError) as info:
            await client.request(Search, payload=Query(term="missing", limit=1))
        assert info.value.code == "NOT_FOUND"
        with pytest.raises(ValidationError):
            await client.request(Search, payload={"term": "x", "limit": "many"})


async def test_attrs_handlers_and_stream(attrs_server: str) -> None:
    async with Client(attrs_server, reconnect=False) as client:
        got: list[int] = []
        done = asyncio.Event()

        def on_tick(msg: Message[Any]) -> None:
            got.append(msg.payload.n)
            if len(got) == 3:
                done.set()

        client.on(Tick, on_tick)
        stream = client.stream(Tick)
        client.send(Start, payload={"n": 3})
        await asyncio.wait_for(done.wait(), 10)
        assert got == [0, 1, 2]
        assert [(await anext(stream)).payload.n for _ in range(3)] == [0, 1, 2]
