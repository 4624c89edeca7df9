"""The aiohttp request handler that serves one router over WebSockets.

The handler only moves frames: every protocol decision (the answer to every kind of frame,
ordering, the outbound FIFO and its overflow policy, heartbeat timers, RPC
deadlines) is made by :class:`wskit.core.Connection`. Per request it:

1. refuses what must not be upgraded, before any upgrade: a ``Host`` not in
   ``allowed_hosts`` → 400 (first of all), shutting down → 503, not a WebSocket
   request → 400, foreign browser ``Origin`` → 403, full → 503 (the slot is
   held from here, through ``authenticate``, until the connection ends),
   ``authenticate`` returned ``None`` → 401;
2. upgrades (echoing the chosen subprotocol), creates the connection with
   ``router.connect()``, starts ``conn.pump(transport)`` in a task and runs
   ``await conn.open()``;
3. feeds every TEXT/BINARY frame to ``conn.receive()`` in arrival order
   (pausing while the connection's inbound queue is full), answers PINGs,
   reports PONGs (``autoping`` is off so the core sees them);
4. when the socket closes, awaits ``conn.handle_close(code, reason)`` once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from aiohttp import WebSocketError, WSMsgType, web

from wskit.aiohttp._transport import AiohttpTransport, WriteCoalescer, make_response
from wskit.aiohttp.auth import select_protocol
from wskit.core.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    Connection,
    HeartbeatOptions,
    OverflowPolicy,
)
from wskit.core.handshake import AdapterSettings, normalize_origin, same_origin
from wskit.core.router import Router

__all__ = [
    "AiohttpTransport",
    "Authenticate",
    "ConnectionHook",
    "WebSocketHandler",
    "create_handler",
]

D = TypeVar("D")

_log = logging.getLogger("wskit.aiohttp")

#: ``authenticate(request)`` (sync or async): the connection data, or ``None``
#: to refuse the upgrade with HTTP 401.
Authenticate = Callable[[web.Request], Any]
#: ``on_open(connection)`` / ``on_close(connection)`` adapter hooks (sync or async).
ConnectionHook = Callable[[Connection[Any]], "Awaitable[None] | None"]

CLOSE_ABNORMAL: Final = 1006


class _Session:
    __slots__ = ("conn", "task", "transport")

    def __init__(
        self, conn: Connection[Any], transport: AiohttpTransport, task: asyncio.Task[Any] | None
    ) -> None:
        self.conn = conn
        self.transport = transport
        self.task = task

    def abort(self) -> None:
        """Drop the connection now (the TCP socket is aborted)."""
        self.transport.abort()


class WebSocketHandler(AdapterSettings[D]):
    """Serves ``router`` to the WebSocket requests aiohttp routes to :meth:`handle`.

    Mount it with ``app.router.add_get(path, handler.handle)`` and call
    :meth:`install` (or pass ``app=`` to :func:`create_handler`) so app
    shutdown and cleanup close every connection gracefully. Options are
    described in :func:`create_handler`.
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
        compress: bool = False,
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
        self.compress = compress
        self._sessions: dict[str, _Session] = {}
        self._coalescer = WriteCoalescer()
        #: Data frames go from aiohttp's parser straight to the connection (no task
        #: wake-up per frame) where aiohttp's internals allow it; tests may turn it off.
        self.direct_reads = True

    # ------------------------------------------------------------ public API

    def pending_bytes(self, conn: Connection[Any]) -> int:
        """Outbound bytes the server holds for ``conn``: its FIFO
        (``conn.buffered_bytes``, bounded by ``max_buffered_bytes``) plus the
        socket's user-space write buffer (bounded by aiohttp's flow control)."""
        session = self._sessions.get(conn.client_id)
        transport = session.transport.socket if session is not None else None
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return conn.buffered_bytes + buffered

    def install(self, app: web.Application) -> None:
        """Close every connection (1001) when ``app`` shuts down or is cleaned up."""
        app.on_shutdown.append(self._on_app_shutdown)
        app.on_cleanup.append(self._on_app_shutdown)

    async def _on_app_shutdown(self, app: web.Application) -> None:
        await self.shutdown()

    # -------------------------------------------------------------- request

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: ``app.router.add_get(path, handler.handle)``."""
        if not self._host_allowed(request):
            return web.Response(status=400, text="Host not allowed")
        if self.shutting_down:
            return web.Response(status=503, text="Server shutting down")
        if not self._is_upgrade(request):
            return web.Response(status=400, text="Expected WebSocket")
        if not self._origin_allowed(request):
            return web.Response(status=403, text="Origin not allowed")
        if self.max_connections is not None and self._reserved >= self.max_connections:
            return web.Response(status=503, text="Maximum connections reached")
        # The slot is taken before authenticate runs (it may take a while), so
        # upgrades in progress count against max_connections too.
        self._reserved += 1
        try:
            outcome = await self._upgrade(request)
            if not isinstance(outcome, tuple):
                return outcome  # refused
            ws, conn = outcome
            await self._serve(request, ws, conn)  # (not inside _upgrade: one frame less)
            return ws
        finally:
            self._reserved -= 1

    def _is_upgrade(self, request: web.BaseRequest) -> bool:
        # The probe response lives only here: a local of handle() would stay alive
        # (with its headers and state) for as long as the connection is open.
        probe = web.WebSocketResponse(protocols=self._offerable(request))
        return probe.can_prepare(request).ok

    def _offerable(self, request: web.BaseRequest) -> tuple[str, ...]:
        protocol = select_protocol(request, self.protocols, protocol_prefix=self.protocol_prefix)
        return (protocol,) if protocol is not None else ()

    async def _upgrade(
        self, request: web.Request
    ) -> web.StreamResponse | tuple[web.WebSocketResponse, Connection[D]]:
        """Authenticate and upgrade: the response and the connection, or a refusal."""
        try:
            data = await self._authenticate(request)
        except Exception:
            _log.exception("wskit: authenticate() failed")
            return web.Response(status=500, text="Internal server error")
        if data is None:
            return web.Response(status=401, text="Unauthorized")
        if self._shutdown_task is not None:  # shutdown began while authenticating
            return web.Response(status=503, text="Server shutting down")
        client_id = str(uuid.uuid4())
        conn = self.router.connect(
            data,
            client_id=client_id,
            headers=request.headers,
            max_message_bytes=self.max_message_bytes,
            max_buffered_bytes=self.max_buffered_bytes,
            overflow=self.overflow,
            heartbeat=self.heartbeat,
        )
        ws = make_response(
            conn,
            direct=self.direct_reads,
            protocols=self._offerable(request),
            autoping=False,
            # aiohttp refuses frames of max_msg_size bytes and more (1009); a frame of
            # exactly max_message_bytes is allowed. Anything aiohttp lets through
            # above the limit is caught by the core (also 1009).
            max_msg_size=self.max_message_bytes + 1,
            compress=self.compress,
            timeout=self.close_timeout,
        )
        if self.client_id_header:
            ws.headers[self.client_id_header] = client_id
        await ws.prepare(request)
        return ws, conn

    def _host_allowed(self, request: web.BaseRequest) -> bool:
        return self._check_host(_host_header(request), request.headers.get("Host"))

    def _origin_allowed(self, request: web.BaseRequest) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser
        allowed = self.allowed_origins
        if "*" in allowed:
            return True
        if normalize_origin(origin) in allowed:
            return True
        # Same origin (the page was served by this host) is allowed. The Host it
        # is compared with passed the allowed_hosts check first (when set), so a
        # DNS-rebinding page (attacker's name in both headers) is not same-origin.
        return same_origin(origin, _host_header(request))

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse, conn: Connection[D]
    ) -> None:
        transport = AiohttpTransport(
            ws,
            request,
            send_timeout=self.send_timeout,
            compress=self.compress,
            coalescer=self._coalescer,
        )
        session = _Session(conn, transport, asyncio.current_task())
        self._sessions[conn.client_id] = session

        # No writer task per connection: frames go out directly, and the core starts
        # a pump task only while something is queued (a slow peer, pings, the close).
        conn.attach(transport, on_error=transport.write_failed)
        code: int | None = None
        reason = ""
        try:
            if self.shutting_down:
                conn.request_close(CLOSE_GOING_AWAY, "Server shutting down")
            opened = await conn.open()
            if opened and self.on_open is not None:
                await self._call_hook(self.on_open, conn, "on_open")
            receive = conn.receive
            while True:
                msg = await ws.receive()
                kind = msg.type
                if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                    # (Data frames arrive here only while the connection's inbound
                    # queue is full, or where aiohttp cannot hand them over directly.)
                    if conn.inbound_full:
                        # Wait for the handlers to catch up; aiohttp's own queue fills
                        # meanwhile, it pauses the socket, and TCP slows the sender.
                        await conn.inbound_room()
                    receive(msg.data)
                elif kind is WSMsgType.PING:
                    conn.handle_pong()  # any sign of life counts
                    await transport.pong(msg.data)
                elif kind is WSMsgType.PONG:
                    conn.handle_pong()
                elif kind is WSMsgType.CLOSE:
                    code, reason = msg.data, msg.extra or ""
                    break
                elif kind is WSMsgType.ERROR:
                    exc = msg.data
                    if isinstance(exc, WebSocketError) and exc.code == CLOSE_MESSAGE_TOO_BIG:
                        # aiohttp refused the frame (max_msg_size) and closed with 1009.
                        code, reason = CLOSE_MESSAGE_TOO_BIG, "Message too big"
                        self._report_too_big(conn)
                    else:
                        _log.debug("wskit: websocket error (client %s): %r", conn.client_id, exc)
                    break
                else:  # CLOSING (we are closing) or CLOSED (connection lost)
                    break
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception:
            _log.exception("wskit: connection %s failed", conn.client_id)
            transport.abort()
        finally:
            requested = conn.close_requested
            if requested is not None:
                # We initiated the close: let the queued frames and the close go out.
                await self._written(conn, transport, self.close_timeout + 1.0)
            if code is None:
                if requested is not None:
                    code, reason = requested
                else:
                    code = ws.close_code if ws.close_code is not None else CLOSE_ABNORMAL
            await conn.handle_close(code, reason)
            await self._written(conn, transport, self.close_timeout)
            if not ws.closed:
                await transport.close(CLOSE_GOING_AWAY if self._shutting_down else 1000, "")
            self._sessions.pop(conn.client_id, None)
            if self.on_close is not None:
                await self._call_hook(self.on_close, conn, "on_close")

    @staticmethod
    async def _written(conn: Connection[D], transport: AiohttpTransport, timeout: float) -> None:
        try:
            await asyncio.wait_for(conn.wait_written(), timeout)
        except asyncio.TimeoutError:
            transport.abort()  # the peer stopped reading: drop it


def create_handler(
    router: Router[D],
    *,
    app: web.Application | None = None,
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
    compress: bool = False,
    close_timeout: float = 5.0,
    send_timeout: float | None = 30.0,
    shutdown_timeout: float = 10.0,
    client_id_header: str | None = "X-Client-Id",
) -> WebSocketHandler[D]:
    """Build a handler to mount on an existing ``aiohttp.web.Application``::

        handler = create_handler(router, app=app, authenticate=auth)
        app.router.add_get("/ws", handler.handle)

    - ``app``: when given, the handler closes its connections (1001) on the
      app's shutdown and cleanup (else call ``handler.install(app)``).
    - ``authenticate(request)`` (sync or async): the connection data
      (``ctx.data``), or ``None`` to refuse with HTTP 401 before the upgrade.
      Default: every client is accepted with ``{}``.
    - ``on_open(conn)`` / ``on_close(conn)``: adapter hooks after the router's
      own hooks (``conn.close_code``/``close_reason`` are set in ``on_close``).
    - ``heartbeat``: :class:`~wskit.core.HeartbeatOptions` (default: the router's, off).
    - ``max_message_bytes`` (frames above it close with 1009),
      ``max_buffered_bytes`` and ``overflow`` (``"close"`` → 1013, ``"drop"`` →
      ``RESOURCE_EXHAUSTED`` error): default to the router's options.
    - ``allowed_hosts``: the ``Host`` names this server answers to (any port):
      ``"app.example.com"``, ``".example.com"`` (the domain and its
      subdomains), IP addresses (``"127.0.0.1"``, ``"::1"``), ``"*"`` (any).
      Other requests get 400 before anything else is looked at. This defeats
      DNS rebinding (a foreign page whose name resolves to this server). Default
      ``None``: no Host check, except that :func:`~wskit.aiohttp.serve` on a
      loopback address allows only ``localhost``, ``127.0.0.1`` and ``[::1]``.
    - ``allowed_origins``: browser origins (``scheme://host[:port]``) allowed
      besides the page's own (``["*"]``: any). Others get 403. Requests without
      ``Origin`` pass. A same-origin page passes only on an allowed host.
    - ``max_connections``: open connections plus upgrades still in
      ``authenticate``; beyond it, upgrades get 503.
    - ``protocols``: application subprotocols to select from the client's
      offer; otherwise a ``bearer.<token>`` offer is echoed.
    - ``compress``: permessage-deflate (off: it costs CPU and ~100 KiB per
      connection for the small JSON frames wskit sends).
    - ``close_timeout``: seconds to wait for the peer's close frame;
      ``send_timeout``: a send blocked longer (peer not reading) aborts the
      connection (``None``: never); ``shutdown_timeout``: how long shutdown
      waits for connections before aborting them.
    - ``client_id_header``: response header carrying the connection's client id.

    Values are checked here: a bad one (``max_connections=0``, a timeout of
    ``0`` or ``inf``, ``allowed_hosts=["*.example.com"]``, a lone string where
    a list is expected...) raises ``ValueError`` naming the option and value.
    """
    handler = WebSocketHandler(
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
        compress=compress,
        close_timeout=close_timeout,
        send_timeout=send_timeout,
        shutdown_timeout=shutdown_timeout,
        client_id_header=client_id_header,
    )
    if app is not None:
        handler.install(app)
    return handler


# ----------------------------------------------------------------- helpers


def _host_header(request: web.BaseRequest) -> str | None:
    """The request's ``Host`` (``request.host``, which a proxy middleware may
    have replaced), or ``None`` without a Host header: aiohttp's fallback for
    that case is this machine's name, looked up with a blocking call."""
    if "Host" not in request.headers:
        return None
    return request.host
