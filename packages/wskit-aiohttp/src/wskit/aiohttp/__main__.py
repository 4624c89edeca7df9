"""``python -m wskit.aiohttp module:router [--authenticate module:func] [--port P] ...``

``--help`` lists every flag with its default."""

from __future__ import annotations

import argparse
import errno
import math
from collections.abc import Sequence
from typing import cast

from wskit.aiohttp.handler import Authenticate
from wskit.aiohttp.server import _run, create_app, pick_uvloop
from wskit.core import loader
from wskit.core.connection import HeartbeatOptions
from wskit.core.router import Router

__all__ = ["build_parser", "load_object", "load_router", "main"]

_PROG = "wskit.aiohttp"


def load_object(target: str, what: str = "module:name") -> object:
    """Import ``module:attr`` (``attr`` may be dotted) from the current directory
    or ``sys.path``; a mistake exits with a one-line message saying what to fix."""
    return loader.load_object(target, what=what, prog=_PROG)


def load_router(target: str) -> Router[object]:
    """Import ``module:attr`` (``attr`` may be dotted); call it if it is a
    factory rather than a router."""
    return loader.load_router(target, prog=_PROG)


def load_authenticate(target: str) -> Authenticate:
    """Import the ``authenticate(request)`` function named by ``module:func``."""
    obj = load_object(target, "module:function")
    if not callable(obj):
        raise SystemExit(
            f"wskit.aiohttp: --authenticate {target!r} is a {type(obj).__name__}, not a "
            f"function authenticate(request) -> connection data or None"
        )
    return cast("Authenticate", obj)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _size(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line (``--help`` shows every flag's default)."""
    parser = argparse.ArgumentParser(
        prog="python -m wskit.aiohttp",
        description="Serve a wskit router over WebSockets until SIGINT/SIGTERM.",
    )
    parser.add_argument("target", help="module:router, or module:factory returning a router")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 or :: for every interface (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=3000,
        help="port to listen on, 0 for any free port (default: %(default)s)",
    )
    parser.add_argument(
        "--path", default="/", help="URL path of the WebSocket endpoint (default: %(default)s)"
    )
    parser.add_argument(
        "--authenticate",
        metavar="MODULE:FUNC",
        help=(
            "function authenticate(request) run on every upgrade: what it returns becomes "
            "ctx.data, None refuses with 401 (default: none, every connection is accepted "
            "and ctx.data starts as {})"
        ),
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="HOST",
        help=(
            "Host header value served (repeatable; any port; '.example.com' for a domain "
            "and its subdomains; '*' for any); other requests get 400 (default: on a "
            "loopback --host, localhost, 127.0.0.1 and [::1] only; else any)"
        ),
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origins",
        metavar="ORIGIN",
        help=(
            "browser origin allowed besides same-origin pages (repeatable; '*' for any); "
            "others get 403 (default: same-origin pages and non-browser clients only)"
        ),
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="open connections plus upgrades in progress; beyond it 503 (default: unlimited)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (wskit-aiohttp[speed]), or force one "
        "(default: auto)",
    )
    parser.add_argument(
        "--heartbeat",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="ping interval; a peer silent for 5 s after a ping is closed (default: off)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_size,
        default=None,
        metavar="BYTES",
        help="largest inbound frame; a larger one closes with 1009 (default: the router's, "
        "1 MiB unless create_router() says otherwise)",
    )
    parser.add_argument(
        "--max-buffered-bytes",
        type=_size,
        default=None,
        metavar="BYTES",
        help="outbound bytes queued per connection before --overflow applies (default: the "
        "router's, 1 MiB unless create_router() says otherwise)",
    )
    parser.add_argument(
        "--overflow",
        choices=("close", "drop"),
        default=None,
        help="when a client reads too slowly: close it with 1013, or drop frames and send "
        "RESOURCE_EXHAUSTED (default: the router's, close unless create_router() says "
        "otherwise)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long open connections get to close (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    router = load_router(args.target)
    authenticate = load_authenticate(args.authenticate) if args.authenticate else None
    try:
        heartbeat = (
            HeartbeatOptions(interval_ms=args.heartbeat * 1000)
            if args.heartbeat is not None
            else None
        )
        app = create_app(
            router,
            path=args.path,
            allowed_origins=args.allowed_origins,
            allowed_hosts=args.allowed_hosts,
            max_connections=args.max_connections,
            heartbeat=heartbeat,
            authenticate=authenticate,
            max_message_bytes=args.max_message_bytes,
            max_buffered_bytes=args.max_buffered_bytes,
            overflow=args.overflow,
            shutdown_timeout=args.shutdown_timeout,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        pick_uvloop(args.loop)
    except RuntimeError as exc:
        parser.error(str(exc))
    try:
        _run(
            app,
            host=args.host,
            port=args.port,
            path=args.path,
            shutdown_timeout=args.shutdown_timeout,
            loop=args.loop,
        )
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        raise SystemExit(listen_error(args.host, args.port, exc)) from None


def listen_error(host: str, port: int, exc: OSError) -> str:
    """One line for a port that cannot be listened on (taken, privileged, no such address)."""
    if exc.errno == errno.EADDRINUSE:
        hint = "another server is using it: stop it, or pass another --port (0 picks a free one)"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges: pass a --port above 1023"
    else:
        hint = "this machine has no such address: check --host"
    return f"wskit.aiohttp: cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}"


if __name__ == "__main__":
    main()
