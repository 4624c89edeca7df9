"""wskit-client against the original WS-Kit TypeScript server (Bun, @ws-kit/zod 0.10).

Every test also checks the TS side: the ``ts_server`` fixture fails a test when the TS
router reported an error (a frame it rejected) that the test did not take and assert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from wskit.client import Client, ReconnectOptions, SendStatus
from wskit.core.errors import RpcError, ValidationError
from wskit.core.testing import FakeClock

T = 10.0  # safety net for awaits that should complete at once
# Reconnect waits exactly 300 ms of the (fake) clock: the test decides when it happens.
ON_CUE = ReconnectOptions(initial_delay_ms=300, jitter="none")


async def test_send_and_on(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url)
    acks = client.stream(schemas.NoteAck)
    pongs = client.stream(schemas.Pong)
    await client.connect()

    assert client.send(schemas.Note, payload={"text": "h\u00e9llo \U0001f600"}) is SendStatus.SENT
    assert client.send(schemas.Ping) is SendStatus.SENT

    ack = await asyncio.wait_for(anext(acks), T)
    assert (ack.type, ack.meta, ack.payload.text) == ("NOTE_ACK", {}, "h\u00e9llo \U0001f600")
    pong = await asyncio.wait_for(anext(pongs), T)
    assert (pong.type, pong.meta, pong.payload) == ("PONG", {}, None)


async def test_extended_meta_both_ways(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url)
    acks = client.stream(schemas.TaggedAck)
    await client.connect()
    client.send(schemas.Tagged, payload={"text": "a"}, meta={"room": "r1"})
    client.send(schemas.Tagged, payload={"text": "b"})
    first = await asyncio.wait_for(anext(acks), T)
    second = await asyncio.wait_for(anext(acks), T)
    assert (first.payload.text, first.meta) == ("a", {"room": "r1"})
    assert (second.payload.text, second.meta) == ("b", {})


async def test_optional_field_left_out_goes_out_as_null(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    """A pydantic field with a ``None`` default is sent as ``null``; zod's ``.optional()``
    accepts a missing key but not ``null`` (``.nullish()`` accepts both), so the TS server
    drops the message. With the key given, the same message goes through."""
    client = make_client(ts_server.url)
    acks = client.stream(schemas.NoteAck)
    await client.connect()
    client.send(schemas.Labeled, payload={"text": "no label"})
    rejected = await ts_server.wait_error(lambda e: e["type"] == "LABELED")
    assert rejected["code"] == "VALIDATION_ERROR"
    assert "received null" in rejected["message"]
    client.send(schemas.Labeled, payload={"text": "labelled"}, meta={"label": "x"})
    assert (await asyncio.wait_for(anext(acks), T)).payload.text == "labelled"
    assert [e["type"] for e in await ts_server.take_errors()] == ["LABELED"]


async def test_rpc_reply(ts_server: Any, make_client: Callable[..., Client], schemas: Any) -> None:
    client = make_client(ts_server.url)
    await client.connect()
    reply = await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "hi"}), T)
    assert reply.text == "hi"
    assert client.pending_requests == 0


async def test_rpc_progress_iterator(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url)
    await client.connect()
    call = client.call(schemas.Count, payload={"n": 1})

    async def updates() -> list[int]:
        return [u.value async for u in call.progress()]

    assert await asyncio.wait_for(updates(), T) == [0]
    assert (await asyncio.wait_for(call.result(), T)).value == 1


async def test_rpc_progress_callback(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url)
    await client.connect()
    seen: list[int] = []
    done = await asyncio.wait_for(
        client.request(schemas.Count, payload={"n": 3}, on_progress=lambda u: seen.append(u.value)),
        T,
    )
    assert (seen, done.value) == ([0, 1, 2], 3)


@pytest.mark.parametrize(
    ("code", "retry_after_ms"),
    [("NOT_FOUND", None), ("UNAVAILABLE", 100), ("OUT_OF_STOCK", None)],
)
async def test_rpc_error(
    code: str,
    retry_after_ms: int | None,
    ts_server: Any,
    make_client: Callable[..., Client],
    schemas: Any,
) -> None:
    client = make_client(ts_server.url)
    await client.connect()
    with pytest.raises(RpcError) as info:
        await asyncio.wait_for(client.request(schemas.Fail, payload={"code": code}), T)
    err = info.value
    assert (err.code, err.message, err.details) == (code, "boom", {"attempt": 1})
    assert err.retry_after_ms == retry_after_ms
    assert err.retryable is None  # not sent: the client infers it from the code
    # The TS router reports each ctx.error() to its onError hooks.
    assert [(e["code"], e["type"]) for e in await ts_server.take_errors()] == [(code, "FAIL")]
    # The connection is still usable.
    assert (
        await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "ok"}), T)
    ).text == "ok"


async def test_reconnect_after_the_server_drops_the_connection_and_offline_queue(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any, record_states: Any
) -> None:
    clock = FakeClock()
    client = make_client(ts_server.url, reconnect=ON_CUE, clock=clock)
    rec = record_states(client)
    acks = client.stream(schemas.NoteAck)
    await client.connect()

    client.send(schemas.Drop, payload={"code": 4001})
    await rec.reached("reconnecting")
    assert (client.close_code, client.close_reason) == (4001, "dropped by request")

    # Disconnected: messages and a request wait in the offline queue, in order.
    statuses = [client.send(schemas.Note, payload={"text": f"q{i}"}) for i in range(3)]
    assert statuses == [SendStatus.QUEUED] * 3
    echo = client.call(schemas.Echo, payload={"text": "queued"})
    assert client.queued == 4

    await clock.advance(300)  # the reconnect delay passes
    await rec.reached("open")
    got = [(await asyncio.wait_for(anext(acks), T)).payload.text for _ in range(3)]
    assert got == ["q0", "q1", "q2"]
    assert (await asyncio.wait_for(echo.result(), T)).text == "queued"
    assert (client.queued, client.pending_requests) == (0, 0)
    assert rec.states == ["connecting", "open", "reconnecting", "connecting", "open"]


async def test_reconnect_after_a_server_process_restart_on_the_same_port(
    private_ts_server: Any, make_client: Callable[..., Client], schemas: Any, record_states: Any
) -> None:
    server = private_ts_server
    clock = FakeClock()
    client = make_client(server.url, reconnect=ON_CUE, clock=clock)
    rec = record_states(client)
    acks = client.stream(schemas.NoteAck)
    await client.connect()
    assert (
        await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "1"}), T)
    ).text == "1"

    await server.kill()
    await rec.reached("reconnecting")
    assert client.close_code == 1006  # no close frame: the process died

    assert client.send(schemas.Note, payload={"text": "while down"}) is SendStatus.QUEUED
    progress: list[int] = []
    count = client.call(
        schemas.Count, payload={"n": 2}, on_progress=lambda u: progress.append(u.value)
    )

    await server.restart()
    assert server.starts == 2
    await clock.advance(300)
    await rec.reached("open")

    assert (await asyncio.wait_for(anext(acks), T)).payload.text == "while down"
    assert (await asyncio.wait_for(count.result(), T)).value == 2
    assert progress == [0, 1]
    assert server.errors() == []  # the restarted TS server rejected nothing


async def test_plain_client_request_with_deadline_meta_is_dropped_by_the_ts_server(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    """Why ``compat="ws-kit-ts"`` exists: the TS server validates meta strictly (only
    ``timestamp``/``correlationId`` plus declared extended meta), so a request carrying
    ``meta.timeoutMs`` fails validation there and is dropped without any answer."""
    client = make_client(ts_server.url)
    await client.connect()
    call = client.call(schemas.Echo, payload={"text": "x"}, meta={"timeoutMs": 5000})

    rejected = await ts_server.wait_error(lambda e: e["code"] == "VALIDATION_ERROR")
    assert (rejected["type"], 'Unrecognized key: "timeoutMs"' in rejected["message"]) == (
        "ECHO",
        True,
    )
    # The server answers the next request on the same connection; the first one never.
    assert (
        await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "y"}), T)
    ).text == "y"
    assert not call.done()
    call.cancel()  # sends $ws:abort, which the TS server rejects as a reserved type
    await ts_server.wait_error(lambda e: '"$ws:abort"' in e["message"])
    assert [e["code"] for e in await ts_server.take_errors()] == ["VALIDATION_ERROR", None]


async def test_plain_client_idempotent_request_is_dropped_by_the_ts_server(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url)
    await client.connect()
    call = client.call(schemas.Echo, payload={"text": "x"}, idempotency_key="k1")
    rejected = await ts_server.wait_error(lambda e: e["code"] == "VALIDATION_ERROR")
    assert 'Unrecognized key: "idempotencyKey"' in rejected["message"]
    assert (
        await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "y"}), T)
    ).text == "y"
    assert not call.done()
    call.cancel()
    await ts_server.wait_error(lambda e: '"$ws:abort"' in e["message"])
    assert [e["code"] for e in await ts_server.take_errors()] == ["VALIDATION_ERROR", None]


# -- compat="ws-kit-ts" (skipped until wskit-client has the option) -----------------------


async def test_compat_client_request_with_deadline_meta_is_answered(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url, compat=True)
    await client.connect()
    reply = await asyncio.wait_for(
        client.request(schemas.Echo, payload={"text": "x"}, meta={"timeoutMs": 5000}), T
    )
    assert reply.text == "x"
    # ts_server's teardown fails the test if the TS server rejected the frame.


async def test_compat_client_refuses_idempotency_keys_and_still_works(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    # A strict TypeScript server would drop a request carrying meta.idempotencyKey, so the
    # compat client refuses the key at call time instead of sending a request that hangs.
    client = make_client(ts_server.url, compat=True)
    await client.connect()
    with pytest.raises(ValidationError) as info:
        await asyncio.wait_for(
            client.request(schemas.Echo, payload={"text": "k"}, idempotency_key="k1"), T
        )
    assert [i["path"] for i in info.value.issues] == [["meta", "idempotencyKey"]]
    reply = await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "k"}), T)
    assert reply.text == "k"


async def test_compat_client_progress_and_errors(
    ts_server: Any, make_client: Callable[..., Client], schemas: Any
) -> None:
    client = make_client(ts_server.url, compat=True)
    await client.connect()
    seen: list[int] = []
    done = await asyncio.wait_for(
        client.request(schemas.Count, payload={"n": 2}, on_progress=lambda u: seen.append(u.value)),
        T,
    )
    assert (seen, done.value) == ([0, 1], 2)
    with pytest.raises(RpcError) as info:
        await asyncio.wait_for(client.request(schemas.Fail, payload={"code": "NOT_FOUND"}), T)
    assert info.value.code == "NOT_FOUND"
    assert [e["code"] for e in await ts_server.take_errors()] == ["NOT_FOUND"]
