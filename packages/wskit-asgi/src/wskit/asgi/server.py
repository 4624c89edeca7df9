"""Running an ASGI app under uvicorn with a graceful WebSocket shutdown.

uvicorn stops in this order on SIGINT/SIGTERM: it closes its listeners, closes
every open WebSocket itself with 1012 ("service restart", frames not yet sent
are lost), waits for the app's tasks, and only then runs the app's lifespan
shutdown. So a :class:`~wskit.asgi.WebSocketApp` only hears of the shutdown
after its connections are gone. :func:`serve` runs uvicorn with one step in
front: every WebSocket app it knows of closes its connections with 1001 after
the frames queued for them (``on_close`` runs for each), then uvicorn stops as
usual. Needs uvicorn (``pip install wskit-asgi[uvicorn]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from wskit.asgi.app import WebSocketApp
from wskit.core.handshake import LOOPBACK_HOSTS, is_loopback

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "QueryRedactingFilter",
    "build_server",
    "serve",
    "serve_async",
    "server_urls",
]

_log = logging.getLogger("wskit.asgi")

_QUERY = re.compile(r"\?[^\s\"]*")


class QueryRedactingFilter(logging.Filter):
    """Drops query strings (``?access_token=...``) from log records, so a token
    sent in the URL never reaches a log. :func:`serve` installs it on
    uvicorn's loggers; add it yourself when you run uvicorn another way::

        logging.getLogger("uvicorn.error").addFilter(QueryRedactingFilter())
        logging.getLogger("uvicorn.access").addFilter(QueryRedactingFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_QUERY.sub("", a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _QUERY.sub("", record.msg)
        return True


_REDACTING = QueryRedactingFilter()


def _install_redaction() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if _REDACTING not in logger.filters:
            logger.addFilter(_REDACTING)


def build_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    websocket_apps: Iterable[WebSocketApp[Any]] = (),
    **uvicorn_options: Any,
) -> uvicorn.Server:
    """A ``uvicorn.Server`` for ``app`` whose shutdown first closes the
    connections of ``websocket_apps`` (and of ``app`` itself when it is a
    :class:`~wskit.asgi.WebSocketApp`) with 1001.

    Defaults differ from uvicorn's in two ways: permessage-deflate is off
    (``ws_per_message_deflate=False``: it costs memory per connection and CPU
    per small frame), and ``ws_max_size`` is the largest ``max_message_bytes``
    of the WebSocket apps, so oversized frames are refused (1009) while their
    header is parsed instead of being buffered first. On a loopback ``host``,
    apps without ``allowed_hosts`` answer only the loopback names.
    """
    import uvicorn

    apps = list(websocket_apps)
    if isinstance(app, WebSocketApp) and app not in apps:
        apps.append(app)
    if is_loopback(host):
        for ws_app in apps:
            ws_app._default_hosts(LOOPBACK_HOSTS)
    options: dict[str, Any] = {"ws_per_message_deflate": False}
    if apps:
        options["ws_max_size"] = max(a.max_message_bytes for a in apps)
    options.update(uvicorn_options)
    config = uvicorn.Config(app, host=host, port=port, **options)

    class GracefulServer(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            if apps:
                await asyncio.gather(*(a.shutdown() for a in apps), return_exceptions=True)
            await super().shutdown(sockets)

    return GracefulServer(config)


def server_urls(server: uvicorn.Server, path: str = "/", *, scheme: str = "ws") -> list[str]:
    """``ws://host:port/path`` for every address a started server listens on."""
    urls = []
    for listener in getattr(server, "servers", ()):
        for sock in listener.sockets:
            address = sock.getsockname()
            if isinstance(address, tuple) and len(address) >= 2:
                host = str(address[0])
                if ":" in host:
                    host = f"[{host}]"
                urls.append(f"{scheme}://{host}:{address[1]}{path}")
    return urls


async def serve_async(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/",
    websocket_apps: Sequence[WebSocketApp[Any]] = (),
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    **uvicorn_options: Any,
) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM (or ``stop`` is set),
    then shut down: every WebSocket of ``websocket_apps`` (and of ``app`` when
    it is a WebSocketApp) is closed with 1001 and ``on_close`` runs for each,
    then uvicorn stops. ``on_ready(urls)`` runs once listening (default: print
    them, with ``path``). Other keyword arguments go to ``uvicorn.Config``."""
    _install_redaction()
    server = build_server(
        app, host=host, port=port, websocket_apps=websocket_apps, **uvicorn_options
    )
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                await task  # startup failed: raise its error
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        urls = server_urls(server, path)
        if on_ready is not None:
            on_ready(urls)
        else:
            for url in urls:
                print(f"wskit: serving {url} (Ctrl+C to stop)", flush=True)
        if stop is None:
            await task
            return
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        server.should_exit = True
        await task
    finally:
        if not task.done():
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await task


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/",
    websocket_apps: Sequence[WebSocketApp[Any]] = (),
    on_ready: Callable[[list[str]], None] | None = None,
    **uvicorn_options: Any,
) -> None:
    """:func:`serve_async` in a new event loop; blocks until SIGINT/SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_async(
                app,
                host=host,
                port=port,
                path=path,
                websocket_apps=websocket_apps,
                on_ready=on_ready,
                **uvicorn_options,
            )
        )
