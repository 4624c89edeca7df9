"""Run the delta sync example: ``python -m examples.delta_sync``."""

from __future__ import annotations

import asyncio

from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server

from .app import build_router, demo


async def main() -> None:
    async with loopback_server(create_app(build_router())) as server:
        for line in await demo(server.url):
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
