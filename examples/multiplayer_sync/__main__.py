"""Run the multiplayer sync example: ``python -m examples.multiplayer_sync``."""

from __future__ import annotations

import asyncio

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server

from .app import authenticate, build_router, demo


async def main() -> None:
    app = create_app(build_router(), authenticate=authenticate)
    async with loopback_server(app) as server:
        for line in await demo(server.url):
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
