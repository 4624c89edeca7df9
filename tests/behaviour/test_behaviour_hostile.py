"""Odd but legal input: every frame is answered, nothing escapes unreported, and
the connection keeps working (one failure boundary per frame).

Each case here used to kill the connection's worker or go unanswered.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from wskit.core import (
    MAX_CORRELATION_ID_LENGTH,
    MAX_JSON_DEPTH,
    MAX_TIMEOUT_MS,
    HeartbeatOptions,
    RpcError,
)
from wskit.core.testing import Harness

pytestmark = pytest.mark.asyncio

TOO_DEEP = f"Invalid message: nesting too deep (at most {MAX_JSON_DEPTH} levels)"


def _echo_app(app: Any) -> tuple[Any, Any]:
    Echo = app.v.message("ECHO", data=Any)
    Measure = app.v.message("MEASURE", ratio=float)

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": ctx.payload.text})

    @app.router.on(Echo)
    async def echo(ctx: Any) -> None:
        ctx.send(Echo, {"data": ctx.payload.data})

    @app.router.on(Measure)
    async def measure(ctx: Any) -> None:
        ctx.send(Measure, {"ratio": ctx.payload.ratio})

    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.progress({"name": ctx.payload.user_id})
        ctx.reply({"name": ctx.payload.user_id})

    return Echo, Measure


async def _answers_ping(h: Harness[Any], conn: Any, app: Any) -> None:
    conn.clear()
    conn.send(app.Ping, {"text": "still here"})
    await h.flush()
    assert conn.frames == [{"type": "PONG", "meta": {}, "payload": {"reply": "still here"}}]


def _nested(depth: int) -> str:
    """A frame whose envelope object plus ``depth - 1`` arrays nest ``depth`` deep."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return '{"type":"ECHO","payload":{"data":' + inner + "}}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 5_000, 100_000])
async def test_deep_nesting_is_invalid_argument(app: Any, depth: int) -> None:
    _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(_nested(depth))
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {"code": "INVALID_ARGUMENT", "message": TOO_DEEP},
            }
        ]
        assert h.reported_codes == ["INVALID_ARGUMENT"]
        await _answers_ping(h, conn, app)


async def test_nesting_up_to_the_limit_round_trips(app: Any) -> None:
    Echo, _ = _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(_nested(MAX_JSON_DEPTH))
        await h.flush()
        (data,) = [p["data"] for p in conn.payloads(Echo)]
        depth = 0
        while isinstance(data, list) and data:
            depth, data = depth + 1, data[0]
        assert depth == MAX_JSON_DEPTH - 3  # envelope, payload and data's own list


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"NOTICE","payload":{"userId":"u","count":"\\ud800"}}',
        '{"type":"NOTICE","payload":{"userId":"u","count":["\\udfff"]}}',
        '{"type":"NOTICE","payload":{"userId":["\\ud800"],"count":1}}',
    ],
)
async def test_lone_surrogates_in_non_string_values_are_invalid_argument(
    app: Any, frame: str
) -> None:
    _echo_app(app)

    @app.router.on(app.Notice)
    async def notice(ctx: Any) -> None:
        raise AssertionError("must not run")

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(frame)
        await h.flush()
        assert conn.error_codes == ["INVALID_ARGUMENT"]
        assert conn.errors[0]["details"]["issues"][0]["path"][0] == "payload"
        await _answers_ping(h, conn, app)


async def test_lone_surrogates_round_trip_escaped(app: Any) -> None:
    _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw('{"type":"PING","payload":{"text":"a\\ud800b"}}')
        conn.send_raw('{"type":"ECHO","payload":{"data":{"k\\udc00":["\\ud83d"]}}}')
        call = conn.call(app.GetUser, {"userId": "\udfff"})
        await h.flush()
        assert conn.raw_frames[0] == '{"type":"PONG","meta":{},"payload":{"reply":"a\\ud800b"}}'
        assert conn.raw_frames[1] == (
            '{"type":"ECHO","meta":{},"payload":{"data":{"k\\udc00":["\\ud83d"]}}}'
        )
        # The RPC gets its progress and exactly one terminal frame.
        assert call.progress == [{"name": "\udfff"}]
        assert await call.result() == {"name": "\udfff"}
        for raw in conn.raw_frames:
            raw.encode("utf-8")  # every frame is valid UTF-8 on the wire
        assert h.reported == []


async def test_error_frames_echoing_surrogates_are_valid(app: Any) -> None:
    _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw('{"type":"PING","payload":{"text":"x","\\ud800":1}}')
        conn.send_raw('{"type":"NO_SUCH_\\ud800"}')
        await h.flush()
        assert conn.error_codes == ["INVALID_ARGUMENT", "UNIMPLEMENTED"]
        assert conn.errors[0]["details"]["issues"] == [
            {"path": ["payload", "\ud800"], "message": "Unrecognized key"}
        ]
        assert "\\ud800" in conn.raw_frames[1]
        for raw in conn.raw_frames:
            raw.encode("utf-8")
        await _answers_ping(h, conn, app)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400 + ".5"])
async def test_numbers_that_overflow_a_float_are_invalid_argument(app: Any, number: str) -> None:
    _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw('{"type":"MEASURE","payload":{"ratio":' + number + "}}")
        await h.flush()
        assert conn.errors == [
            {"code": "INVALID_ARGUMENT", "message": "Invalid message: a number is out of range"}
        ]
        await _answers_ping(h, conn, app)


async def test_integer_too_large_for_a_float_field_is_invalid_argument(app: Any) -> None:
    _, Measure = _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw('{"type":"MEASURE","payload":{"ratio":' + "9" * 400 + "}}")
        await h.flush()
        assert conn.error_codes == ["INVALID_ARGUMENT"]
        assert conn.errors[0]["details"]["issues"][0]["path"] == ["payload", "ratio"]
        # An integer a float can hold is fine (strict mode accepts ints for floats).
        conn.clear()
        conn.send_raw('{"type":"MEASURE","payload":{"ratio":' + "9" * 300 + "}}")
        await h.flush()
        assert conn.payloads(Measure) == [{"ratio": float("9" * 300)}]


@pytest.mark.parametrize("timeout", ["9" * 310, str(MAX_TIMEOUT_MS + 1), "0", "-5"])
async def test_timeout_ms_out_of_range_is_invalid_argument(app: Any, timeout: str) -> None:
    _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(
            '{"type":"GET_USER","meta":{"correlationId":"c1","timeoutMs":'
            + timeout
            + '},"payload":{"userId":"u"}}'
        )
        await h.flush()
        assert [f["type"] for f in conn.frames] == ["RPC_ERROR"]
        assert conn.frames[0]["meta"] == {"correlationId": "c1"}
        assert conn.errors[0]["code"] == "INVALID_ARGUMENT"
        assert conn.errors[0]["details"]["issues"] == [
            {
                "path": ["meta", "timeoutMs"],
                "message": f"Expected a positive integer of milliseconds, at most {MAX_TIMEOUT_MS}",
            }
        ]
        await _answers_ping(h, conn, app)


async def test_largest_timeout_ms_is_accepted(app: Any) -> None:
    _echo_app(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        reply = await conn.request(app.GetUser, {"userId": "u"}, meta={"timeoutMs": MAX_TIMEOUT_MS})
        assert reply == {"name": "u"}


async def test_error_frames_are_bounded(app: Any) -> None:
    _echo_app(app)
    unknown = {f"k{i}_{'x' * 40}": i for i in range(18_000)}  # ~0.9 MB of unknown keys
    frame = json.dumps({"type": "PING", "payload": {"text": "t", **unknown}}, separators=(",", ":"))
    assert 900_000 < len(frame) < 1 << 20
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(frame)
        conn.send_raw(json.dumps({"type": "X" * 500_000}))
        conn.send_raw(json.dumps({"type": "PING", "payload": {"text": "t", "k" * 100_000: 1}}))
        await h.flush()
        sizes = [len(raw) for raw in conn.raw_frames]
        assert len(sizes) == 3
        assert max(sizes) <= 16 * 1024, sizes
        first, second, third = conn.errors
        assert first["code"] == "INVALID_ARGUMENT"
        assert len(first["details"]["issues"]) == 20
        assert first["details"]["issueCount"] == 18_000
        assert first["details"]["issues"][0] == {
            "path": ["payload", "k0_" + "x" * 40],
            "message": "Unrecognized key",
        }
        assert second["code"] == "UNIMPLEMENTED"
        assert len(second["message"]) < 200
        (issue,) = third["details"]["issues"]
        assert issue["path"][1] == "k" * 63 + "\u2026"
        await _answers_ping(h, conn, app)


async def test_over_long_correlation_ids_are_invalid_and_never_echoed(app: Any) -> None:
    _echo_app(app)
    cid = "c" * (MAX_CORRELATION_ID_LENGTH + 1)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(json.dumps({"type": "GET_USER", "meta": {"correlationId": cid}}))
        conn.send_raw(json.dumps({"type": "NOPE", "meta": {"correlationId": "x" * 200_000}}))
        conn.send_raw(json.dumps({"type": "$ws:abort", "meta": {"correlationId": cid}}))
        await h.flush()
        assert [f["type"] for f in conn.frames] == ["ERROR", "ERROR", "ERROR"]
        assert all(f["meta"] == {} for f in conn.frames)
        assert max(len(raw) for raw in conn.raw_frames) < 1024
        assert {
            "path": ["meta", "correlationId"],
            "message": (f"Expected a string of at most {MAX_CORRELATION_ID_LENGTH} characters"),
        } in conn.errors[0]["details"]["issues"]
        assert conn.error_codes == ["INVALID_ARGUMENT", "UNIMPLEMENTED", "INVALID_ARGUMENT"]
        conn.clear()
        longest = "c" * MAX_CORRELATION_ID_LENGTH
        reply = conn.call(app.GetUser, {"userId": "u"}, correlation_id=longest)
        assert await reply.result() == {"name": "u"}


async def test_error_details_that_cannot_be_serialized_still_answer_the_rpc(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.error("NOT_FOUND", "no such user", {"when": object(), "nan": float("nan")})

    async with Harness(app.router) as h:
        conn = await h.connect()
        with pytest.raises(RpcError) as exc_info:
            await conn.request(app.GetUser, {"userId": "u"})
        assert (exc_info.value.code, exc_info.value.message) == ("NOT_FOUND", "no such user")
        assert exc_info.value.details is None
        assert h.reported == []


async def test_rpc_that_fails_after_replying_gets_one_terminal_frame(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.reply({"name": "Ann"})
        raise RuntimeError("cleanup failed")

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.GetUser, {"userId": "u"})
        assert await call.result() == {"name": "Ann"}
        assert [f["type"] for f in conn.frames] == ["USER_DATA"]
        assert [type(r.error) for r in h.take_reported()] == [RuntimeError]


async def test_a_failing_codec_is_internal_and_the_connection_goes_on(app: Any) -> None:
    class Exploding:
        validator = None
        field_names: frozenset[str] = frozenset()

        def decode(self, data: Any) -> Any:
            raise LookupError("codec bug")

        def encode(self, value: Any, *, validate: bool) -> Any:
            return value

        def json_schema(self) -> dict[str, Any]:
            return {}

    from wskit.core import MessageSchema

    Weird = MessageSchema("WEIRD", Exploding())
    _echo_app(app)
    app.router.on(Weird, lambda ctx: None)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw('{"type":"WEIRD","meta":{"correlationId":"c9"},"payload":{}}')
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {"correlationId": "c9"},
                "payload": {
                    "code": "INTERNAL",
                    "message": "Internal server error",
                    "retryAfterMs": 200,
                },
            }
        ]
        assert [type(r.error) for r in h.take_reported()] == [LookupError]
        await _answers_ping(h, conn, app)


async def test_option_values_are_checked(app_factory: Any) -> None:
    with pytest.raises(ValueError, match="interval_ms"):
        HeartbeatOptions(interval_ms=0)
    with pytest.raises(ValueError, match="timeout_ms"):
        HeartbeatOptions(timeout_ms=float("inf"))
    with pytest.raises(ValueError, match="interval_ms"):
        HeartbeatOptions(interval_ms=-1)
    with pytest.raises(TypeError, match="on_stale"):
        HeartbeatOptions(on_stale="nope")  # type: ignore[arg-type]
    for name, value, error in [
        ("max_message_bytes", 0, ValueError),
        ("max_buffered_bytes", -1, ValueError),
        ("max_inbound_messages", 0, ValueError),
        ("max_inbound_bytes", 1.5, TypeError),
        ("max_concurrency", 0, ValueError),
        ("overflow", "explode", ValueError),
        ("heartbeat", 30_000, TypeError),
    ]:
        with pytest.raises(error, match=name):
            app_factory(**{name: value})


async def test_without_error_hooks_only_failures_are_logged_as_errors(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    @app.router.on(app.Notice)
    async def notice(ctx: Any) -> None:
        if ctx.payload.count:
            raise RpcError("UNAVAILABLE", "backend down")  # answered: not a server fault
        raise RuntimeError("bug")

    async with Harness(app.router) as h:
        conn = await h.connect()
        with caplog.at_level("DEBUG", logger="wskit.core"):
            conn.send(app.Notice, {"userId": "u", "count": 1})
            conn.send_raw("not json")
            await h.flush()
            answered = [(r.levelname, r.exc_info is not None) for r in caplog.records]
            assert answered == [("DEBUG", False), ("DEBUG", False)]
            assert "NOTICE answered UNAVAILABLE: backend down" in caplog.records[0].getMessage()
            caplog.clear()
            conn.send(app.Notice, {"userId": "u", "count": 0})
            await h.flush()
            (record,) = caplog.records
            assert (record.levelname, record.exc_info is not None) == ("ERROR", True)
            assert "no on_error hook" in record.getMessage()
        assert conn.error_codes == ["UNAVAILABLE", "INVALID_ARGUMENT", "INTERNAL"]
        assert [type(r.error) for r in h.take_reported()][-1] is RuntimeError


async def test_a_crashed_worker_is_reported_and_replaced(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wskit.core import _dispatch

    _echo_app(app)
    real = _dispatch.handle_frame
    calls = 0

    async def flaky(conn: Any, received_at: float, item: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in the runtime")
        await real(conn, received_at, item)

    monkeypatch.setattr(_dispatch, "handle_frame", flaky)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "lost"})
        conn.send(app.Ping, {"text": "after"})
        await h.flush()
        # The frame whose handling crashed is lost, the one behind it is answered.
        assert conn.payloads(app.Pong) == [{"reply": "after"}]
        (crash,) = h.take_reported()
        assert crash.info.message_type == "$ws:crash"
        assert str(crash.error) == "bug in the runtime"
        await _answers_ping(h, conn, app)


async def test_the_harness_fails_a_test_on_an_unexpected_error(app: Any) -> None:
    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        raise KeyError("oops")

    h = Harness(app.router)
    with pytest.raises(AssertionError, match="1 unexpected error"):
        async with h:
            conn = await h.connect()
            conn.send(app.Ping, {"text": "x"})
            await h.flush()
    relaxed = Harness(app.router, allow_errors=True)
    async with relaxed:
        conn = await relaxed.connect()
        conn.send(app.Ping, {"text": "x"})
        await relaxed.flush()
        assert relaxed.reported_codes == [None]


async def test_eager_start_answers_inside_receive_and_keeps_its_own_task(app_factory: Any) -> None:
    import asyncio
    import sys

    app = app_factory(eager_start=True)
    tasks: list[Any] = []

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        tasks.append(asyncio.current_task())
        if ctx.payload.text == "wait":
            await asyncio.sleep(0)
        ctx.send(app.Pong, {"reply": ctx.payload.text})

    async with Harness(app.router) as h:
        conn = await h.connect()
        me = asyncio.current_task()
        conn.send(app.Ping, {"text": "now"})
        frames_before_flush = len(conn.connection._out)  # answered at once where eager
        conn.send(app.Ping, {"text": "wait"})
        conn.send(app.Ping, {"text": "after"})
        await h.flush()
        assert conn.payloads(app.Pong) == [{"reply": "now"}, {"reply": "wait"}, {"reply": "after"}]
        assert all(t is not None and t is not me for t in tasks)  # never the caller's task
        if sys.version_info >= (3, 12):
            assert frames_before_flush == 1  # the PONG was queued before receive() returned
        else:
            assert frames_before_flush == 0  # eager start needs Python 3.12: a plain task


class _CollectingTransport:
    """Collects direct sends, as an adapter's transport that writes once per loop
    iteration does; ``flush()`` would write them at once."""

    def __init__(self) -> None:
        self.collected: list[str] = []
        self.flushes = 0

    def send_nowait(self, frame: str) -> bool:
        self.collected.append(frame)
        return True

    def flush(self) -> None:
        self.flushes += 1

    async def send(self, frame: str) -> None:
        raise AssertionError("every frame here can be sent directly")

    async def ping(self) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        pass


async def test_answers_are_left_to_the_transports_own_write(app_factory: Any) -> None:
    # The connection never asks the transport to write early: the answers of every
    # connection leave together with the transport's write at the start of the next
    # loop iteration, after the loop has read all the sockets that were ready.
    import asyncio
    import sys

    app = app_factory()
    gate = asyncio.Event()

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        if ctx.payload.text == "wait":
            await gate.wait()
        ctx.send(app.Pong, {"reply": ctx.payload.text})

    def frame(text: str) -> str:
        return json.dumps({"type": "PING", "payload": {"text": text}})

    def pong(text: str) -> str:
        return json.dumps(
            {"type": "PONG", "meta": {}, "payload": {"reply": text}}, separators=(",", ":")
        )

    conn = app.router.connect()
    assert await conn.open()
    transport = _CollectingTransport()
    conn.attach(transport, on_error=lambda exc: None)
    conn.receive(frame("now"))
    if sys.version_info >= (3, 12):  # eager start: answered before receive() returned
        assert transport.collected == [pong("now")]
    else:
        assert transport.collected == []
        await conn.wait_idle()  # a plain task, at the next iteration
        assert transport.collected == [pong("now")]
    conn.receive(frame("wait"))
    conn.receive(frame("then"))
    await asyncio.sleep(0)
    assert transport.collected == [pong("now")]
    gate.set()
    await conn.wait_idle()
    assert transport.collected == [pong("now"), pong("wait"), pong("then")]
    assert transport.flushes == 0
    await conn.handle_close(1000, "")
