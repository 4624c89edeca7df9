"""examples/error_recovery: transient errors are retried after retryAfterMs up to the
policy's attempts, final errors never; without a policy nothing is retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.error_recovery.app import RETRY, Quote, build_router
from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server
from wskit.client import Client
from wskit.core import RpcError

ROOT = Path(__file__).resolve().parents[2]


async def test_retry_only_what_may_succeed() -> None:
    router = build_router()
    async with loopback_server(create_app(router)) as server:
        async with Client(server.url, retry=RETRY) as client:
            price = await client.request(Quote, payload={"symbol": "ACME"})
            assert (price.symbol, price.cents) == ("ACME", 1234)
            with pytest.raises(RpcError) as missing:
                await client.request(Quote, payload={"symbol": "NOPE"})
            assert missing.value.code == "NOT_FOUND"
            with pytest.raises(RpcError) as down:
                await client.request(Quote, payload={"symbol": "INITECH"})
            assert (down.value.code, down.value.retry_after_ms) == ("UNAVAILABLE", 20)
        async with Client(server.url) as no_policy:
            with pytest.raises(RpcError, match="price feed reconnecting"):
                await no_policy.request(Quote, payload={"symbol": "INITECH"})
    assert router.attempts == {"ACME": 3, "NOPE": 1, "INITECH": RETRY.max_attempts + 1}
