"""Fixtures: a real wskit-aiohttp server on loopback that can be stopped and restarted
on the same port, its router, the schemas both sides share, client helpers, and a raw
``websockets`` server that sends whatever frames a test gives it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from wskit.aiohttp import create_app, token_from_request
from wskit.client import Client
from wskit.client.testing import StateRecorder
from wskit.core.errors import RpcError
from wskit.pydantic import create_router, message, rpc, with_pydantic

SAFETY_TIMEOUT = 10.0  # seconds; a safety net only, never the thing a test waits for

# -- schemas shared by client and server ------------------------------------------------

Echo = rpc("ECHO", {"text": str}, "ECHO_REPLY", {"text": str})
Count = rpc("COUNT", {"n": int}, "COUNT_DONE", {"value": int})
Fail = rpc(
    "FAIL",
    {"code": str, "retry_after_ms": (int | None, None), "retryable": (bool | None, None)},
    "FAIL_REPLY",
    {"ok": bool},
)
Crash = rpc("CRASH", None, "CRASH_REPLY", {"ok": bool})
Slow = rpc("SLOW", {"tag": str}, "SLOW_REPLY", {"tag": str})
Work = rpc("WORK", {"job": str}, "WORK_DONE", {"job": str, "server": int})
Note = message("NOTE", text=str)
NoteAck = message("NOTE_ACK", text=str)
Push = message("PUSH", seq=int)
Whoami = rpc("WHOAMI", None, "WHOAMI_REPLY", {"token": str})
#: Nobody answers it: the raw server's tests push its reply, progress and errors by hand.
Hold = rpc("HOLD", {"n": int}, "HOLD_REPLY", {"n": int})

# Client-only variants that disagree with the server on purpose.
EchoExtra = rpc("ECHO", {"text": str, "extra": int}, "ECHO_REPLY", {"text": str})
EchoWrongReply = rpc("ECHO", {"text": str}, "ECHO_REPLY", {"text": int})
Nope = rpc("NOPE", {"x": int}, "NOPE_REPLY", {"x": int})

SCHEMAS = SimpleNamespace(
    Echo=Echo,
    Count=Count,
    Fail=Fail,
    Crash=Crash,
    Slow=Slow,
    Work=Work,
    Note=Note,
    NoteAck=NoteAck,
    Push=Push,
    Whoami=Whoami,
    EchoExtra=EchoExtra,
    EchoWrongReply=EchoWrongReply,
    Nope=Nope,
    Hold=Hold,
)


@dataclass
class ServerState:
    """What the server saw; survives server restarts (one per test)."""

    notes: list[str] = field(default_factory=list)
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    cancelled: dict[str, asyncio.Event] = field(default_factory=dict)
    cancel_reasons: dict[str, str | None] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    work_received: list[tuple[int, str, str | None]] = field(default_factory=list)
    work_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    fail_calls: int = 0
    fail_plan: list[str] = field(default_factory=list)
    tokens: list[str | None] = field(default_factory=list)
    require_token: bool = False
    generation: int = 0
    notes_arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def started_event(self, tag: str) -> asyncio.Event:
        return self.started.setdefault(tag, asyncio.Event())

    def cancelled_event(self, tag: str) -> asyncio.Event:
        return self.cancelled.setdefault(tag, asyncio.Event())

    async def wait_notes(self, count: int) -> list[str]:
        async with self.notes_arrived:
            await asyncio.wait_for(
                self.notes_arrived.wait_for(lambda: len(self.notes) >= count), SAFETY_TIMEOUT
            )
        return list(self.notes)


def build_router(state: ServerState) -> Any:
    router = create_router(max_concurrency=8).plugin(with_pydantic())

    @router.rpc(Echo)
    async def echo(ctx: Any) -> None:
        ctx.reply({"text": ctx.payload.text})

    @router.rpc(Count)
    async def count(ctx: Any) -> None:
        for i in range(ctx.payload.n):
            ctx.progress({"value": i})
        ctx.reply({"value": ctx.payload.n})

    @router.rpc(Fail)
    async def fail(ctx: Any) -> None:
        state.fail_calls += 1
        code = state.fail_plan.pop(0) if state.fail_plan else ctx.payload.code
        if code == "OK":
            ctx.reply({"ok": True})
            return
        kwargs: dict[str, Any] = {}
        if ctx.payload.retry_after_ms is not None:
            kwargs["retry_after_ms"] = ctx.payload.retry_after_ms
        if ctx.payload.retryable is not None:
            kwargs["retryable"] = ctx.payload.retryable
        raise RpcError(code, "boom", {"attempt": state.fail_calls}, **kwargs)

    @router.rpc(Crash)
    async def crash(ctx: Any) -> None:
        raise RuntimeError("secret internals")

    @router.rpc(Slow)
    async def slow(ctx: Any) -> None:
        tag = ctx.payload.tag
        cancelled = state.cancelled_event(tag)

        def on_cancel() -> None:
            state.cancel_reasons[tag] = ctx.cancel_reason
            cancelled.set()

        ctx.on_cancel(on_cancel)
        state.started_event(tag).set()
        await state.release.wait()
        ctx.reply({"tag": tag})

    @router.rpc(Work)
    async def work(ctx: Any) -> None:
        state.work_received.append(
            (state.generation, ctx.payload.job, ctx.meta.get("idempotencyKey"))
        )
        state.work_arrived.set()
        state.started_event("work:" + ctx.payload.job).set()
        await state.release.wait()
        ctx.reply({"job": ctx.payload.job, "server": state.generation})

    @router.on(Note)
    async def note(ctx: Any) -> None:
        text = ctx.payload.text
        async with state.notes_arrived:
            state.notes.append(text)
            state.notes_arrived.notify_all()
        if text.startswith("push:"):
            for i in range(int(text[5:])):
                ctx.send(Push, {"seq": i})
        elif text == "bad-push":
            ctx.connection.send_frame('{"type":"PUSH","meta":{},"payload":{"seq":"x"}}')
        elif text == "garbage":
            ctx.connection.send_frame("not json")
        elif text == "unknown":
            ctx.connection.send_frame('{"type":"MYSTERY","meta":{},"payload":{"a":1}}')
        else:
            ctx.send(NoteAck, {"text": text})

    @router.rpc(Whoami)
    async def whoami(ctx: Any) -> None:
        ctx.reply({"token": ctx.data.get("token") or ""})

    return router


class AppServer:
    """A wskit-aiohttp app on 127.0.0.1; ``stop()``/``start()`` reuse the same port."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.port = 0
        self._runner: web.AppRunner | None = None

    def _authenticate(self, request: web.Request) -> dict[str, Any] | None:
        token, _ = token_from_request(request)
        self.state.tokens.append(token)
        if self.state.require_token and not (token and token.startswith("tok-")):
            return None
        return {"token": token}

    async def start(self) -> None:
        assert self._runner is None
        self.state.generation += 1
        app = create_app(build_router(self.state), path="/ws", authenticate=self._authenticate)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture
def schemas() -> SimpleNamespace:
    return SCHEMAS


@pytest.fixture
async def server() -> AsyncIterator[AppServer]:
    srv = AppServer(ServerState())
    await srv.start()
    try:
        yield srv
    finally:
        srv.state.release.set()
        await srv.stop()


@pytest.fixture
async def make_client(server: AppServer) -> AsyncIterator[Callable[..., Client]]:
    """``make_client(**options)``: a client for the test server, closed at teardown."""
    clients: list[Client] = []

    def make(url: str | None = None, **options: Any) -> Client:
        options.setdefault("reconnect", False)
        client = Client(url or server.url, **options)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
def record_states() -> Callable[[Client], StateRecorder]:
    return functools.partial(StateRecorder, timeout=SAFETY_TIMEOUT)


# -- a raw server for hostile frames ----------------------------------------------------


class RawServer:
    """A hand-written ``websockets`` server on 127.0.0.1.

    It records every frame it receives, answers ``ECHO`` requests (its JSON is the
    stdlib's, so lone surrogates go out escaped), ignores everything else, and
    ``push()`` sends arbitrary text or binary frames to the connected client.
    Make one with the ``raw_server`` fixture (or ``raw_server_class`` in tests that run
    their own event loop).
    """

    def __init__(self, *, strict_meta: bool = False) -> None:
        #: Behave like a WS-Kit TypeScript server: a frame whose meta has keys other than
        #: timestamp and correlationId fails its strict meta schema and gets no answer.
        self.strict_meta = strict_meta
        self.received: list[Any] = []
        self.connections = 0
        self._ws: ServerConnection | None = None
        self._server: Server | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _handle(self, ws: ServerConnection) -> None:
        async with self._changed:
            self.connections += 1
            self._ws = ws
            self._changed.notify_all()
        with contextlib.suppress(ConnectionClosed):  # the client may close with 1011
            async for frame in ws:
                obj = json.loads(frame)
                async with self._changed:
                    self.received.append(obj)
                    self._changed.notify_all()
                if self.strict_meta and not obj["meta"].keys() <= {"timestamp", "correlationId"}:
                    continue
                if obj.get("type") == "ECHO":
                    reply = {
                        "type": "ECHO_REPLY",
                        "meta": {"correlationId": obj["meta"]["correlationId"]},
                        "payload": {"text": obj["payload"]["text"]},
                    }
                    await ws.send(json.dumps(reply))

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), SAFETY_TIMEOUT)

    async def push(self, *frames: str | bytes) -> None:
        """Send frames, in order, to the client connected last."""
        await self.wait_for(lambda: self._ws is not None)
        assert self._ws is not None
        for frame in frames:
            await self._ws.send(frame)


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    srv = RawServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def raw_server_class() -> type[RawServer]:
    """For tests that run their own event loop (the fuzz suite)."""
    return RawServer


# -- hypothesis profiles for the client fuzz suite --------------------------------------
# "ci" (default): a fixed example budget, derandomized, about a second. "long": for local
# runs, selected with WSKIT_FUZZ_PROFILE=long (WSKIT_FUZZ_EXAMPLES overrides its size).
# Neither keeps an example database (a failure prints a blob to replay it instead).

settings.register_profile(
    "wskit-client-fuzz-ci",
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "wskit-client-fuzz-long",
    max_examples=int(os.environ.get("WSKIT_FUZZ_EXAMPLES", "40000")),
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def fuzz_settings() -> settings:
    name = os.environ.get("WSKIT_FUZZ_PROFILE", "ci")
    if name not in ("ci", "long"):
        raise pytest.UsageError(f"WSKIT_FUZZ_PROFILE must be 'ci' or 'long', not {name!r}")
    return settings.get_profile(f"wskit-client-fuzz-{name}")
