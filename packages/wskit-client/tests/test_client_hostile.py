"""Hostile server frames against a real client over loopback (a raw ``websockets`` server
sends them): each one is reported (to ``on_error``, or to the request it answers), the
client stays ``open`` on the same connection and the next request gets its reply. A crash
of the client's reader or writer closes the socket and the client visibly reconnects."""

# ruff: noqa: E501  (the frame tables keep one case per line)

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from wskit.client import (
    Client,
    ClientErrorInfo,
    Message,
    ReconnectOptions,
    RequestTimeoutError,
    ServerError,
)
from wskit.core.errors import ConnectionClosedError, RpcError, ValidationError
from wskit.core.schema import define_message

T = 10.0  # safety net
FAST = ReconnectOptions(initial_delay_ms=5, max_delay_ms=20)

HUGE_INT = "9" * 400


def nested_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def envelope(message_type: str, payload: str, meta: str = "{}") -> str:
    return '{"type":"' + message_type + '","meta":' + meta + ',"payload":' + payload + "}"


def push(payload: str, meta: str = "{}") -> str:
    return envelope("PUSH", payload, meta)


def rpc_error(retry_after: str) -> str:
    return '{"code":"UNAVAILABLE","message":"m","retryAfterMs":' + retry_after + "}"


PROGRESS = "$ws:rpc-progress"


@dataclass
class Probe:
    """A client on the raw server that records everything it is told."""

    client: Client
    raw: Any
    schemas: Any
    errors: list[tuple[BaseException, ClientErrorInfo]] = field(default_factory=list)
    delivered: list[Message[Any]] = field(default_factory=list)
    unhandled: list[dict[str, Any]] = field(default_factory=list)

    async def still_works(self, text: str = "after") -> None:
        """The same connection is open and answers a request (sent after the frames under
        test, so its reply arrives after them: they were all handled by then)."""
        reply = await asyncio.wait_for(
            self.client.request(self.schemas.Echo, payload={"text": text}), T
        )
        assert reply.text == text
        assert self.client.state == "open"
        assert self.raw.connections == 1

    def kinds(self) -> list[str]:
        return [info.kind for _, info in self.errors]


@pytest.fixture
async def probe(raw_server: Any, schemas: Any) -> AsyncIterator[Probe]:
    client = Client(raw_server.url, reconnect=False)
    p = Probe(client, raw_server, schemas)
    client.on_error(lambda exc, info: p.errors.append((exc, info)))
    client.on(schemas.Push, p.delivered.append)
    client.on(schemas.Note, p.delivered.append)
    client.on_unhandled(p.unhandled.append)
    await client.connect()
    try:
        yield p
    finally:
        await client.close()


# Frames the client cannot use: each is reported with one of the given kinds. Where two
# kinds are allowed, which one depends on the core and the Python version: non-finite numbers
# are refused by the parser in newer cores and by validation in older ones; 1,000 levels of
# nesting exceed the JSON parser's recursion limit on Python 3.10/3.11 (or a core's depth
# limit) but parse on 3.12+, where the envelope then fails validation.
NOBODY = '{"correlationId":"nobody"}'
REPORTED: list[tuple[str, str | bytes, set[str]]] = [
    ("deep-1000-payload", push(nested_array(1000)), {"parse", "validation"}),
    ("deep-1000-object-meta", push('{"seq":1}', nested_object(1000)), {"parse", "validation"}),
    ("deep-100000-frame", nested_array(100_000), {"parse"}),
    ("deep-100-in-int-field", push('{"seq":' + nested_object(100) + "}"), {"validation"}),
    ("deep-100-in-extra-key", push('{"seq":"x","y":' + nested_array(100) + "}"), {"validation"}),
    ("deep-300-in-int-field", push('{"seq":' + nested_object(300) + "}"), {"parse"}),
    ("surrogate-in-int-field", push('{"seq":"\\ud800"}'), {"validation"}),
    ("surrogate-key", push('{"seq":"x","\\udfff":1}'), {"validation"}),
    ("surrogate-in-nested-value", push('{"seq":["\\ud800",{"k":"\\udc00"}]}'), {"validation"}),
    ("1e400-in-int-field", push('{"seq":1e400}'), {"parse", "validation"}),
    ("1e400-timestamp", push('{"seq":1}', '{"timestamp":1e400}'), {"parse", "validation"}),
    ("-1e400-timestamp", push('{"seq":1}', '{"timestamp":-1e400}'), {"parse", "validation"}),
    ("binary-not-utf8", b"\xff\xfe\x00{", {"parse"}),
    ("binary-lone-surrogate-utf8", b'{"type":"PUSH","payload":"\xed\xa0\x80"}', {"parse"}),
    ("non-object-array", "[1,2,3]", {"parse"}),
    ("non-object-string", '"PUSH"', {"parse"}),
    ("non-object-number", "42", {"parse"}),
    ("non-object-null", "null", {"parse"}),
    ("not-json", "{type: PUSH}", {"parse"}),
    ("type-not-string", '{"type":7,"meta":{},"payload":{}}', {"parse"}),
    ("event-wrong-payload-type", push('{"seq":"x"}'), {"validation"}),
    ("event-payload-not-object", push("[1]"), {"validation"}),
    ("event-meta-not-object", push('{"seq":1}', '"meta"'), {"validation"}),
    ("event-meta-wrong-types", push('{"seq":1}', '{"timestamp":"x","correlationId":5}'), {"validation"}),
    ("event-unknown-root-key", push('{"seq":1},"x":{}'), {"validation"}),
    ("progress-unknown-correlation-id", envelope(PROGRESS, '{"n":1}', NOBODY), {"unmatched"}),
    ("progress-without-correlation-id", envelope(PROGRESS, '{"n":1}'), {"unmatched"}),
    ("rpc-error-unknown-correlation-id", envelope("RPC_ERROR", rpc_error(HUGE_INT), NOBODY), {"unmatched"}),
    ("error-garbage-payload", envelope("ERROR", "[" + HUGE_INT + "]"), {"server"}),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "kinds"), [c[1:] for c in REPORTED], ids=[c[0] for c in REPORTED])
async def test_unusable_frame_is_reported_and_client_keeps_working(
    probe: Probe, raw: str | bytes, kinds: set[str]
) -> None:
    await probe.raw.push(raw)
    await probe.still_works()
    assert len(probe.errors) == 1, probe.errors
    exc, info = probe.errors[0]
    assert info.kind in kinds
    if info.kind == "parse":
        assert info.details == raw
    if info.kind == "validation":
        assert isinstance(exc, ValidationError) and exc.issues
        assert (info.message_type, info.details) == ("PUSH", exc.issues)
    assert probe.delivered == [] and probe.unhandled == []


async def test_reply_for_an_unknown_correlation_id(probe: Probe) -> None:
    """Reported as ``unmatched`` when no ``on_unhandled`` callback takes it."""
    frame = '{"type":"HOLD_REPLY","meta":{"correlationId":"nobody"},"payload":{"n":1}}'
    await probe.raw.push(frame)
    await probe.still_works()
    assert probe.errors == [] and probe.unhandled == [json.loads(frame)]
    probe.client.on_unhandled(None)
    await probe.raw.push(frame)
    await probe.still_works("again")
    ((exc, info),) = probe.errors
    assert isinstance(exc, RpcError) and "'nobody'" in exc.message
    assert (info.kind, info.message_type, info.details) == (
        "unmatched",
        "HOLD_REPLY",
        json.loads(frame),
    )


async def test_non_finite_numbers_in_replies_fail_the_request_or_are_reported(
    probe: Probe,
) -> None:
    """1e400 is infinity to Python's JSON parser: an older core hands it to validation
    (the request fails), a newer one refuses the frame (a parse report)."""
    frames = [
        '{"type":"HOLD_REPLY","meta":{"correlationId":"c1"},"payload":{"n":1e400}}',
        '{"type":"RPC_ERROR","meta":{"correlationId":"c2"},"payload":{"code":"UNAVAILABLE","retryAfterMs":1e400}}',
    ]  # fmt: skip
    calls = [
        probe.client.call(probe.schemas.Hold, payload={"n": 1}, correlation_id=cid)
        for cid in ("c1", "c2")
    ]
    await probe.raw.push(*frames)
    await probe.still_works()
    for call, error in zip(calls, (ValidationError, RpcError), strict=True):
        if call.done():
            with pytest.raises(error) as raised:
                await call
            if isinstance(raised.value, RpcError) and error is RpcError:
                assert raised.value.retry_after_ms is None
        else:
            assert "parse" in probe.kinds()
            call.cancel()


async def test_odd_but_valid_frames_are_delivered(probe: Probe) -> None:
    await probe.raw.push(
        '{"type":"NOTE","meta":{},"payload":{"text":"a\\ud800b\\udfff"}}',
        b'{"type":"PUSH","meta":{},"payload":{"seq":7}}',
        '  {"type":"PUSH","meta":{"timestamp":1.5},"payload":{"seq":8}}  ',
        '{"type":"MYSTERY","meta":{},"payload":' + nested_array(20) + "}",
        '{"type":"__heartbeat_ack","meta":{"ts":1}}',
    )
    await probe.still_works()
    assert probe.errors == []
    assert [m.payload.text if m.type == "NOTE" else m.payload.seq for m in probe.delivered] == [
        "a\ud800b\udfff",
        7,
        8,
    ]
    assert [u["type"] for u in probe.unhandled] == ["MYSTERY"]


async def test_huge_integers_are_delivered_or_reported(probe: Probe) -> None:
    """Python ints have no size limit: a 400-digit int is a valid int (a core that refuses
    oversized numbers reports it as a parse error instead); either way, never silent."""
    await probe.raw.push(push('{"seq":' + HUGE_INT + "}"), push('{"seq":-' + HUGE_INT + "}"))
    await probe.still_works()
    outcomes = [m.payload.seq for m in probe.delivered] + probe.kinds()
    assert outcomes in ([int(HUGE_INT), -int(HUGE_INT)], ["parse", "parse"])


# Frames answering a pending request (correlationId "c1"): the request fails with the
# error (the caller sees it, so it is not reported again).
C1 = '{"correlationId":"c1"}'
REPLY_FAILURES: list[tuple[str, str, type[Exception], str | None]] = [
    ("reply-wrong-type-field", envelope("HOLD_REPLY", '{"n":"x"}', C1), ValidationError, None),
    ("reply-deep-field", envelope("HOLD_REPLY", '{"n":' + nested_object(100) + "}", C1), ValidationError, None),
    ("reply-surrogate-field", envelope("HOLD_REPLY", '{"n":"\\ud800"}', C1), ValidationError, None),
    ("reply-other-type", envelope("OTHER", '{"n":1}', C1), ValidationError, None),
    ("rpc-error-huge-retry-after", envelope("RPC_ERROR", rpc_error(HUGE_INT), C1), RpcError, "UNAVAILABLE"),
    ("rpc-error-garbage-payload", envelope("RPC_ERROR", '[{"code":1}]', C1), RpcError, "INTERNAL"),
    ("rpc-error-wrong-types", envelope("RPC_ERROR", '{"code":5,"message":["m"],"retryable":"y"}', C1), RpcError, "INTERNAL"),
    ("error-correlated", envelope("ERROR", '{"code":"NOT_FOUND","details":[1,2]}', C1), ServerError, "NOT_FOUND"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "error", "code"), [c[1:] for c in REPLY_FAILURES], ids=[c[0] for c in REPLY_FAILURES]
)
async def test_unusable_reply_fails_its_request(
    probe: Probe, raw: str, error: type[Exception], code: str | None
) -> None:
    call = probe.client.call(probe.schemas.Hold, payload={"n": 1}, correlation_id="c1")
    await probe.raw.push(raw)
    with pytest.raises(error) as raised:
        await asyncio.wait_for(call.result(), T)
    if code is not None:
        assert isinstance(raised.value, RpcError) and raised.value.code == code
        if "retryAfterMs" in raw:
            assert raised.value.retry_after_ms is None
    await probe.still_works()
    assert probe.errors == []
    assert probe.client.pending_requests == 0


PROGRESS_FAILURES = [
    ("progress-wrong-type", '{"n":"x"}'),
    ("progress-deep", '{"n":' + nested_object(100) + "}"),
    ("progress-surrogate", '{"n":"\\ud800"}'),
    ("progress-not-object", nested_array(5)),
]


@pytest.mark.parametrize(
    "payload", [c[1] for c in PROGRESS_FAILURES], ids=[c[0] for c in PROGRESS_FAILURES]
)
async def test_unusable_progress_is_reported_and_request_continues(
    probe: Probe, payload: str
) -> None:
    call = probe.client.call(probe.schemas.Hold, payload={"n": 1}, correlation_id="c1")
    await probe.raw.push(
        '{"type":"$ws:rpc-progress","meta":{"correlationId":"c1"},"payload":' + payload + "}",
        '{"type":"$ws:rpc-progress","meta":{"correlationId":"c1"},"payload":{"n":5}}',
        '{"type":"HOLD_REPLY","meta":{"correlationId":"c1"},"payload":{"n":6}}',
    )
    assert (await asyncio.wait_for(call.result(), T)).n == 6
    assert [u.n async for u in call.progress()] == [5]
    await probe.still_works()
    assert probe.kinds() == ["validation"]
    exc, info = probe.errors[0]
    assert isinstance(exc, ValidationError) and info.message_type == "$ws:rpc-progress"


async def test_request_timeout_still_fires_after_a_hostile_frame(probe: Probe) -> None:
    await probe.raw.push(nested_array(5000), push('{"seq":"\\ud800"}'))
    with pytest.raises(RequestTimeoutError):
        await asyncio.wait_for(
            probe.client.request(probe.schemas.Hold, payload={"n": 1}, timeout_ms=50), T
        )
    # ... and the timeout sent $ws:abort, on the same connection.
    await probe.raw.wait_for(lambda: any(f["type"] == "$ws:abort" for f in probe.raw.received))
    await probe.still_works()
    assert probe.kinds() == ["parse", "validation"]


class _Boom(Exception):
    pass


class _ExplodingCodec:
    """A payload codec that fails with something other than a ValidationError."""

    validator = None
    field_names = frozenset({"x"})

    def decode(self, data: Any) -> Any:
        raise _Boom(f"codec bug on {data!r}")

    def encode(self, value: Any, *, validate: bool) -> Any:
        return dict(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}


async def test_any_codec_failure_is_a_validation_report(probe: Probe) -> None:
    probe.client.on(define_message("ODD", _ExplodingCodec()), probe.delivered.append)
    await probe.raw.push('{"type":"ODD","meta":{},"payload":{"x":1}}')
    await probe.still_works()
    ((exc, info),) = probe.errors
    assert isinstance(exc, ValidationError) and isinstance(exc.__cause__, _Boom)
    assert info.kind == "validation" and info.message_type == "ODD"
    assert "codec bug" in exc.issues[0]["message"]


async def test_a_failure_anywhere_in_frame_handling_is_reported_as_internal(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise _Boom("routing bug")

    monkeypatch.setattr(probe.client, "_dispatch", broken)
    frame = push('{"seq":1}')
    await probe.raw.push(frame)
    await probe.still_works()  # the reply goes to its request, not through _dispatch
    ((exc, info),) = probe.errors
    assert isinstance(exc, _Boom)
    assert (info.kind, info.details) == ("internal", frame)


# -- the reader and writer themselves fail ----------------------------------------------


class FaultyConnection(ClientConnection):
    """A websockets client connection with injectable faults: receiving the text frame
    ``"crash-reader"`` or sending a frame containing ``crash-writer`` raises."""

    async def recv(self, decode: bool | None = None) -> Any:
        frame = await super().recv(decode)
        if frame == "crash-reader":
            raise _Boom("injected reader fault")
        return frame

    async def send(self, message: Any, text: bool | None = None) -> None:
        if isinstance(message, str) and "crash-writer" in message:
            raise _Boom("injected writer fault")
        await super().send(message, text=text)


async def _faulty_client(raw: Any, schemas: Any) -> tuple[Client, list[Any], list[str]]:
    client = Client(
        raw.url, reconnect=FAST, websocket_options={"create_connection": FaultyConnection}
    )
    errors: list[tuple[BaseException, ClientErrorInfo]] = []
    states: list[str] = []

    def on_state(state: str) -> None:
        states.append(state if state != "reconnecting" else f"reconnecting {client.close_code}")

    client.on_error(lambda exc, info: errors.append((exc, info)))
    client.on_state(on_state)
    await client.connect()
    return client, errors, states


async def _wait_reconnected(client: Client, raw: Any, states: list[str]) -> None:
    await raw.wait_for(lambda: raw.connections == 2)
    await asyncio.wait_for(client.wait_open(), T)
    # The client closed the socket with 1011 (internal error), then reconnected.
    assert states == ["connecting", "open", "reconnecting 1011", "connecting", "open"]


async def test_reader_crash_closes_the_socket_and_reconnects(raw_server: Any, schemas: Any) -> None:
    client, errors, states = await _faulty_client(raw_server, schemas)
    try:
        plain = client.call(schemas.Hold, payload={"n": 1})
        keyed = client.call(schemas.Hold, payload={"n": 2}, idempotency_key="k")
        await raw_server.wait_for(lambda: len(raw_server.received) == 2)
        await raw_server.push("crash-reader")
        # Pending requests follow the disconnect rules: the plain one fails, the keyed
        # one is resent once on the new connection.
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(plain.result(), T)
        await _wait_reconnected(client, raw_server, states)
        await raw_server.wait_for(lambda: len(raw_server.received) == 3)
        assert raw_server.received[2]["meta"]["idempotencyKey"] == "k"
        assert not keyed.done()
        reply = await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "x"}), T)
        assert reply.text == "x"
        ((exc, info),) = errors
        assert isinstance(exc, _Boom) and (info.kind, info.details) == ("internal", "reader")
    finally:
        await client.close()


async def test_writer_crash_closes_the_socket_and_reconnects(raw_server: Any, schemas: Any) -> None:
    client, errors, states = await _faulty_client(raw_server, schemas)
    try:
        plain = client.call(schemas.Hold, payload={"n": 1})
        await raw_server.wait_for(lambda: len(raw_server.received) == 1)
        client.send(schemas.Note, payload={"text": "crash-writer"})
        client.send(schemas.Note, payload={"text": "behind the crash"})
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(plain.result(), T)
        await _wait_reconnected(client, raw_server, states)
        reply = await asyncio.wait_for(client.request(schemas.Echo, payload={"text": "x"}), T)
        assert reply.text == "x"
        # The frame queued behind the failed one was not lost: it went out after the
        # reconnect; the failed one was dropped (and reported).
        texts = [f["payload"].get("text") for f in raw_server.received if f["type"] == "NOTE"]
        assert texts == ["behind the crash"]
        ((exc, info),) = errors
        assert isinstance(exc, _Boom) and (info.kind, info.details) == ("internal", "writer")
    finally:
        await client.close()


# -- what the client sends ----------------------------------------------------------------


async def test_lone_surrogates_in_sent_strings_round_trip(probe: Probe) -> None:
    text = "x\ud800y\udfffz\U0001f600"
    reply = await asyncio.wait_for(
        probe.client.request(probe.schemas.Echo, payload={"text": text}), T
    )
    assert reply.text == text
    sent = next(f for f in probe.raw.received if f["type"] == "ECHO")
    assert sent["payload"]["text"] == text
    assert probe.client.send(probe.schemas.Note, payload={"text": "\udc00"})
    await probe.raw.wait_for(lambda: any(f["type"] == "NOTE" for f in probe.raw.received))
    note = next(f for f in probe.raw.received if f["type"] == "NOTE")
    assert note["payload"] == {"text": "\udc00"}
    await probe.still_works()
    assert probe.errors == []


def test_frames_on_the_wire_are_valid_utf8_json() -> None:
    """What the client writes for a lone surrogate is the JSON escape, as JSON.stringify
    writes it (so any server can read it)."""
    from wskit.client._message import encode_message

    frame = encode_message(
        define_message("NOTE", _PassThrough()), {"text": "a\ud800"}, {"timestamp": 1}
    )
    assert frame.encode("utf-8")  # encodable: no lone surrogate left in the text
    assert json.loads(frame)["payload"]["text"] == "a\ud800"
    assert "\\ud800" in frame


class _PassThrough:
    validator = None
    field_names: frozenset[str] = frozenset()

    def decode(self, data: Any) -> Any:
        return data

    def encode(self, value: Any, *, validate: bool) -> Any:
        return dict(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}


async def test_supervisor_failure_closes_the_client_truthfully(
    raw_server: Any, schemas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(raw_server.url, reconnect=FAST)
    errors: list[tuple[BaseException, ClientErrorInfo]] = []
    client.on_error(lambda exc, info: errors.append((exc, info)))
    await client.connect()
    try:
        pending = client.call(schemas.Hold, payload={"n": 1})
        await raw_server.wait_for(lambda: len(raw_server.received) == 1)

        def broken() -> None:
            raise _Boom("supervisor bug")

        monkeypatch.setattr(client, "_on_disconnect", broken)
        await raw_server.stop()  # the disconnect path now fails
        with pytest.raises(ConnectionClosedError, match="supervisor bug"):
            await asyncio.wait_for(pending.result(), T)
        assert client.state == "closed"
        ((exc, info),) = errors
        assert isinstance(exc, _Boom) and (info.kind, info.details) == ("internal", "supervisor")
    finally:
        await client.close()
