"""Every ctx method, middleware, hooks and composition, through the harness."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.core import (
    CapabilityError,
    CloseError,
    OutboundValidationError,
    RouteConflictError,
    RpcError,
)
from wskit.core.testing import Harness

pytestmark = pytest.mark.asyncio


async def test_send_writes_meta_without_reserved_keys(app: Any) -> None:
    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": "a"})
        ctx.send(
            app.Pong,
            {"reply": "b"},
            meta={"traceId": "t1", "correlationId": "x", "clientId": "x", "type": "x"},
        )
        ctx.send(app.Pong, {"reply": "c"}, inherit_correlation_id=True)
        ctx.send(app.Bare)

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "hi"}, meta={"correlationId": "c1"})
        await h.flush()
        assert conn.raw_frames == [
            '{"type":"PONG","meta":{},"payload":{"reply":"a"}}',
            '{"type":"PONG","meta":{"traceId":"t1"},"payload":{"reply":"b"}}',
            '{"type":"PONG","meta":{"correlationId":"c1"},"payload":{"reply":"c"}}',
            '{"type":"BARE","meta":{}}',
        ]


async def test_send_validates_outbound_by_default(app: Any) -> None:
    errors: list[BaseException] = []
    app.router.on_error(lambda err, info: errors.append(err))

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": 42})

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "hi"})
        await h.flush()
        assert conn.errors == [
            {"code": "INTERNAL", "message": "Internal server error", "retryAfterMs": 200}
        ]
        (err,) = errors
        assert isinstance(err, OutboundValidationError)
        assert err.message_type == "PONG"
        assert [i["path"] for i in err.issues] == [["reply"]]
        assert len(h.take_reported()) == 1


async def test_outbound_validation_can_be_switched_off(validator: Any) -> None:
    router = validator.create_router().plugin(validator.plugin(validate_outgoing=False))
    Ping = validator.message("PING", text=str)
    Pong = validator.message("PONG", reply=str)
    router.on(Ping, lambda ctx: ctx.send(Pong, {"reply": 42}))
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {"text": "hi"})
        await h.flush()
        assert conn.frames == [{"type": "PONG", "meta": {}, "payload": {"reply": 42}}]


async def test_sends_and_errors_keep_fifo_order(app: Any) -> None:
    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": "1"})
        ctx.error("NOT_FOUND", "missing")
        ctx.send(app.Pong, {"reply": "2"})
        await asyncio.sleep(0)
        ctx.send(app.Pong, {"reply": "3"})

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"})
        conn.send(app.Ping, {"text": "b"})
        await h.flush()
        kinds = [(f["type"], (f.get("payload") or {}).get("reply")) for f in conn.frames]
        assert kinds == [
            ("PONG", "1"),
            ("ERROR", None),
            ("PONG", "2"),
            ("PONG", "3"),
            ("PONG", "1"),
            ("ERROR", None),
            ("PONG", "2"),
            ("PONG", "3"),
        ]


async def test_inbound_frames_are_handled_one_at_a_time_in_order(app: Any) -> None:
    log: list[str] = []
    gate = asyncio.Event()

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        log.append(f"start {ctx.payload.text}")
        if ctx.payload.text == "1":
            await gate.wait()
        log.append(f"end {ctx.payload.text}")

    async with Harness(app.router) as h:
        conn = await h.connect()
        for i in "123":
            conn.send(app.Ping, {"text": i})
        await h.flush()
        assert log == ["start 1"]
        gate.set()
        await h.flush()
        assert log == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


async def test_max_concurrency_lets_handlers_overlap(app_factory: Any) -> None:
    app = app_factory(max_concurrency=2)
    log: list[str] = []
    gate = asyncio.Event()

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        log.append(f"start {ctx.payload.text}")
        await gate.wait()
        log.append(f"end {ctx.payload.text}")

    async with Harness(app.router) as h:
        conn = await h.connect()
        for i in "123":
            conn.send(app.Ping, {"text": i})
        await h.flush()
        assert log == ["start 1", "start 2"]
        gate.set()
        await h.flush()
        assert sorted(log) == sorted(["start 1", "start 2", "start 3", "end 1", "end 2", "end 3"])


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (("NOT_FOUND",), {"code": "NOT_FOUND", "message": "Target resource absent"}),
        (("NOT_FOUND", "Nope"), {"code": "NOT_FOUND", "message": "Nope"}),
        (
            ("RESOURCE_EXHAUSTED",),
            {
                "code": "RESOURCE_EXHAUSTED",
                "message": "Rate limit, quota, or buffer overflow",
                "retryAfterMs": 100,
            },
        ),
        (
            ("UNAVAILABLE", "later", None, {"retry_after_ms": 2500}),
            {"code": "UNAVAILABLE", "message": "later", "retryAfterMs": 2500},
        ),
        (
            ("UNAVAILABLE", "never", None, {"retry_after_ms": None}),
            {"code": "UNAVAILABLE", "message": "never", "retryAfterMs": None},
        ),
        (
            ("INVALID_ARGUMENT", "bad", None, {"retry_after_ms": 10, "retryable": True}),
            {"code": "INVALID_ARGUMENT", "message": "bad", "retryable": True},
        ),
        (("MY_APP_CODE", "custom"), {"code": "MY_APP_CODE", "message": "custom"}),
        (("MY_APP_CODE",), {"code": "MY_APP_CODE", "message": "MY_APP_CODE"}),
        (
            (
                "PERMISSION_DENIED",
                "no",
                {"resource": "doc1", "password": "p", "nested": {"Api_Key": "k", "ok": 1}},
            ),
            {
                "code": "PERMISSION_DENIED",
                "message": "no",
                "details": {"resource": "doc1", "nested": {"ok": 1}},
            },
        ),
        (
            ("PERMISSION_DENIED", "no", {"token": "t", "Authorization": "a"}),
            {"code": "PERMISSION_DENIED", "message": "no"},
        ),
        (
            ("INTERNAL", "big", {"blob": ["x" * 100] * 10, "small": 1, "fn": print}),
            {"code": "INTERNAL", "message": "big", "details": {"small": 1}, "retryAfterMs": 200},
        ),
    ],
)
async def test_ctx_error_payloads(
    app: Any, call: tuple[Any, ...], expected: dict[str, Any]
) -> None:
    args = call[:3]
    kwargs = call[3] if len(call) > 3 else {}

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.error(*args, **kwargs)

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"})
        await h.flush()
        assert conn.frames == [{"type": "ERROR", "meta": {}, "payload": expected}]
        assert h.reported == []  # ctx.error is an answer, not a failure


async def test_ctx_error_on_rpc_is_terminal_rpc_error(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.error("NOT_FOUND", "no user", {"userId": ctx.payload.user_id})
        ctx.error("INTERNAL", "second")
        ctx.reply({"name": "late"})
        assert ctx.progress({"name": "late"}) is False

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.GetUser, {"userId": "u1"})
        with pytest.raises(RpcError) as exc_info:
            await call.result()
        assert (exc_info.value.code, exc_info.value.message) == ("NOT_FOUND", "no user")
        assert exc_info.value.details == {"userId": "u1"}
        assert conn.frames == [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": call.correlation_id},
                "payload": {"code": "NOT_FOUND", "message": "no user", "details": {"userId": "u1"}},
            }
        ]


async def test_reply_is_terminal_and_progress_precedes_it(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        assert ctx.progress({"name": "A"}) is True
        assert ctx.progress({"name": "Al"}, meta={"step": 2}) is True
        ctx.reply({"name": "Alice"}, meta={"source": "db", "correlationId": "spoof"})
        ctx.reply({"name": "again"})
        ctx.error("INTERNAL")
        assert ctx.progress({"name": "after"}) is False

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.GetUser, {"userId": "u1"}, correlation_id="r1")
        assert await call.result() == {"name": "Alice"}
        assert conn.raw_frames == [
            '{"type":"$ws:rpc-progress","meta":{"correlationId":"r1"},"payload":{"name":"A"}}',
            '{"type":"$ws:rpc-progress","meta":{"step":2,"correlationId":"r1"},"payload":{"name":"Al"}}',
            '{"type":"USER_DATA","meta":{"source":"db","correlationId":"r1"},"payload":{"name":"Alice"}}',
        ]
        assert call.progress == [{"name": "A"}, {"name": "Al"}]


async def test_progress_throttle_drops_updates_inside_the_window(app: Any) -> None:
    step = asyncio.Event()
    results: list[bool] = []

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        for n in range(4):
            results.append(ctx.progress({"n": n}, throttle_ms=100))
            step.clear()
            await step.wait()
        ctx.reply({"n": 99})

    async with Harness(app.router) as h:
        conn = await h.connect()
        call = conn.call(app.Slow, {"n": 0})
        await h.flush()  # t=0: n=0 sent
        await h.advance(50)
        step.set()
        await h.flush()  # t=50: n=1 dropped
        await h.advance(50)
        step.set()
        await h.flush()  # t=100: n=2 sent
        await h.advance(99)
        step.set()
        await h.flush()  # t=199: n=3 dropped
        step.set()
        assert await call.result() == {"n": 99}
        assert results == [True, False, True, False]
        assert call.progress == [{"n": 0}, {"n": 2}]


async def test_reply_and_progress_are_validated_against_the_response(app: Any) -> None:
    @app.router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.progress({"name": 5})

    async with Harness(app.router) as h:
        conn = await h.connect()
        with pytest.raises(RpcError) as exc_info:
            await conn.request(app.GetUser, {"userId": "u1"})
        assert exc_info.value.code == "INTERNAL"
        reported = h.take_reported()
        assert isinstance(reported[0].error, OutboundValidationError)


async def test_context_fields(app: Any) -> None:
    seen: dict[str, Any] = {}

    @app.router.on(app.Notice)
    async def notice(ctx: Any) -> None:
        seen.update(
            type=ctx.type,
            client_id=ctx.client_id,
            received_at=ctx.received_at,
            meta=ctx.meta,
            user_id=ctx.payload.user_id,
            count=ctx.payload.count,
            data=dict(ctx.data),
            is_rpc=ctx.is_rpc,
        )
        ctx.assign_data({"room": "r1"}, seen=True)

    async with Harness(app.router) as h:
        assert h.clock is not None
        await h.clock.advance(777)
        conn = await h.connect(data={"user_id": "u1"})
        conn.send(app.Notice, {"userId": "u2", "count": 3}, meta={"timestamp": 5})
        await h.flush()
        assert seen == {
            "type": "NOTICE",
            "client_id": conn.client_id,
            "received_at": 777,
            "meta": {"timestamp": 5},
            "user_id": "u2",
            "count": 3,
            "data": {"user_id": "u1"},
            "is_rpc": False,
        }
        assert conn.data == {"user_id": "u1", "room": "r1", "seen": True}


async def test_pubsub_features_need_the_plugin(app: Any) -> None:
    errors: list[str] = []

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        for attempt in (lambda: ctx.topics, lambda: ctx.publish("t", app.Pong, {"reply": "x"})):
            try:
                result = attempt()
                if asyncio.iscoroutine(result):
                    await result
            except CapabilityError as exc:
                errors.append(str(exc))

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"})
        await h.flush()
        assert errors == [
            "ctx.topics requires with_pubsub()",
            "ctx.publish() requires with_pubsub()",
        ]
        with pytest.raises(CapabilityError, match=r"publish\(\) requires with_pubsub\(\)"):
            await app.router.publish("t", app.Pong, {"reply": "x"})


async def test_middleware_runs_in_onion_order(app: Any) -> None:
    log: list[str] = []

    def mw(name: str) -> Any:
        async def middleware(ctx: Any, next: Any) -> None:
            log.append(f"{name} in")
            await next()
            log.append(f"{name} out")

        return middleware

    app.router.use(mw("global1"))
    app.router.use(mw("global2"))

    @app.router.on(app.Ping, middleware=[mw("route1"), mw("route2")])
    async def ping(ctx: Any) -> None:
        log.append("handler")

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"})
        await h.flush()
        assert log == [
            "global1 in",
            "global2 in",
            "route1 in",
            "route2 in",
            "handler",
            "route2 out",
            "route1 out",
            "global2 out",
            "global1 out",
        ]


async def test_middleware_can_short_circuit_and_see_validated_payload(app: Any) -> None:
    handled: list[str] = []

    @app.router.use
    async def auth(ctx: Any, next: Any) -> None:
        if ctx.payload.text == "deny":
            ctx.error("PERMISSION_DENIED", "denied")
            return
        ctx.assign_data(checked=True)
        await next()

    app.router.on(app.Ping, lambda ctx: handled.append(ctx.data["checked"]))
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "deny"})
        conn.send(app.Ping, {"text": "ok"})
        await h.flush()
        assert conn.errors == [{"code": "PERMISSION_DENIED", "message": "denied"}]
        assert handled == [True]


async def test_next_called_twice_is_an_error(app: Any) -> None:
    calls: list[int] = []

    @app.router.use
    async def twice(ctx: Any, next: Any) -> None:
        await next()
        await next()

    app.router.on(app.Ping, lambda ctx: calls.append(1))
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Ping, {"text": "a"})
        await h.flush()
        assert calls == [1]
        assert conn.error_codes == ["INTERNAL"]
        reported = h.take_reported()
        assert str(reported[0].error) == "next() called multiple times"


async def test_open_and_close_hooks(app: Any) -> None:
    log: list[Any] = []

    @app.router.on_open
    async def opened(ctx: Any) -> None:
        log.append(("open", ctx.client_id, dict(ctx.data)))
        ctx.assign_data(greeted=True)
        ctx.send(app.Pong, {"reply": "welcome"})

    @app.router.on_close
    def closed(ctx: Any) -> None:
        log.append(("close", ctx.code, ctx.reason, ctx.data["greeted"]))

    async with Harness(app.router) as h:
        conn = await h.connect(data={"user": "u"})
        assert conn.payloads(app.Pong) == [{"reply": "welcome"}]
        await conn.close(4000, "bye")
        await conn.close(4001, "again")  # idempotent
        assert log == [("open", conn.client_id, {"user": "u"}), ("close", 4000, "bye", True)]
        assert conn.closed
        assert app.router.connections == {}


async def test_close_error_in_on_open_refuses_the_connection(app: Any) -> None:
    closes: list[Any] = []

    @app.router.on_open
    async def opened(ctx: Any) -> None:
        if ctx.data.get("banned"):
            raise CloseError(4003, "banned")

    app.router.on_close(lambda ctx: closes.append(ctx.client_id))
    async with Harness(app.router) as h:
        conn = await h.connect(data={"banned": True})
        assert conn.server_close == (4003, "banned")
        assert conn.closed
        assert closes == []  # on_close pairs with a successful on_open
        assert h.reported == []


async def test_on_open_failure_closes_1011_and_reports(app: Any) -> None:
    @app.router.on_open
    async def opened(ctx: Any) -> None:
        raise RuntimeError("db down")

    async with Harness(app.router) as h:
        conn = await h.connect()
        assert conn.server_close == (1011, "Internal error")
        reported = h.take_reported()
        assert reported[0].info.message_type == "$ws:open"
        assert isinstance(reported[0].error, RuntimeError)


async def test_on_close_failure_is_reported_and_others_still_run(app: Any) -> None:
    ran: list[str] = []

    @app.router.on_close
    def first(ctx: Any) -> None:
        raise RuntimeError("close hook")

    app.router.on_close(lambda ctx: ran.append("second"))
    async with Harness(app.router) as h:
        conn = await h.connect()
        await conn.close()
        assert ran == ["second"]
        reported = h.take_reported()
        assert reported[0].info.message_type == "$ws:close"


async def test_error_hooks_run_in_order_and_survive_failures(app: Any) -> None:
    log: list[str] = []

    @app.router.on_error
    def broken(err: BaseException, info: Any) -> None:
        log.append("first")
        raise RuntimeError("hook")

    @app.router.on_error
    async def second(err: BaseException, info: Any) -> None:
        log.append(f"second {type(err).__name__}")

    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send_raw("nope")
        await h.flush()
        assert log == ["first", "second ProtocolError"]
        assert conn.error_codes == ["INVALID_ARGUMENT"]


async def test_disconnect_cancels_running_rpc_and_waits_for_events(app: Any) -> None:
    gate = asyncio.Event()
    log: list[str] = []

    @app.router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        ctx.on_cancel(lambda: log.append(f"rpc cancelled: {ctx.cancel_reason}"))
        await asyncio.Event().wait()

    @app.router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        await gate.wait()
        log.append("event finished")

    app.router.on_close(lambda ctx: log.append("on_close"))
    async with Harness(app.router) as h:
        rpc_conn = await h.connect()
        rpc_conn.call(app.Slow, {"n": 1})
        event_conn = await h.connect()
        event_conn.send(app.Ping, {"text": "a"})
        event_conn.send(app.Ping, {"text": "never handled"})
        await h.flush()
        await rpc_conn.close()
        assert log == ["rpc cancelled: disconnect", "on_close"]
        closing = asyncio.ensure_future(event_conn.close())
        await h.flush()
        assert not closing.done()
        gate.set()
        await closing
        assert log[2:] == ["event finished", "on_close"]


async def test_duplicate_registration_raises(app: Any) -> None:
    async def ping(ctx: Any) -> None:
        pass

    app.router.on(app.Ping, ping)
    with pytest.raises(RouteConflictError) as info:
        app.router.on(app.Ping, lambda ctx: None)
    text = str(info.value)
    assert text.startswith("router.on('PING'): a handler (")
    assert "test_duplicate_registration_raises.<locals>.ping) is already registered" in text
    assert "Remove one of the two registrations" in text
    assert "merge()" not in text
    with pytest.raises(TypeError, match="Schema kind mismatch"):
        app.router.rpc(app.Pong, lambda ctx: None)


async def test_rpc_schema_registered_with_on_behaves_as_rpc(app: Any) -> None:
    app.router.on(app.GetUser, lambda ctx: ctx.reply({"name": "via on"}))
    async with Harness(app.router) as h:
        conn = await h.connect()
        assert await conn.request(app.GetUser, {"userId": "u"}) == {"name": "via on"}


async def test_merge_copies_routes_middleware_and_hooks(validator: Any) -> None:
    main = validator.create_router().plugin(validator.plugin())
    feature = validator.create_router().plugin(validator.plugin())
    Ping = validator.message("PING", text=str)
    Pong = validator.message("PONG", reply=str)
    Other = validator.message("OTHER")
    log: list[str] = []

    @feature.use
    async def feature_mw(ctx: Any, next: Any) -> None:
        log.append(f"feature mw {ctx.type}")
        await next()

    feature.on(Ping, lambda ctx: ctx.send(Pong, {"reply": "feature"}))
    feature.on_open(lambda ctx: log.append("feature open"))
    main.on(Other, lambda ctx: log.append("main other"))
    main.merge(feature)
    async with Harness(main) as h:
        conn = await h.connect()
        conn.send(Ping, {"text": "a"})
        conn.send(Other)
        await h.flush()
        assert conn.payloads(Pong) == [{"reply": "feature"}]
        assert log == ["feature open", "feature mw PING", "main other"]


async def test_merge_conflict_policies(validator: Any) -> None:
    Ping = validator.message("PING", text=str)
    Pong = validator.message("PONG", reply=str)

    def router_replying(text: str) -> Any:
        r = validator.create_router().plugin(validator.plugin())
        r.on(Ping, lambda ctx: ctx.send(Pong, {"reply": text}))
        return r

    with pytest.raises(RouteConflictError, match=r"merge\(\) conflict: handler for type 'PING'"):
        router_replying("a").merge(router_replying("b"))
    for policy, expected in (("skip", "a"), ("replace", "b")):
        merged = router_replying("a").merge(router_replying("b"), on_conflict=policy)
        async with Harness(merged) as h:
            conn = await h.connect()
            conn.send(Ping, {"text": "x"})
            await h.flush()
            assert conn.payloads(Pong) == [{"reply": expected}]


async def test_plugin_is_idempotent_and_validator_is_required(validator: Any) -> None:
    applied: list[int] = []

    def plugin(router: Any) -> None:
        applied.append(1)

    router = validator.create_router()
    Ping = validator.message("PING", text=str)
    with pytest.raises(CapabilityError, match=f"plugin\\(with_{validator.name}\\(\\)\\)"):
        router.on(Ping, lambda ctx: None)
    router.plugin(plugin).plugin(plugin)
    router.plugin(validator.plugin()).plugin(validator.plugin())
    assert applied == [1]
    assert "validation" in router.capabilities
    router.on(Ping, lambda ctx: None)


async def test_typed_connection_data_object_assign(validator: Any) -> None:
    class Session:
        def __init__(self) -> None:
            self.user_id = "u1"
            self.room: str | None = None

    router = validator.create_router(Session).plugin(validator.plugin())
    Join = validator.message("JOIN", room=str)
    router.on(Join, lambda ctx: ctx.assign_data(room=ctx.payload.room))
    async with Harness(router) as h:
        conn = await h.connect(data=Session())
        conn.send(Join, {"room": "lobby"})
        await h.flush()
        assert conn.data.room == "lobby"
        assert conn.data.user_id == "u1"


async def test_harness_sends_payload_instances_in_wire_form(app: Any) -> None:
    got: list[Any] = []
    app.router.on(app.Notice, lambda ctx: got.append((ctx.payload.user_id, ctx.payload.count)))
    instance = app.Notice.payload.decode({"userId": "u9", "count": 2})
    async with Harness(app.router) as h:
        conn = await h.connect()
        conn.send(app.Notice, instance)
        await h.flush()
        assert got == [("u9", 2)]
        assert conn.frames == []
