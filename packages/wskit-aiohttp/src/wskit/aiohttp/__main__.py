"""``python -m wskit.aiohttp module:router [--host H] [--port P] [--path /ws] ...``

``--help`` lists every flag with its default."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Sequence

from wskit.aiohttp.server import _run, create_app, pick_uvloop
from wskit.core.connection import HeartbeatOptions
from wskit.core.router import Router

__all__ = ["build_parser", "load_router", "main"]


def load_router(target: str) -> Router[object]:
    """Import ``module:attr`` (``attr`` may be dotted); call it if it is a
    factory rather than a router."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"wskit.aiohttp: expected module:router, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Router) and callable(obj):
        obj = obj()
    if not isinstance(obj, Router):
        raise SystemExit(f"wskit.aiohttp: {target!r} is not a wskit Router")
    return obj


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    router = load_router(args.target)
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
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        pick_uvloop(args.loop)
    except RuntimeError as exc:
        parser.error(str(exc))
    _run(app, host=args.host, port=args.port, path=args.path, loop=args.loop)


if __name__ == "__main__":
    main()
