"""What the server does with each kind of inbound frame.

Every row is answered on the wire (never silent), the connection stays
usable, and every row is reported to on_error hooks/observers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from wskit.core import ErrorInfo, RpcError
from wskit.core.testing import Harness

pytestmark = pytest.mark.asyncio


def _ping_handler(app: Any) -> None:
    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": ctx.payload.text})


async def _still_usable(h: Harness[Any], conn: Any, app: Any) -> None:
    conn.clear()
    conn.send(app.Ping, {"text": "still here"})
    await h.flush()
    assert conn.frames == [{"type": "PONG", "meta": {}, "payload": {"reply": "still here"}}]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "Invalid message: not valid JSON"),
        ("{", "Invalid message: not valid JSON"),
        ("[1, 2]", "Invalid message: expected a JSON object"),
        ('"PING"', "Invalid message: expected a JSON object"),
        ("42", "Invalid message: expected a JSON object"),
        ("{}", "Invalid message envelope: missing or invalid type field"),
        ('{"type": 5}', "Invalid message envelope: missing or invalid type field"),
        ('{"type": ""}', "Invalid message envelope: missing or invalid type field"),
        (
            '{"type": null, "payload": {}}',
            "Invalid message envelope: missing or invalid type field",
        ),
        (b"\xff\xfe", "Invalid message: binary frame is not UTF-8"),
    ],
)
async def test_malformed_frames_get_invalid_argument(app: Any, frame: Any, message: str) -> None:
    _ping_handler(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(frame)
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {"code": "INVALID_ARGUMENT", "message": message},
            }
        ]
        assert h.reported_codes == ["INVALID_ARGUMENT"]
        await _still_usable(h, conn, app)


async def test_binary_frames_are_utf8_json(app: Any) -> None:
    _ping_handler(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(json.dumps({"type": "PING", "payload": {"text": "héllo"}}).encode())
        await h.flush()
        assert conn.payloads(app.Pong) == [{"reply": "héllo"}]


async def test_frame_over_limit_closes_1009_counting_real_bytes(app_factory: Any) -> None:
    app = app_factory(max_message_bytes=64)
    _ping_handler(app)
    async with Harness(app.router) as h:
        ok = await h.connect()
        exact = json.dumps({"type": "PING", "payload": {"text": "x" * 23}})
        assert len(exact.encode()) == 64
        ok.send_raw(exact)
        await h.flush()
        assert ok.payloads(app.Pong) == [{"reply": "x" * 23}]
        assert ok.server_close is None

        # 53 characters, but 65 bytes of UTF-8: over the limit.
        big = await h.connect()
        frame = json.dumps({"type": "PING", "payload": {"text": "é" * 12}}, ensure_ascii=False)
        assert len(frame) < 64 < len(frame.encode())
        big.send_raw(frame)
        big.send_raw(exact)  # ignored: the connection is closing
        await h.flush()
        assert big.server_close == (1009, "Message too big")
        assert big.frames == []
        assert big.closed
        assert h.reported_codes == ["RESOURCE_EXHAUSTED"]


@pytest.mark.parametrize(
    "message_type", ["$ws:custom", "__internal", "$ws:rpc-progress", "__heartbeat_ack"]
)
async def test_reserved_types_are_refused(app: Any, message_type: str) -> None:
    _ping_handler(app)
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(message_type)
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": f"Reserved type cannot be handled by user code: {message_type!r}",
                },
            }
        ]
        assert h.reported_codes == ["INVALID_ARGUMENT"]
        await _still_usable(h, conn, app)


async def test_heartbeat_is_answered_with_server_time(app: Any) -> None:
    async with Harness(app.router) as h:
        assert h.clock is not None
        await h.clock.advance(1234)
        conn = await h.connect()
        conn.send("__heartbeat", meta={"timestamp": 1})
        await h.flush()
        assert conn.frames == [{"type": "__heartbeat_ack", "meta": {"ts": 1234}}]
        assert h.reported == []


async def test_unknown_type_is_unimplemented(app: Any) -> None:
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send("NOPE", {"a": 1})
        conn.send("NOPE_RPC", meta={"correlationId": "c9"})
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "UNIMPLEMENTED",
                    "message": "No handler registered for message type: 'NOPE'",
                },
            },
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "c9"},
                "payload": {
                    "code": "UNIMPLEMENTED",
                    "message": "No handler registered for message type: 'NOPE_RPC'",
                },
            },
        ]
        assert h.reported_codes == ["UNIMPLEMENTED", "UNIMPLEMENTED"]


async def test_unknown_type_can_be_ignored_but_is_still_reported(app_factory: Any) -> None:
    app = app_factory(on_unknown="ignore")
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send("NOPE")
        await h.flush()
        assert conn.frames == []
        assert h.reported_codes == ["UNIMPLEMENTED"]
        assert h.reported[0].info.message_type == "NOPE"


@pytest.mark.parametrize(
    ("frame", "paths"),
    [
        ({"type": "PING", "payload": {"text": 5}}, [["payload", "text"]]),
        ({"type": "PING", "payload": {}}, [["payload", "text"]]),
        ({"type": "PING", "payload": {"text": "a", "extra": 1}}, [["payload", "extra"]]),
        ({"type": "PING"}, [["payload"]]),
        ({"type": "PING", "payload": "text"}, [["payload"]]),
        ({"type": "PING", "payload": {"text": "a"}, "x": 1}, [["x"]]),
        ({"type": "PING", "payload": {"text": "a"}, "meta": {"foo": 1}}, [["meta", "foo"]]),
        ({"type": "PING", "payload": {"text": "a"}, "meta": []}, [["meta"]]),
        (
            {"type": "PING", "payload": {"text": "a"}, "meta": {"timestamp": "now"}},
            [["meta", "timestamp"]],
        ),
        (
            {"type": "PING", "payload": {"text": "a"}, "meta": {"timeoutMs": 0}},
            [["meta", "timeoutMs"]],
        ),
        (
            {"type": "PING", "payload": {"text": "a"}, "meta": {"timeoutMs": True}},
            [["meta", "timeoutMs"]],
        ),
        (
            {"type": "PING", "payload": {"text": "a"}, "meta": {"correlationId": 7}},
            [["meta", "correlationId"]],
        ),
        ({"type": "BARE", "payload": {}}, [["payload"]]),
        ({"type": "BARE", "payload": None}, [["payload"]]),
        ({"type": "NOTICE", "payload": {"userId": "u", "count": "5"}}, [["payload", "count"]]),
        ({"type": "NOTICE", "payload": {"userId": "u", "count": True}}, [["payload", "count"]]),
    ],
)
async def test_validation_failures_report_issue_paths(
    app: Any, frame: dict[str, Any], paths: list[list[Any]]
) -> None:
    seen: list[Any] = []
    for schema in (app.Ping, app.Bare, app.Notice):
        app.router.on(schema, lambda ctx: seen.append(ctx))
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw(json.dumps(frame))
        await h.flush()
        assert seen == []
        assert len(conn.frames) == 1
        error = conn.frames[0]
        assert error["type"] == "ERROR"
        assert error["meta"] == {}
        body = error["payload"]
        assert body["code"] == "INVALID_ARGUMENT"
        assert body["message"] == f"Invalid {frame['type']} message"
        assert set(body) == {"code", "message", "details"}
        issues = body["details"]["issues"]
        assert sorted(i["path"] for i in issues) == sorted(paths)
        assert all(isinstance(i["message"], str) and i["message"] for i in issues)
        assert h.reported_codes == ["INVALID_ARGUMENT"]


async def test_validation_failure_on_rpc_route_is_rpc_error(app: Any) -> None:
    app.router.rpc(app.GetUser, lambda ctx: ctx.reply({"name": "x"}))
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.GetUser, {"userId": 1}, meta={"correlationId": "c1"})
        conn.send(app.GetUser, {"userId": 1})  # no correlationId to echo
        await h.flush()
        first, second = conn.frames
        assert first["type"] == "RPC_ERROR"
        assert first["meta"] == {"correlationId": "c1"}
        assert first["payload"]["code"] == "INVALID_ARGUMENT"
        assert [i["path"] for i in first["payload"]["details"]["issues"]] == [["payload", "userId"]]
        assert second["type"] == "ERROR"
        assert second["payload"]["code"] == "INVALID_ARGUMENT"


async def test_rpc_without_correlation_id_is_refused(app: Any) -> None:
    app.router.rpc(app.GetUser, lambda ctx: ctx.reply({"name": "x"}))
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.GetUser, {"userId": "u1"})
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "RPC requests need meta.correlationId",
                    "details": {
                        "issues": [
                            {
                                "path": ["meta", "correlationId"],
                                "message": "Required for RPC requests",
                            }
                        ]
                    },
                },
            }
        ]


async def test_reserved_meta_keys_are_stripped_not_rejected(app: Any) -> None:
    metas: list[dict[str, Any]] = []

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        metas.append(ctx.meta)
        ctx.send(app.Pong, {"reply": ctx.client_id})

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(
            app.Ping, {"text": "a"}, meta={"clientId": "spoofed", "receivedAt": 1, "timestamp": 5}
        )
        await h.flush()
        assert metas == [{"timestamp": 5}]
        assert conn.payloads(app.Pong) == [{"reply": conn.client_id}]
        assert conn.client_id != "spoofed"


async def test_standard_meta_fields_are_accepted(app: Any) -> None:
    metas: list[dict[str, Any]] = []
    app.router.on(app.Ping, lambda ctx: metas.append(ctx.meta))
    meta = {"timestamp": 1.5, "correlationId": "c", "timeoutMs": 10, "idempotencyKey": "k"}
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"}, meta=meta)
        await h.flush()
        assert conn.frames == []
        assert metas == [meta]


async def test_handler_exception_is_internal_without_leaking_text(app: Any) -> None:
    hook_calls: list[tuple[BaseException, ErrorInfo]] = []
    app.router.on_error(lambda err, info: hook_calls.append((err, info)))

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        raise KeyError("secret database password")

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"}, meta={"correlationId": "c1"})
        await h.flush()
        assert conn.raw_frames == [
            '{"type":"ERROR","meta":{"correlationId":"c1"},"payload":{"code":"INTERNAL",'
            '"message":"Internal server error","retryAfterMs":200}}'
        ]
        assert "secret" not in conn.raw_frames[0]
        ((err, info),) = hook_calls
        assert [r.error for r in h.take_reported()] == [err]
        assert isinstance(err, KeyError)
        assert info.message_type == "PING"
        assert info.client_id == conn.client_id
        assert info.context is not None and info.context.payload.text == "a"
        await _still_usable_after(h, conn, app)


async def _still_usable_after(h: Harness[Any], conn: Any, app: Any) -> None:
    app.router.on(app.Bare, lambda ctx: ctx.send(app.Pong, {"reply": "ok"}))
    conn.clear()
    conn.send(app.Bare)
    await h.flush()
    assert conn.payloads(app.Pong) == [{"reply": "ok"}]


async def test_debug_mode_shows_exception_text(app_factory: Any) -> None:
    app = app_factory(debug=True)

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        raise ValueError("boom")

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"})
        await h.flush()
        assert conn.errors == [
            {"code": "INTERNAL", "message": "ValueError: boom", "retryAfterMs": 200}
        ]
        assert [type(r.error) for r in h.take_reported()] == [ValueError]


async def test_middleware_exception_is_internal(app: Any) -> None:
    calls: list[str] = []

    @app.router.use
    async def broken(ctx: Any, next: Any) -> None:
        raise RuntimeError("middleware")

    app.router.rpc(app.GetUser, lambda ctx: calls.append("handler"))
    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.GetUser, {"userId": "u"})
        with pytest.raises(RpcError) as exc_info:
            await call.result()
        assert exc_info.value.code == "INTERNAL"
        assert exc_info.value.message == "Internal server error"
        assert calls == []
        assert conn.frames[0]["type"] == "RPC_ERROR"
        assert conn.frames[0]["meta"] == {"correlationId": call.correlation_id}
        reported = h.take_reported()
        assert [r.code for r in reported] == [None]
        assert isinstance(reported[0].error, RuntimeError)


async def test_raised_rpc_error_keeps_its_code(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        raise RpcError("NOT_FOUND", "No such user", {"userId": ctx.payload.user_id, "token": "t"})

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.GetUser, {"userId": "u7"})
        with pytest.raises(RpcError):
            await call.result()
        assert call.terminal == {
            "type": "RPC_ERROR",
            "meta": {"correlationId": call.correlation_id},
            "payload": {
                "code": "NOT_FOUND",
                "message": "No such user",
                "details": {"userId": "u7"},
            },
        }


async def test_rpc_handler_without_reply_is_internal(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def forgetful(ctx: Any) -> None:
        ctx.progress({"name": "working"})

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.GetUser, {"userId": "u"})
        with pytest.raises(RpcError) as exc_info:
            await call.result()
        assert exc_info.value.code == "INTERNAL"
        assert exc_info.value.message == "handler completed without a reply"
        assert call.progress == [{"name": "working"}]
        assert [r.code for r in h.take_reported()] == ["INTERNAL"]


async def test_rpc_handler_without_reply_logs_a_warning_naming_it(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    @app.router.rpc(app.GetUser)
    async def forgetful(ctx: Any) -> None:
        pass

    async with Harness(app.router) as h:
        conn = await h.connect()
        with caplog.at_level("DEBUG", logger="wskit.core"), pytest.raises(RpcError):
            await conn.call(app.GetUser, {"userId": "u"}).result()
        (record,) = caplog.records
        assert (record.levelname, record.exc_info) == ("WARNING", None)
        text = record.getMessage()
        assert text.startswith("wskit: the RPC handler for 'GET_USER' returned without ctx.reply()")
        assert f"(client {conn.client_id})" in text and "RPC_ERROR INTERNAL" in text
        assert [r.code for r in h.take_reported()] == ["INTERNAL"]


async def test_abort_cancels_running_rpc_and_silences_it(app: Any) -> None:
    started = asyncio.Event()
    cancelled: list[str] = []
    contexts: list[Any] = []

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        contexts.append(ctx)
        ctx.on_cancel(lambda: cancelled.append("callback"))
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("task")
            ctx.reply({"n": 1})  # ignored: the RPC is cancelled
            ctx.progress({"n": 2})
            raise

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.Slow, {"n": 1})
        await h.flush()
        assert started.is_set() and not call.done
        await call.abort()
        assert cancelled == ["callback", "task"]
        assert contexts[0].cancelled and contexts[0].cancel_reason == "client-abort"
        assert conn.frames == []
        assert h.reported_codes == ["CANCELLED"]
        # the connection keeps working
        app.router.rpc(app.GetUser, lambda ctx: ctx.reply({"name": "n"}))
        assert await conn.request(app.GetUser, {"userId": "u"}) == {"name": "n"}


async def test_abort_of_a_queued_rpc_means_it_never_runs(app: Any) -> None:
    gate = asyncio.Event()
    ran: list[int] = []

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        ran.append(ctx.payload.n)
        await gate.wait()
        ctx.reply({"n": ctx.payload.n})

    async with Harness(app.router) as h:
        conn = await h.connect()
        first = conn.call(app.Slow, {"n": 1})
        second = conn.call(app.Slow, {"n": 2})
        await h.flush()
        await second.abort()
        gate.set()
        assert await first.result() == {"n": 1}
        await h.flush()
        assert ran == [1]
        assert not second.done
        assert [f["meta"]["correlationId"] for f in conn.frames] == [first.correlation_id]


async def test_a_deep_queue_keeps_order_and_aborts(app: Any) -> None:
    # 200 requests queued behind a waiting one (past the length where the queue
    # changes representation): answered in order, an aborted one never runs, and
    # the queue is released once the burst is handled.
    gate = asyncio.Event()
    ran: list[int] = []

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        ran.append(ctx.payload.n)
        if ctx.payload.n == 0:
            await gate.wait()
        ctx.reply({"n": ctx.payload.n})

    async with Harness(app.router) as h:
        conn = await h.connect()
        calls = [conn.call(app.Slow, {"n": n}) for n in range(201)]
        await h.flush()
        assert ran == [0]
        server_conn = conn.connection
        assert len(server_conn._inbox) == 200
        await calls[150].abort()
        gate.set()
        await h.flush()
        expected = [n for n in range(201) if n != 150]
        assert ran == expected
        assert [f["payload"]["n"] for f in conn.frames] == expected
        assert server_conn._inbox is None
        assert not calls[150].done


async def test_abort_without_correlation_id_is_invalid(app: Any) -> None:
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send("$ws:abort")
        await h.flush()
        assert conn.errors == [
            {"code": "INVALID_ARGUMENT", "message": "$ws:abort requires meta.correlationId"}
        ]


async def test_deadline_from_timeout_ms(app: Any) -> None:
    seen: dict[str, Any] = {}

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        seen["deadline"] = ctx.deadline
        seen["remaining"] = ctx.time_remaining()
        seen["ctx"] = ctx
        await asyncio.Event().wait()

    async with Harness(app.router) as h:
        assert h.clock is not None
        await h.clock.advance(10_000)
        conn = await h.connect()
        call = conn.call(app.Slow, {"n": 1}, meta={"timeoutMs": 500})
        await h.flush()
        assert seen["deadline"] == 10_500
        assert seen["remaining"] == 500
        await h.advance(499)
        assert not call.done
        await h.advance(1)
        with pytest.raises(RpcError) as exc_info:
            await call.result()
        assert exc_info.value.code == "DEADLINE_EXCEEDED"
        assert call.terminal == {
            "type": "RPC_ERROR",
            "meta": {"correlationId": call.correlation_id},
            "payload": {
                "code": "DEADLINE_EXCEEDED",
                "message": "Deadline exceeded",
                "retryAfterMs": 50,
            },
        }
        assert seen["ctx"].cancelled and seen["ctx"].cancel_reason == "deadline"
        assert h.reported_codes == ["DEADLINE_EXCEEDED"]
        assert len(conn.frames) == 1


async def test_reply_before_deadline_cancels_the_timer(app: Any) -> None:
    app.router.rpc(app.Slow, lambda ctx: ctx.reply({"n": ctx.payload.n}))
    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.Slow, {"n": 3}, meta={"timeoutMs": 100})
        assert await call.result() == {"n": 3}
        assert h.leaked_timers() == []
        await h.advance(1000)
        assert len(conn.frames) == 1


async def test_duplicate_correlation_id_in_flight_is_refused(app: Any) -> None:
    gate = asyncio.Event()

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        await gate.wait()
        ctx.reply({"n": ctx.payload.n})

    async with Harness(app.router) as h:
        conn = await h.connect(None)
        h.router.max_concurrency = 2
        conn.send(app.Slow, {"n": 1}, meta={"correlationId": "same"})
        conn.send(app.Slow, {"n": 2}, meta={"correlationId": "same"})
        await h.flush()
        assert conn.frames == [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "same"},
                "payload": {
                    "code": "ALREADY_EXISTS",
                    "message": "An RPC with this correlationId is already in flight",
                },
            }
        ]
        gate.set()
        await h.flush()
        assert conn.payloads(app.Slow.response) == [{"n": 1}]
