"""compat="ws-kit-ts": what the client writes for a WS-Kit TypeScript server, whose strict
meta schema knows only timestamp and correlationId (and drops any other request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from wskit.client import Client, RequestTimeoutError
from wskit.core.errors import ValidationError

T = 10.0


@pytest.fixture
async def ts_server(raw_server_class: Any) -> AsyncIterator[Any]:
    srv = raw_server_class(strict_meta=True)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def _echo(client: Client, schemas: Any, text: str, **kwargs: Any) -> str:
    reply = await asyncio.wait_for(
        client.request(schemas.Echo, payload={"text": text}, **kwargs), T
    )
    return str(reply.text)


async def test_default_client_writes_timeout_and_key_and_a_strict_server_drops_it(
    ts_server: Any, schemas: Any
) -> None:
    """The problem: the wskit dialect puts timeoutMs/idempotencyKey in meta."""
    async with Client(ts_server.url, reconnect=False) as client:
        assert client.compat == "wskit"
        with pytest.raises(RequestTimeoutError):
            await _echo(client, schemas, "a", meta={"timeoutMs": 5000}, timeout_ms=100)
        with pytest.raises(RequestTimeoutError):
            await _echo(client, schemas, "b", idempotency_key="k", timeout_ms=100)
        metas = [f["meta"] for f in ts_server.received if f["type"] == "ECHO"]
        assert metas[0]["timeoutMs"] == 5000 and metas[1]["idempotencyKey"] == "k"


async def test_ws_kit_ts_never_writes_timeout_ms(ts_server: Any, schemas: Any) -> None:
    async with Client(ts_server.url, reconnect=False, compat="ws-kit-ts") as client:
        assert await _echo(client, schemas, "a", meta={"timeoutMs": 5000}) == "a"
        assert await _echo(client, schemas, "b", timeout_ms=2000) == "b"
        client.send(schemas.Note, payload={"text": "n"}, meta={"timeoutMs": 5})
        await ts_server.wait_for(lambda: len(ts_server.received) == 3)
        for frame in ts_server.received:
            assert set(frame["meta"]) <= {"timestamp", "correlationId"}, frame


async def test_ws_kit_ts_client_timeout_still_applies_and_sends_no_abort(
    ts_server: Any, schemas: Any
) -> None:
    async with Client(ts_server.url, reconnect=False, compat="ws-kit-ts") as client:
        with pytest.raises(RequestTimeoutError):
            await asyncio.wait_for(client.request(schemas.Hold, payload={"n": 1}, timeout_ms=50), T)
        call = client.call(schemas.Hold, payload={"n": 2})
        await ts_server.wait_for(lambda: len(ts_server.received) == 2)
        assert call.cancel()
        assert await _echo(client, schemas, "after") == "after"
        # A TS server refuses reserved types: no $ws:abort was written.
        assert [f["type"] for f in ts_server.received] == ["HOLD", "HOLD", "ECHO"]


@pytest.mark.parametrize(
    "kwargs",
    [{"idempotency_key": "k"}, {"meta": {"idempotencyKey": "k"}}],
    ids=["argument", "meta"],
)
async def test_ws_kit_ts_refuses_idempotency_keys_at_call_time(
    ts_server: Any, schemas: Any, kwargs: dict[str, Any]
) -> None:
    async with Client(ts_server.url, reconnect=False, compat="ws-kit-ts") as client:
        with pytest.raises(ValidationError) as raised:
            client.call(schemas.Echo, payload={"text": "x"}, **kwargs)
        assert raised.value.issues[0]["path"] == ["meta", "idempotencyKey"]
        assert "compat='ws-kit-ts'" in raised.value.issues[0]["message"]
        with pytest.raises(ValidationError):
            await client.request(schemas.Echo, payload={"text": "x"}, **kwargs)
        if "meta" in kwargs:
            with pytest.raises(ValidationError):
                client.send(schemas.Note, payload={"text": "x"}, **kwargs)
        assert client.pending_requests == 0 and client.queued == 0
        assert await _echo(client, schemas, "after") == "after"
        assert [f["type"] for f in ts_server.received] == ["ECHO"]


def test_compat_is_checked() -> None:
    with pytest.raises(ValueError, match="compat"):
        Client("ws://127.0.0.1:1/ws", compat="ws-kit")  # type: ignore[arg-type]
