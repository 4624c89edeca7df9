"""``python -m examples.live_feed serve|follow ...`` (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from wskit.aiohttp import create_app, serve_async

from .app import build_router, close_router, follow_feed, publish_forever


async def serve(args: argparse.Namespace) -> None:
    router = build_router(args.redis)

    def ready(urls: list[str]) -> None:
        for url in urls:
            print(f"live feed server: {url}", flush=True)

    publisher = None
    if args.publish:
        publisher = asyncio.ensure_future(publish_forever(router, args.feed, args.every_ms))
    try:
        app = create_app(router, path="/ws")
        await serve_async(app, host=args.host, port=args.port, path="/ws", on_ready=ready)
    finally:
        if publisher is not None:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        await close_router(router)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.live_feed")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run a server instance")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000)
    serve_cmd.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    serve_cmd.add_argument("--feed", default="prices")
    serve_cmd.add_argument("--publish", action="store_true", help="publish the feed from here")
    serve_cmd.add_argument("--every-ms", type=int, default=100)
    follow_cmd = commands.add_parser("follow", help="follow the feed and print it")
    follow_cmd.add_argument("url")
    follow_cmd.add_argument("--feed", default="prices")
    follow_cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "serve":
            asyncio.run(serve(args))
        else:
            asyncio.run(follow_feed(args.url, args.feed, as_json=args.json))


if __name__ == "__main__":
    main()
