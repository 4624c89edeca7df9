"""The router every conformance test serves, built on core alone.

Its schemas use a tiny strict codec (declared fields of ``str``/``int``,
unknown keys rejected), so the suite needs no validator package. Hooks and
observers record what the server did, for the tests to compare with what the
client saw on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from wskit.core.connection import Connection, ErrorInfo
from wskit.core.errors import Issue, ValidationError
from wskit.core.router import Router, create_router
from wskit.core.schema import MessageSchema, RpcSchema, define_message, define_rpc

__all__ = ["SuiteApp", "fields"]

_TYPE_NAMES = {str: "a string", int: "an integer"}


class _Fields:
    """A strict payload codec: exactly the declared fields, each of its type."""

    validator: str | None = None

    def __init__(self, spec: Mapping[str, type]) -> None:
        self.spec = dict(spec)
        self.field_names = frozenset(spec)

    def decode(self, data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise ValidationError("Validation failed", [Issue([], "Expected an object")])
        issues = [Issue([key], "Unrecognized key") for key in data if key not in self.spec]
        for key, kind in self.spec.items():
            if key not in data:
                issues.append(Issue([key], "Required"))
            elif type(data[key]) is not kind:
                issues.append(Issue([key], f"Expected {_TYPE_NAMES[kind]}"))
        if issues:
            raise ValidationError("Validation failed", issues)
        return data

    def encode(self, value: Any, *, validate: bool) -> Any:
        out = dict(value)
        if validate:
            self.decode(out)
        return out

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}


def fields(**spec: type) -> _Fields:
    """A payload codec for ``fields(text=str, n=int)`` (strict, no validator package)."""
    return _Fields(spec)


def _message(message_type: str, **spec: type) -> MessageSchema[Any]:
    return define_message(message_type, fields(**spec) if spec else None)


def _rpc(request: str, spec: dict[str, type], response: str, out: dict[str, type]) -> Any:
    return define_rpc(request, fields(**spec), response, fields(**out))


Ping = _message("PING", text=str)
Pong = _message("PONG", reply=str)
Boom = _message("BOOM")
Flood = _message("FLOOD", count=int, size=int)
Trickle = _message("TRICKLE", count=int, size=int)
Chunk = _message("CHUNK", i=int, data=str)
Hold = _message("HOLD")
Sink = _message("SINK", i=int, data=str)
GetUser: RpcSchema[Any, Any] = _rpc("GET_USER", {"userId": str}, "USER_DATA", {"name": str})
NoReply: RpcSchema[Any, Any] = _rpc("NO_REPLY", {"x": int}, "NO_REPLY_RESULT", {"x": int})
Slow: RpcSchema[Any, Any] = _rpc("SLOW", {"x": int}, "SLOW_RESULT", {"x": int})
WhoAmI: RpcSchema[Any, Any] = define_rpc("WHO_AM_I", None, "YOU_ARE", fields(userId=str))


class SuiteApp:
    """A router with the suite's routes, plus what its hooks saw.

    Routes: ``PING {text}`` → ``PONG {reply}``; ``BOOM`` raises; ``FLOOD
    {count, size}`` sends ``count`` ``CHUNK`` frames at once; ``TRICKLE {count,
    size}`` sends them one per loop iteration until the connection is closing;
    ``HOLD`` waits for :attr:`release`; ``SINK {i, data}`` records ``i``; RPCs
    ``GET_USER`` (progress, then reply), ``NO_REPLY``, ``SLOW`` (runs until
    cancelled) and ``WHO_AM_I`` (``ctx.data["user_id"]``).
    """

    def __init__(self, **router_options: Any) -> None:
        self.router: Router[Any] = create_router(**router_options)
        self.errors: list[tuple[BaseException, ErrorInfo]] = []
        self.opened: list[str] = []
        self.closed: list[tuple[str, int | None, str]] = []
        self.handled: list[int] = []
        #: ``(FIFO bytes, its bound)`` after every TRICKLE send.
        self.buffered: list[int] = []
        self.cancelled = asyncio.Event()
        self.slow_started = asyncio.Event()
        self.overflowed = asyncio.Event()
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.trickle_done = asyncio.Event()
        self.stale: list[Connection[Any]] = []
        self.stale_seen = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._define()

    def _define(self) -> None:
        router = self.router

        @router.on(Ping)
        async def ping(ctx: Any) -> None:
            ctx.send(Pong, {"reply": ctx.payload["text"]})

        @router.on(Boom)
        async def boom(ctx: Any) -> None:
            raise RuntimeError("secret internal detail")

        @router.on(Flood)
        async def flood(ctx: Any) -> None:
            data = "x" * ctx.payload["size"]
            for i in range(ctx.payload["count"]):
                ctx.send(Chunk, {"i": i, "data": data})

        @router.on(Trickle)
        async def trickle(ctx: Any) -> None:
            # A producer that yields between sends, so the socket drains what it can.
            data = "x" * ctx.payload["size"]
            conn = ctx.connection
            try:
                for i in range(ctx.payload["count"]):
                    if conn.close_requested is not None or conn.state != "open":
                        break
                    ctx.send(Chunk, {"i": i, "data": data})
                    self.buffered.append(conn.buffered_bytes)
                    await asyncio.sleep(0)
            finally:
                self.trickle_done.set()

        @router.on(Hold)
        async def hold(ctx: Any) -> None:
            self.held.set()
            await self.release.wait()

        @router.on(Sink)
        async def sink(ctx: Any) -> None:
            self.handled.append(ctx.payload["i"])

        @router.rpc(GetUser)
        async def get_user(ctx: Any) -> None:
            ctx.progress({"name": "partial"})
            ctx.reply({"name": f"user {ctx.payload['userId']}"})

        @router.rpc(NoReply)
        async def no_reply(ctx: Any) -> None:
            return None

        @router.rpc(Slow)
        async def slow(ctx: Any) -> None:
            ctx.on_cancel(self.cancelled.set)
            self.slow_started.set()
            await asyncio.Event().wait()  # until cancelled

        @router.rpc(WhoAmI)
        async def who_am_i(ctx: Any) -> None:
            ctx.reply({"userId": ctx.data.get("user_id", "anonymous")})

        @router.on_open
        async def opened(ctx: Any) -> None:
            self._all_closed.clear()
            self.opened.append(ctx.client_id)

        @router.on_close
        async def closed(ctx: Any) -> None:
            self.closed.append((ctx.client_id, ctx.code, ctx.reason))
            if len(self.closed) >= len(self.opened):
                self._all_closed.set()

        def observe(exc: BaseException, info: ErrorInfo) -> None:
            self.errors.append((exc, info))
            if getattr(exc, "code", None) == "RESOURCE_EXHAUSTED":
                self.overflowed.set()

        router.observe(observe)

    def on_stale(self, conn: Connection[Any]) -> None:
        """``HeartbeatOptions(on_stale=app.on_stale)``: records the connection."""
        self.stale.append(conn)
        self.stale_seen.set()

    async def all_closed(self, timeout: float = 5.0) -> None:
        """Wait until ``on_close`` ran for every connection that opened."""
        if len(self.closed) < len(self.opened):
            self._all_closed.clear()
            await asyncio.wait_for(self._all_closed.wait(), timeout)

    def connection(self) -> Connection[Any]:
        """The one open connection (``AssertionError`` unless exactly one)."""
        (conn,) = self.router.connections.values()
        return conn

    def error_codes(self) -> list[str | None]:
        return [getattr(exc, "code", None) for exc, _ in self.errors]
