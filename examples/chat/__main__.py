"""Run the chat demo: ``python -m examples.chat [--host 127.0.0.1] [--port 8000]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import sys

from wskit.aiohttp import serve_async

from .app import make_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.chat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8000, help="0 picks a free port (default: %(default)s)"
    )
    args = parser.parse_args()

    def ready(urls: list[str]) -> None:
        for url in urls:
            page = url.replace("ws://", "http://", 1).removesuffix("/ws") + "/"
            print(f"wskit chat demo: open {page} in a browser (WebSocket: {url})", flush=True)
        print("Press Ctrl+C to stop.", flush=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve_async(make_app(), host=args.host, port=args.port, path="/ws", on_ready=ready)
            )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        sys.exit(
            f"wskit chat demo: port {args.port} on {args.host} is already in use "
            f"(another demo still running?): stop it, or pass --port with another number "
            f"(--port 0 picks a free one)"
        )


if __name__ == "__main__":
    main()
