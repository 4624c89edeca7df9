"""Run the chat demo: ``python -m examples.chat [--host 127.0.0.1] [--port 8000]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from wskit.aiohttp import serve_async

from .app import make_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.chat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    def ready(urls: list[str]) -> None:
        for url in urls:
            page = url.replace("ws://", "http://", 1).removesuffix("/ws") + "/"
            print(f"wskit chat demo: open {page} in a browser (WebSocket: {url})", flush=True)
        print("Press Ctrl+C to stop.", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_async(make_app(), host=args.host, port=args.port, path="/ws", on_ready=ready)
        )


if __name__ == "__main__":
    main()
