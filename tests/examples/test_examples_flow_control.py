"""examples/flow_control: never more than MAX_IN_FLIGHT jobs per connection, refused
submissions are retried after retryAfterMs, and every job completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.flow_control.app import MAX_IN_FLIGHT, Submit, build_router, run_jobs
from wskit.aiohttp import create_app
from wskit.aiohttp.testing import loopback_server
from wskit.client import Client
from wskit.core import RpcError

ROOT = Path(__file__).resolve().parents[2]


async def test_burst_is_spread_out_and_completes() -> None:
    router = build_router(work_ms=200)
    async with loopback_server(create_app(router)) as server:
        results, waits = await run_jobs(server.url, 10)
    assert results == {f"job{i}": i * i for i in range(10)}
    assert router.stats["peak"] == MAX_IN_FLIGHT
    assert router.stats["refused"] == waits > 0


async def test_the_refusal_says_when_to_come_back() -> None:
    router = build_router(work_ms=10_000)  # jobs that outlast the test
    async with loopback_server(create_app(router)) as server, Client(server.url) as client:
        for i in range(MAX_IN_FLIGHT):
            await client.request(Submit, payload={"job_id": f"j{i}", "n": i})
        with pytest.raises(RpcError) as full:
            await client.request(Submit, payload={"job_id": "one-more", "n": 0})
    assert (full.value.code, full.value.retry_after_ms) == ("RESOURCE_EXHAUSTED", 50)
    assert full.value.message == f"{MAX_IN_FLIGHT} jobs in flight: wait for one to finish"
