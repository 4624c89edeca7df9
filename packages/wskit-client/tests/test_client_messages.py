"""Lifecycle (states, idempotent connect/close, async with), send() and the offline
queue, inbound routing (on/once/off, stream, on_unhandled, on_error)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.client import (
    Client,
    ClientErrorInfo,
    ConnectError,
    Message,
    QueueOverflowError,
    SendStatus,
    ServerError,
    StateError,
)
from wskit.core.errors import ValidationError

T = 10.0


class Collector:
    def __init__(self, expected: int) -> None:
        self.items: list[Any] = []
        self.expected = expected
        self.done = asyncio.Event()

    def __call__(self, item: Any, *rest: Any) -> None:
        self.items.append((item, *rest) if rest else item)
        if len(self.items) >= self.expected:
            self.done.set()

    async def wait(self) -> list[Any]:
        await asyncio.wait_for(self.done.wait(), T)
        return self.items


async def test_states_and_idempotent_connect_close(make_client: Any, record_states: Any) -> None:
    client = make_client()
    rec = record_states(client)
    assert client.state == "closed" and not client.is_connected
    await asyncio.gather(client.connect(), client.connect())
    await client.connect()
    assert client.state == "open" and client.is_connected and client.protocol == ""
    await asyncio.gather(client.close(), client.close())
    await client.close()
    assert rec.states == ["connecting", "open", "closing", "closed"]
    await client.connect()  # allowed after close
    assert client.state == "open"


async def test_async_with(server: Any, schemas: Any) -> None:
    async with Client(server.url, reconnect=False) as client:
        assert client.state == "open"
        assert (await client.request(schemas.Echo, payload={"text": "x"})).text == "x"
    assert client.state == "closed"


async def test_failed_initial_connect_raises_and_stays_closed(
    server: Any, record_states: Any
) -> None:
    port = server.port
    await server.stop()
    client = Client(f"ws://127.0.0.1:{port}/ws")
    rec = record_states(client)
    with pytest.raises(ConnectError) as info:
        await client.connect()
    assert isinstance(info.value, ConnectionError)
    assert client.state == "closed"
    assert rec.states == ["connecting", "closed"]  # no reconnect loop after a failed first connect


async def test_close_during_connect(server: Any, record_states: Any) -> None:
    client = Client(server.url)
    connecting = asyncio.create_task(client.connect())
    await asyncio.sleep(0)
    await client.close()
    with pytest.raises(Exception, match="closed"):
        await connecting
    assert client.state == "closed"


async def test_send_and_receive_in_order(make_client: Any, schemas: Any, server: Any) -> None:
    async with make_client() as client:
        acks = Collector(20)
        client.on(schemas.NoteAck, acks)
        statuses = [client.send(schemas.Note, payload={"text": f"n{i}"}) for i in range(20)]
        assert statuses == [SendStatus.SENT] * 20
        msgs: list[Message[Any]] = await acks.wait()
        assert [m.payload.text for m in msgs] == [f"n{i}" for i in range(20)]
        assert all(m.type == "NOTE_ACK" for m in msgs)
        assert await server.state.wait_notes(20) == [f"n{i}" for i in range(20)]


async def test_send_validates_outbound(make_client: Any, schemas: Any) -> None:
    client = make_client()
    with pytest.raises(ValidationError):
        client.send(schemas.Note, payload={"text": 1})
    with pytest.raises(ValidationError):
        client.send(schemas.Note, payload={"text": "a"}, meta={"clientIdX": 1})
    assert client.queued == 0


async def test_offline_queue_policies(server: Any, schemas: Any) -> None:
    overflow: list[Any] = []
    newest = Client(server.url, queue="drop-newest", queue_size=2)
    newest.on_error(lambda exc, info: overflow.append((type(exc), info.kind)))
    sent = [newest.send(schemas.Note, payload={"text": f"a{i}"}) for i in range(3)]
    assert sent == [SendStatus.QUEUED, SendStatus.QUEUED, SendStatus.DROPPED]
    assert not sent[2] and sent[0]
    assert overflow == [(QueueOverflowError, "overflow")]
    await newest.connect()
    assert await server.state.wait_notes(2) == ["a0", "a1"]
    await newest.close()

    oldest = Client(server.url, queue="drop-oldest", queue_size=2)
    sent = [oldest.send(schemas.Note, payload={"text": f"b{i}"}) for i in range(3)]
    assert sent == [SendStatus.QUEUED] * 3
    await oldest.connect()
    assert (await server.state.wait_notes(4))[2:] == ["b1", "b2"]
    await oldest.close()

    off = Client(server.url, queue="off")
    assert off.send(schemas.Note, payload={"text": "c"}) is SendStatus.DROPPED
    await off.close()


async def test_close_clears_the_queue(server: Any, schemas: Any) -> None:
    client = Client(server.url)
    client.send(schemas.Note, payload={"text": "gone"})
    assert client.queued == 1
    await client.close()
    assert client.queued == 0
    await client.connect()
    client.send(schemas.Note, payload={"text": "kept"})
    assert await server.state.wait_notes(1) == ["kept"]
    await client.close()


async def test_auto_connect(server: Any, schemas: Any) -> None:
    client = Client(server.url, auto_connect=True)
    assert client.send(schemas.Note, payload={"text": "auto"}) is SendStatus.QUEUED
    assert client.state == "connecting"
    assert await server.state.wait_notes(1) == ["auto"]
    await client.close()
    other = Client(server.url, auto_connect=True)
    assert (await other.request(schemas.Echo, payload={"text": "r"})).text == "r"
    await other.close()


async def test_on_once_off_and_decorator(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        every = Collector(3)
        first: list[int] = []
        unsubscribe = client.on(schemas.Push, every)
        client.once(schemas.Push, lambda m: first.append(m.payload.seq))

        @client.on(schemas.Push)
        async def async_handler(msg: Message[Any]) -> None:
            decorated.append(msg.payload.seq)

        decorated: list[int] = []
        client.send(schemas.Note, payload={"text": "push:3"})
        assert [m.payload.seq for m in await every.wait()] == [0, 1, 2]
        assert first == [0]
        unsubscribe()
        assert client.off(schemas.Push, async_handler) == 1
        assert client.off(schemas.Push) == 0
        again = Collector(2)
        client.on(schemas.Push, again)
        client.send(schemas.Note, payload={"text": "push:2"})
        await again.wait()
        assert len(every.items) == 3 and first == [0] and decorated == [0, 1, 2]


async def test_stream(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        stream = client.stream(schemas.Push)
        client.send(schemas.Note, payload={"text": "push:4"})
        seqs = []
        async for msg in stream:
            seqs.append(msg.payload.seq)
            if len(seqs) == 4:
                break
        assert seqs == [0, 1, 2, 3]
        await stream.aclose()
        # A stream ends when the client closes.
        async with client.stream(schemas.Push) as second:
            closer = asyncio.create_task(client.close())
            assert [m async for m in second] == []
            await closer


async def test_stream_buffer_overflow_drops_oldest(make_client: Any, schemas: Any) -> None:
    errors = Collector(2)
    async with make_client() as client:
        client.on_error(errors)
        stream = client.stream(schemas.Push, max_buffer=2)
        sentinel = Collector(4)
        client.on(schemas.Push, sentinel)
        client.send(schemas.Note, payload={"text": "push:4"})
        await sentinel.wait()
        first = await anext(stream)
        second = await anext(stream)
        assert (first.payload.seq, second.payload.seq) == (2, 3)
        kinds = [info.kind for _, info in await errors.wait()]
        assert kinds == ["overflow", "overflow"]


async def test_unhandled_invalid_and_garbage_frames(make_client: Any, schemas: Any) -> None:
    errors = Collector(2)
    unhandled = Collector(1)
    async with make_client() as client:
        client.on_error(errors)
        client.on_unhandled(unhandled)
        client.on(schemas.Push, lambda m: pytest.fail("invalid message reached a handler"))
        client.send(schemas.Note, payload={"text": "bad-push"})
        client.send(schemas.Note, payload={"text": "garbage"})
        client.send(schemas.Note, payload={"text": "unknown"})
        (e1, i1), (_, i2) = await errors.wait()
        assert isinstance(e1, ValidationError) and isinstance(i1, ClientErrorInfo)
        assert (i1.kind, i1.message_type) == ("validation", "PUSH")
        assert i1.details[0]["path"] == ["payload", "seq"]
        assert i2.kind == "parse" and i2.details == "not json"
        assert (await unhandled.wait())[0] == {"type": "MYSTERY", "meta": {}, "payload": {"a": 1}}


async def test_server_error_frames_and_handler_errors_reach_on_error(
    make_client: Any, schemas: Any
) -> None:
    errors = Collector(2)
    async with make_client() as client:
        client.on_error(errors)

        def broken(msg: Message[Any]) -> None:
            raise RuntimeError("handler bug")

        client.on(schemas.NoteAck, broken)
        client.send(schemas.Note, payload={"text": "x"})
        client.send(schemas.Nope.response, payload={"x": 1})  # the server has no such route
        got = await errors.wait()
        by_kind = {info.kind: exc for exc, info in got}
        assert isinstance(by_kind["handler"], RuntimeError)
        assert isinstance(by_kind["server"], ServerError)
        assert by_kind["server"].code == "UNIMPLEMENTED"


async def test_request_on_closed_client_is_a_state_error(schemas: Any, server: Any) -> None:
    client = Client(server.url)
    with pytest.raises(StateError, match="connect"):
        await client.request(schemas.Echo, payload={"text": "x"})
    with pytest.raises(StateError):
        await client.wait_open()


async def test_outbound_validation_error_names_type_and_fields() -> None:
    from wskit.pydantic import rpc

    Echo = rpc("ECHO", {"text": str}, "ECHO_REPLY", {"text": str})
    client = Client("ws://127.0.0.1:9/", reconnect=False)  # never connected: checks come first
    with pytest.raises(ValidationError) as info:
        client.send(Echo, payload={"text": 5, "extra": 1})
    assert str(info.value) == (
        "Cannot send 'ECHO': payload.text: Input should be a valid string; "
        "payload.extra: Extra inputs are not permitted"
    )
    assert [i["path"] for i in info.value.issues] == [["payload", "text"], ["payload", "extra"]]
    with pytest.raises(ValidationError, match=r"^Cannot send 'ECHO': payload\.text: Field"):
        await client.request(Echo, payload={})
    with pytest.raises(ValidationError, match=r"^Cannot send 'ECHO': meta\.trace: Unrecognized"):
        client.send(Echo, payload={"text": "a"}, meta={"trace": "t1"})
