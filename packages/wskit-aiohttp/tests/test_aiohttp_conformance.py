"""wskit-aiohttp passes the transport conformance suite (wskit.core.conformance)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from wskit.aiohttp.testing import serve_router
from wskit.core.conformance import RunningServer, ServerFactory, ServerOptions, TransportConformance


class TestAiohttpConformance(TransportConformance):
    transport_pings = True  # heartbeat sends WebSocket pings and counts pongs

    @pytest.fixture
    async def start_server(self) -> AsyncIterator[ServerFactory]:
        async with contextlib.AsyncExitStack() as stack:

            async def start(router: Any, options: ServerOptions) -> RunningServer:
                return await stack.enter_async_context(serve_router(router, options))

            yield start
