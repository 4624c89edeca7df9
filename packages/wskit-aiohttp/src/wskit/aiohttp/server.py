"""Running a router as an aiohttp server: ``create_app()``, ``serve()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from wskit.aiohttp.handler import Authenticate, ConnectionHook, WebSocketHandler, create_handler
from wskit.core.connection import HeartbeatOptions, OverflowPolicy
from wskit.core.handshake import LOOPBACK_HOSTS, is_loopback
from wskit.core.router import Router

__all__ = [
    "HANDLER_KEY",
    "RedactingAccessLogger",
    "create_app",
    "serve",
    "serve_async",
    "site_urls",
]

D = TypeVar("D")

_log = logging.getLogger("wskit.aiohttp")

#: ``app[HANDLER_KEY]``: the :class:`WebSocketHandler` that :func:`create_app` mounted.
HANDLER_KEY: web.AppKey[WebSocketHandler[Any]] = web.AppKey("wskit_handler", WebSocketHandler)


class RedactingAccessLogger(AbstractAccessLogger):
    """Access log without query strings, so ``?access_token=...`` never reaches a log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


def create_app(
    router: Router[D],
    *,
    path: str = "/",
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
    compress: bool = False,
    close_timeout: float = 5.0,
    send_timeout: float | None = 30.0,
    shutdown_timeout: float = 10.0,
) -> web.Application:
    """An ``aiohttp.web.Application`` (new, or ``app``) serving ``router`` at
    ``path``; the handler is ``app[HANDLER_KEY]``. Options: :func:`create_handler`."""
    if app is None:
        app = web.Application()
    handler = create_handler(
        router,
        app=app,
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
        compress=compress,
        close_timeout=close_timeout,
        send_timeout=send_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    app.router.add_get(path, handler.handle)
    app[HANDLER_KEY] = handler
    return app


def site_urls(runner: web.BaseRunner, path: str = "/", *, scheme: str = "ws") -> list[str]:
    """``ws://host:port/path`` for every address ``runner`` listens on."""
    urls = []
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            host = address[0]
            if ":" in host:
                host = f"[{host}]"
            urls.append(f"{scheme}://{host}:{address[1]}{path}")
    return urls


async def serve_async(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    path: str = "/",
    shutdown_timeout: float = 10.0,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (or ``stop`` is set), then shut down
    gracefully: every WebSocket gets close 1001 and ``on_close`` runs once each.

    ``on_ready(urls)`` runs once listening (default: print the URLs).

    On a loopback ``host`` (``127.0.0.1``, ``::1``, ``localhost``), the handler
    :func:`create_app` mounted (``app[HANDLER_KEY]``) answers only requests
    whose ``Host`` is ``localhost``, ``127.0.0.1`` or ``[::1]`` (any port)
    unless it was given ``allowed_hosts``: a web page cannot then reach the
    local server through a DNS-rebinding name.
    """
    handler = app.get(HANDLER_KEY)
    if handler is not None and is_loopback(host):
        handler._default_hosts(LOOPBACK_HOSTS)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=RedactingAccessLogger,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    stop_event = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        site = web.TCPSite(runner, host, port, reuse_address=sys.platform != "win32")
        await site.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop_event.set)
                installed.append(sig)
        urls = site_urls(runner, path)
        if on_ready is not None:
            on_ready(urls)
        else:
            for url in urls:
                on_uvloop = "; uvloop" if loop_name() == "uvloop" else ""
                print(f"wskit: serving {url} (Ctrl+C to stop{on_uvloop})", flush=True)
        await stop_event.wait()
        _log.info("wskit: shutting down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def serve(
    router: Router[D],
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    path: str = "/",
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
    compress: bool = False,
    close_timeout: float = 5.0,
    send_timeout: float | None = 30.0,
    shutdown_timeout: float = 10.0,
    on_ready: Callable[[list[str]], None] | None = None,
    loop: EventLoopChoice = "auto",
) -> None:
    """Serve ``router`` at ``ws://host:port/path`` until SIGINT/SIGTERM.

    Blocks. ``app`` lets you add your own routes (static files, health
    checks) first. Handler options: :func:`create_handler`. Without
    ``allowed_hosts``, a loopback ``host`` serves only the loopback names
    (see :func:`serve_async`); on other addresses, set ``allowed_hosts``.

    ``loop``: ``"auto"`` runs on uvloop when it is installed
    (``pip install wskit-aiohttp[speed]``), else on asyncio's default loop;
    ``"asyncio"`` never uses uvloop; ``"uvloop"`` requires it.
    """
    application = create_app(
        router,
        path=path,
        app=app,
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
        compress=compress,
        close_timeout=close_timeout,
        send_timeout=send_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    _run(
        application,
        host=host,
        port=port,
        path=path,
        shutdown_timeout=shutdown_timeout,
        on_ready=on_ready,
        loop=loop,
    )


def _run(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    path: str = "/",
    shutdown_timeout: float = 10.0,
    on_ready: Callable[[list[str]], None] | None = None,
    loop: EventLoopChoice = "auto",
) -> None:
    """:func:`serve_async` in a new event loop; blocks until SIGINT/SIGTERM."""
    main = serve_async(
        app,
        host=host,
        port=port,
        path=path,
        shutdown_timeout=shutdown_timeout,
        on_ready=on_ready,
    )
    uvloop = pick_uvloop(loop)
    with contextlib.suppress(KeyboardInterrupt):
        if uvloop is not None:
            uvloop.run(main)
        else:
            asyncio.run(main)


#: ``"auto"`` (uvloop when installed), ``"asyncio"`` or ``"uvloop"``.
EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def pick_uvloop(loop: EventLoopChoice) -> Any:
    """The ``uvloop`` module to run on, or ``None`` for asyncio's default loop."""
    if loop not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {loop!r}")
    if loop == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        if loop == "uvloop":
            raise RuntimeError(
                "loop='uvloop' needs uvloop: pip install 'wskit-aiohttp[speed]'"
            ) from None
        return None
    return uvloop


def loop_name() -> str:
    """Which event loop runs (for the startup line): ``uvloop`` or ``asyncio``."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
