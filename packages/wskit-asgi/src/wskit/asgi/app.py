"""The ASGI application that serves one router over WebSockets.

The app only moves frames: every protocol decision (the answer to every kind
of frame, ordering, the outbound FIFO and its overflow policy, heartbeat
timers, RPC deadlines) is made by :class:`wskit.core.Connection`. Per
``websocket`` scope it:

1. refuses what must not be upgraded, before accepting (an HTTP answer through
   the server's ``websocket.http.response`` extension, else a close before
   accept, which servers send as 403): a ``Host`` not in ``allowed_hosts`` →
   400 (first of all), shutting down → 503, foreign browser ``Origin`` → 403,
   full → 503 (the slot is held from here, through ``authenticate``, until the
   connection ends), ``authenticate`` returned ``None`` → 401;
2. accepts (echoing the chosen subprotocol), creates the connection with
   ``router.connect()``, starts ``conn.pump(transport)`` in a task and runs
   ``await conn.open()``;
3. hands every ``websocket.receive`` to ``conn.receive()`` in arrival order,
   and stops calling the server's ``receive()`` while the connection's inbound
   queue is full (the server then stops reading the socket);
4. on ``websocket.disconnect``, awaits ``conn.handle_close(code, reason)`` once.

ASGI has no ping: the heartbeat cannot send WebSocket pings nor see pongs, so
it counts inbound frames only (a client that sends nothing for
``interval_ms + timeout_ms`` is closed with 1011). Dead TCP peers are the
server's to find with its own pings (uvicorn's ``ws_ping_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

from wskit.asgi.request import AsgiRequest, Scope, _select
from wskit.core.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    Connection,
    HeartbeatOptions,
    OverflowPolicy,
)
from wskit.core.handshake import (
    AdapterSettings,
    origin_allowed,
)
from wskit.core.router import Router

__all__ = [
    "AsgiTransport",
    "Authenticate",
    "ConnectionHook",
    "Receive",
    "Scope",
    "Send",
    "WebSocketApp",
    "create_asgi_app",
]

D = TypeVar("D")

_log = logging.getLogger("wskit.asgi")

Message = dict[str, Any]
#: The ASGI ``receive`` and ``send`` callables.
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Message], Awaitable[None]]
#: ``authenticate(request)`` (sync or async): the connection data, or ``None``
#: to refuse the upgrade with HTTP 401.
Authenticate = Callable[[AsgiRequest], Any]
#: ``on_open(connection)`` / ``on_close(connection)`` adapter hooks (sync or async).
ConnectionHook = Callable[[Connection[Any]], "Awaitable[None] | None"]

CLOSE_NORMAL: Final = 1000
CLOSE_NO_STATUS: Final = 1005
CLOSE_ABNORMAL: Final = 1006
_MAX_REASON_BYTES: Final = 123
_HTTP_RESPONSE: Final = "websocket.http.response"


class AsgiTransport:
    """:class:`wskit.core.Transport` over the ASGI ``send`` of one connection.

    ASGI ``send`` returns once the server took the frame; servers make it wait
    while the socket's write buffer is above its high-water mark (uvicorn,
    hypercorn), which is what backs the connection's FIFO up when the peer
    reads slowly. A send blocked longer than ``send_timeout`` (a peer that
    stopped reading) gives up on the connection: ``on_timeout`` runs.
    ``ping()`` does nothing: ASGI cannot send a WebSocket ping.
    """

    __slots__ = ("_close_timeout", "_on_timeout", "_send", "_send_timeout", "closed")

    def __init__(
        self,
        send: Send,
        *,
        send_timeout: float | None,
        close_timeout: float,
        on_timeout: Callable[[], None],
    ) -> None:
        self._send = send
        self._send_timeout = send_timeout
        self._close_timeout = close_timeout
        self._on_timeout = on_timeout
        #: ``websocket.close`` was sent.
        self.closed = False

    async def send(self, frame: str) -> None:
        await self._bounded({"type": "websocket.send", "text": frame}, self._send_timeout)

    async def ping(self) -> None:
        """ASGI has no ping: the heartbeat counts inbound frames instead."""

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        reason = reason.encode("utf-8")[:_MAX_REASON_BYTES].decode("utf-8", "ignore")
        message = {"type": "websocket.close", "code": code, "reason": reason}
        await self._bounded(message, self._close_timeout)

    async def _bounded(self, message: Message, timeout: float | None) -> None:
        if timeout is None:
            await self._send(message)
            return
        watchdog = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        try:
            await self._send(message)
        finally:
            watchdog.cancel()

    def _timed_out(self) -> None:
        _log.info("wskit: send blocked for %ss (peer not reading): giving up", self._send_timeout)
        self._on_timeout()


class _Session:
    __slots__ = ("aborted", "conn", "reading", "task", "timer", "transport")

    def __init__(self, conn: Connection[Any], task: asyncio.Task[Any] | None) -> None:
        self.conn = conn
        self.task = task
        self.transport: AsgiTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reading = True
        self.aborted = False

    def abort(self) -> None:
        """Stop serving this connection now (the server closes the socket once
        the app returns): the read loop is interrupted, cleanup runs. Once the
        read loop is over, cleanup is already running and is left alone."""
        if self.reading and not self.aborted and self.task is not None:
            self.aborted = True
            self.task.cancel()


class WebSocketApp(AdapterSettings[D]):
    """An ASGI application serving ``router`` to WebSocket connections.

    Use it as the whole app (``uvicorn module:app``), or mount it in a
    Starlette/FastAPI app (``app.add_websocket_route("/ws", ws_app)`` or
    ``Mount("/ws", ws_app)``) or in Litestar (an ``asgi`` route handler); then
    give the host app ``lifespan=ws_app.lifespan`` so its shutdown closes the
    connections gracefully. Options are described in :func:`create_asgi_app`.
    """

    _log = _log  # this module's logger, for the code shared by every adapter
    authenticate: Authenticate | None
    on_open: ConnectionHook | None
    on_close: ConnectionHook | None

    def __init__(
        self,
        router: Router[D],
        *,
        authenticate: Authenticate | None = None,
        on_open: ConnectionHook | None = None,
        on_close: ConnectionHook | None = None,
        heartbeat: HeartbeatOptions | None = None,
        max_message_bytes: int | None = None,
        max_buffered_bytes: int | None = None,
        overflow: OverflowPolicy | None = None,
        allowed_origins: Sequence[str] | None = None,
        allowed_hosts: Sequence[str] | None = None,
        max_connections: int | None = None,
        protocols: Sequence[str] = (),
        protocol_prefix: str = "bearer.",
        close_timeout: float = 5.0,
        send_timeout: float | None = 30.0,
        shutdown_timeout: float = 10.0,
        client_id_header: str | None = "X-Client-Id",
    ) -> None:
        self._init_settings(
            router,
            authenticate=authenticate,
            on_open=on_open,
            on_close=on_close,
            heartbeat=heartbeat,
            max_message_bytes=max_message_bytes,
            max_buffered_bytes=max_buffered_bytes,
            overflow=overflow,
            allowed_origins=allowed_origins,
            allowed_hosts=allowed_hosts,
            max_connections=max_connections,
            protocols=protocols,
            protocol_prefix=protocol_prefix,
            close_timeout=close_timeout,
            send_timeout=send_timeout,
            shutdown_timeout=shutdown_timeout,
            client_id_header=client_id_header,
        )
        self._sessions: dict[str, _Session] = {}

    # ------------------------------------------------------------ public API

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """``FastAPI(lifespan=ws_app.lifespan)``, ``Starlette(lifespan=...)``,
        ``Litestar(lifespan=[ws_app.lifespan])``: on the host app's shutdown,
        :meth:`shutdown`. Nest it in your own lifespan with
        ``async with ws_app.lifespan(app): yield``."""
        try:
            yield
        finally:
            await self.shutdown()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Send) -> None:
        request = AsgiRequest(scope)
        if not self._host_allowed(request):
            status, text = 400, "Host not allowed"
        elif self._shutting_down:
            status, text = 503, "Server shutting down"
        else:
            status, text = 400, "Expected WebSocket"
        await _http_response(send, "http.response", status, text)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client went away before the upgrade
        request = AsgiRequest(scope)
        if not self._host_allowed(request):
            await _refuse(scope, send, 400, "Host not allowed")
            return
        if self._shutting_down:
            await _refuse(scope, send, 503, "Server shutting down")
            return
        if not origin_allowed(request.origin, request.host, self.allowed_origins):
            await _refuse(scope, send, 403, "Origin not allowed")
            return
        if self.max_connections is not None and self._reserved >= self.max_connections:
            await _refuse(scope, send, 503, "Maximum connections reached")
            return
        # The slot is taken before authenticate runs (it may take a while), so
        # upgrades in progress count against max_connections too.
        self._reserved += 1
        try:
            await self._upgrade(request, receive, send)
        finally:
            self._reserved -= 1

    async def _upgrade(self, request: AsgiRequest, receive: Receive, send: Send) -> None:
        scope = request.scope
        try:
            data = await self._authenticate(request)
        except Exception:
            _log.exception("wskit: authenticate() failed")
            await _refuse(scope, send, 500, "Internal server error")
            return
        if data is None:
            await _refuse(scope, send, 401, "Unauthorized")
            return
        if self._shutdown_task is not None:  # shutdown began while authenticating
            await _refuse(scope, send, 503, "Server shutting down")
            return
        client_id = str(uuid.uuid4())
        conn = self.router.connect(
            data,
            client_id=client_id,
            headers=dict(request.headers),
            max_message_bytes=self.max_message_bytes,
            max_buffered_bytes=self.max_buffered_bytes,
            overflow=self.overflow,
            heartbeat=self.heartbeat,
        )
        accept: Message = {"type": "websocket.accept"}
        protocol = _select(request, self.protocols, self.protocol_prefix)
        if protocol is not None:
            accept["subprotocol"] = protocol
        if self.client_id_header:
            accept["headers"] = [(self.client_id_header.lower().encode(), client_id.encode())]
        await send(accept)
        await self._serve(conn, receive, send)

    def _host_allowed(self, request: AsgiRequest) -> bool:
        return self._check_host(request.host, request.host)

    async def _serve(self, conn: Connection[D], receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        session = _Session(conn, asyncio.current_task())
        transport = session.transport = AsgiTransport(
            send,
            send_timeout=self.send_timeout,
            close_timeout=self.close_timeout,
            on_timeout=session.abort,
        )
        self._sessions[conn.client_id] = session
        pump = loop.create_task(self._pump(conn, transport, session))
        code: int | None = None
        reason = ""
        try:
            if self._shutting_down:
                conn.request_close(CLOSE_GOING_AWAY, "Server shutting down")
            opened = await conn.open()
            if opened and self.on_open is not None:
                await self._call_hook(self.on_open, conn, "on_open")
            deliver = conn.receive
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes")
                        if data is None:
                            continue
                    if not deliver(data):
                        # The inbound queue is full: stop asking the server for
                        # frames until the handlers catch up; it stops reading the
                        # socket, and TCP flow control slows the sender down.
                        await conn.inbound_room()
                elif kind == "websocket.disconnect":
                    code = message.get("code", CLOSE_NO_STATUS)
                    reason = message.get("reason") or ""
                    break
        except asyncio.CancelledError:
            if not session.aborted:
                raise
            _uncancel()
        except Exception:
            _log.exception("wskit: connection %s failed", conn.client_id)
        finally:
            session.reading = False
            if session.timer is not None:
                session.timer.cancel()
            await self._finish(session, pump, code, reason)

    async def _finish(
        self, session: _Session, pump: asyncio.Task[None], code: int | None, reason: str
    ) -> None:
        conn = session.conn
        transport = session.transport
        assert transport is not None
        requested = conn.close_requested
        if requested is not None and (transport.closed or code is None):
            # We closed: our code, whatever the server reports back (some report
            # 1000 or 1005 for every close the app started).
            code, reason = requested
        elif code is None:
            code = CLOSE_ABNORMAL
        elif code == CLOSE_MESSAGE_TOO_BIG and requested is None:
            # The server refused the frame itself (its own size limit) with 1009.
            self._report_too_big(conn)
        await conn.handle_close(code, reason)
        if not pump.done():
            await asyncio.wait((pump,), timeout=0 if session.aborted else self.close_timeout)
            if not pump.done():
                pump.cancel()
                await asyncio.wait((pump,))
        if not transport.closed and not session.aborted:
            # The peer closed (or went away): answer with our close, if the server
            # still takes one; it may already have sent it.
            with contextlib.suppress(Exception):
                going_away = CLOSE_GOING_AWAY if self._shutting_down else CLOSE_NORMAL
                await asyncio.wait_for(transport.close(going_away, ""), self.close_timeout)
        self._sessions.pop(conn.client_id, None)
        if self.on_close is not None:
            await self._call_hook(self.on_close, conn, "on_close")

    async def _pump(self, conn: Connection[D], transport: AsgiTransport, session: _Session) -> None:
        try:
            await conn.pump(transport)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The server refused a send (the client went away): stop reading too.
            _log.debug("wskit: send failed (client %s): %r", conn.client_id, exc)
            session.abort()
            return
        if transport.closed:
            # Our close went out: the server reports the disconnect when the peer
            # answers; a peer that never does is dropped after close_timeout.
            loop = asyncio.get_running_loop()
            session.timer = loop.call_later(self.close_timeout, session.abort)


def create_asgi_app(
    router: Router[D],
    *,
    authenticate: Authenticate | None = None,
    on_open: ConnectionHook | None = None,
    on_close: ConnectionHook | None = None,
    heartbeat: HeartbeatOptions | None = None,
    max_message_bytes: int | None = None,
    max_buffered_bytes: int | None = None,
    overflow: OverflowPolicy | None = None,
    allowed_origins: Sequence[str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_connections: int | None = None,
    protocols: Sequence[str] = (),
    protocol_prefix: str = "bearer.",
    close_timeout: float = 5.0,
    send_timeout: float | None = 30.0,
    shutdown_timeout: float = 10.0,
    client_id_header: str | None = "X-Client-Id",
) -> WebSocketApp[D]:
    """An ASGI app serving ``router`` over WebSockets::

        ws_app = create_asgi_app(router, authenticate=authenticate)

        # the whole app: uvicorn module:ws_app, or wskit.asgi.serve(ws_app)
        # in FastAPI / Starlette:
        app = FastAPI(lifespan=ws_app.lifespan)
        app.add_websocket_route("/ws", ws_app)

    - ``authenticate(request)`` (sync or async) gets an
      :class:`~wskit.asgi.AsgiRequest` (``request.scope`` is the ASGI scope)
      and returns the connection data (``ctx.data``), or ``None`` to refuse
      with HTTP 401 before the upgrade. Default: everyone, with ``{}``.
    - ``on_open(conn)`` / ``on_close(conn)``: adapter hooks after the router's
      own hooks (``conn.close_code``/``close_reason`` are set in ``on_close``).
    - ``heartbeat``: :class:`~wskit.core.HeartbeatOptions` (default: the
      router's, off). ASGI cannot send pings: a connection from which no frame
      arrives for ``interval_ms + timeout_ms`` is closed with 1011.
    - ``max_message_bytes`` (frames above it close with 1009),
      ``max_buffered_bytes`` and ``overflow`` (``"close"`` → 1013, ``"drop"`` →
      ``RESOURCE_EXHAUSTED`` error): default to the router's options.
    - ``allowed_hosts``: the ``Host`` names served (any port): names,
      ``".example.com"`` (the domain and its subdomains), IP addresses, ``"*"``.
      Others get 400 before anything else is looked at (DNS rebinding).
      Default ``None``: no Host check, except that :func:`~wskit.asgi.serve`
      on a loopback address allows only ``localhost``, ``127.0.0.1``, ``[::1]``.
    - ``allowed_origins``: browser origins (``scheme://host[:port]``) allowed
      besides the page's own (``["*"]``: any); others get 403. Requests
      without ``Origin`` pass.
    - ``max_connections``: open connections plus upgrades still in
      ``authenticate``; beyond it, upgrades get 503.
    - ``protocols``: application subprotocols to select from the client's
      offer; otherwise a ``bearer.<token>`` offer is echoed.
    - ``close_timeout``: seconds to wait for a close to go out and for the
      peer's answer; ``send_timeout``: a send blocked longer (peer not
      reading) ends the connection (``None``: never); ``shutdown_timeout``: how
      long shutdown waits for connections before dropping them.
    - ``client_id_header``: response header carrying the connection's client id.

    Values are checked here: a bad one raises ``ValueError`` naming the option.
    """
    return WebSocketApp(
        router,
        authenticate=authenticate,
        on_open=on_open,
        on_close=on_close,
        heartbeat=heartbeat,
        max_message_bytes=max_message_bytes,
        max_buffered_bytes=max_buffered_bytes,
        overflow=overflow,
        allowed_origins=allowed_origins,
        allowed_hosts=allowed_hosts,
        max_connections=max_connections,
        protocols=protocols,
        protocol_prefix=protocol_prefix,
        close_timeout=close_timeout,
        send_timeout=send_timeout,
        shutdown_timeout=shutdown_timeout,
        client_id_header=client_id_header,
    )


# ----------------------------------------------------------------- helpers


async def _refuse(scope: Scope, send: Send, status: int, text: str) -> None:
    """Refuse the upgrade with an HTTP answer when the server supports it, else
    with a close before accept (which servers answer with 403)."""
    if _HTTP_RESPONSE in (scope.get("extensions") or {}):
        await _http_response(send, "websocket.http.response", status, text)
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": text})


async def _http_response(send: Send, prefix: str, status: int, text: str) -> None:
    body = text.encode()
    headers = _headers({"content-type": "text/plain; charset=utf-8"}.items())
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": f"{prefix}.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": body})


def _headers(items: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]


def _uncancel() -> None:
    """Balance a cancellation the current task absorbed (3.11+ counts them)."""
    task = asyncio.current_task()
    undo = getattr(task, "uncancel", None)
    if undo is not None:
        undo()
