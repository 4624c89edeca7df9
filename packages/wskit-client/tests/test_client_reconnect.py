"""The server is stopped and restarted on the same port mid-session: the client
reconnects, flushes its offline queue in order, resends idempotent requests exactly
once and fails the others cleanly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.client import ConnectError, ReconnectOptions, SendStatus
from wskit.core.errors import ConnectionClosedError

T = 10.0
FAST = ReconnectOptions(initial_delay_ms=5, max_delay_ms=20)


async def test_server_restart_mid_session(
    make_client: Any, schemas: Any, server: Any, record_states: Any
) -> None:
    client = make_client(reconnect=FAST)
    rec = record_states(client)
    tokens_seen: list[int] = []
    client.on(schemas.NoteAck, lambda msg: tokens_seen.append(1))
    await client.connect()

    idem = client.call(schemas.Work, payload={"job": "idem"}, idempotency_key="k1")
    plain = client.call(schemas.Work, payload={"job": "plain"})
    await asyncio.wait_for(server.state.started_event("work:idem").wait(), T)
    await asyncio.wait_for(server.state.started_event("work:plain").wait(), T)

    await server.stop()
    await rec.reached("reconnecting")
    with pytest.raises(ConnectionClosedError):
        await plain
    assert not idem.done()

    # Offline: messages and a new request wait in the queue, in order.
    assert [client.send(schemas.Note, payload={"text": f"q{i}"}) for i in range(3)] == [
        SendStatus.QUEUED
    ] * 3
    echo = client.call(schemas.Echo, payload={"text": "after"})
    assert client.queued == 5  # the idempotent resend + 3 notes + 1 request

    server.state.release.set()  # the resent WORK may complete on the new server
    await server.start()
    await rec.reached("open")

    assert await server.state.wait_notes(3) == ["q0", "q1", "q2"]
    assert (await asyncio.wait_for(echo.result(), T)).text == "after"
    done = await asyncio.wait_for(idem.result(), T)
    assert (done.job, done.server) == ("idem", 2)

    received = server.state.work_received
    assert [(g, job) for g, job, _ in received if job == "idem"] == [(1, "idem"), (2, "idem")]
    assert [(g, job) for g, job, _ in received if job == "plain"] == [(1, "plain")]
    assert all(key == "k1" for _, job, key in received if job == "idem")
    assert rec.states[:2] == ["connecting", "open"]
    assert rec.states[2] == "reconnecting" and rec.states[-1] == "open"
    assert client.pending_requests == 0


async def test_idempotent_request_is_resent_only_once(
    make_client: Any, schemas: Any, server: Any, record_states: Any
) -> None:
    client = make_client(reconnect=FAST)
    rec = record_states(client)
    await client.connect()
    idem = client.call(schemas.Work, payload={"job": "once"}, idempotency_key="k2")
    await asyncio.wait_for(server.state.started_event("work:once").wait(), T)

    for _ in range(2):
        server.state.started.pop("work:once")
        await server.stop()
        await rec.reached("reconnecting")
        if idem.done():
            break
        await server.start()
        await rec.reached("open")
        await asyncio.wait_for(server.state.started_event("work:once").wait(), T)
    with pytest.raises(ConnectionClosedError):
        await idem
    await server.start()
    await rec.reached("open")
    assert [g for g, job, _ in server.state.work_received if job == "once"] == [1, 2]


async def test_gives_up_after_max_attempts(
    make_client: Any, schemas: Any, server: Any, record_states: Any
) -> None:
    client = make_client(reconnect=ReconnectOptions(max_attempts=2, initial_delay_ms=1))
    rec = record_states(client)
    await client.connect()
    await server.stop()
    await rec.reached("reconnecting")
    queued_call = client.call(schemas.Echo, payload={"text": "never"})
    assert client.send(schemas.Note, payload={"text": "kept"}) is SendStatus.QUEUED
    await rec.reached("closed")
    with pytest.raises(ConnectError):
        await queued_call
    assert rec.states.count("connecting") == 3  # initial + 2 failed attempts
    with pytest.raises(Exception, match="closed"):
        await client.wait_open()
    # Plain messages survive the give-up and go out on the next connect().
    assert client.queued == 1
    await server.start()
    await client.connect()
    assert await server.state.wait_notes(1) == ["kept"]


async def test_reconnect_disabled_closes_and_fails_requests(
    make_client: Any, schemas: Any, server: Any, record_states: Any
) -> None:
    client = make_client(reconnect=False)
    rec = record_states(client)
    await client.connect()
    call = client.call(schemas.Slow, payload={"tag": "rd"})
    await asyncio.wait_for(server.state.started_event("rd").wait(), T)
    await server.stop()
    with pytest.raises(ConnectionClosedError):
        await call
    await rec.reached("closed")
    assert client.close_code == 1001
