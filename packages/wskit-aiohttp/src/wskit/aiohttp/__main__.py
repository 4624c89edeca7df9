"""``python -m wskit.aiohttp module:router [--host H] [--port P] [--path /ws]``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from wskit.aiohttp.server import serve
from wskit.core.connection import HeartbeatOptions
from wskit.core.router import Router

__all__ = ["load_router", "main"]


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wskit.aiohttp", description="Serve a wskit router over WebSockets."
    )
    parser.add_argument("target", help="module:router (or module:factory)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--path", default="/")
    parser.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origins",
        help="browser origin allowed to connect (repeatable; '*' for any)",
    )
    parser.add_argument("--max-connections", type=int, default=None)
    parser.add_argument(
        "--heartbeat", type=float, default=None, metavar="SECONDS", help="ping interval"
    )
    args = parser.parse_args(argv)
    router = load_router(args.target)
    heartbeat = HeartbeatOptions(interval_ms=args.heartbeat * 1000) if args.heartbeat else None
    serve(
        router,
        host=args.host,
        port=args.port,
        path=args.path,
        allowed_origins=args.allowed_origins,
        max_connections=args.max_connections,
        heartbeat=heartbeat,
    )


if __name__ == "__main__":
    main()
