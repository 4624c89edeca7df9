"""with_logging(): one record per connection open/close and per message, through
the real router (wskit.core.testing.Harness)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from wskit.core import RpcError, any_object, create_router, define_message, define_rpc
from wskit.core.testing import Harness
from wskit.middleware import DEFAULT_FIELDS, FIELDS, with_logging

Ping = define_message("PING", any_object())
Deny = define_message("DENY", any_object())
Boom = define_message("BOOM")
Ask = define_rpc("ASK", any_object(), "ANSWER", any_object())
Mute = define_rpc("MUTE", any_object(), "MUTED", any_object())


def _router(**options: Any) -> Any:
    router = create_router().plugin(with_logging(**options))

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        pass

    @router.on(Deny)
    async def deny(ctx: Any) -> None:
        ctx.error("PERMISSION_DENIED", "no")

    @router.on(Boom)
    async def boom(ctx: Any) -> None:
        raise RuntimeError("deliberate failure")

    @router.rpc(Ask)
    async def ask(ctx: Any) -> None:
        if ctx.payload.get("missing"):
            raise RpcError("NOT_FOUND", "no such thing")
        ctx.reply({"ok": True})

    @router.rpc(Mute)
    async def mute(ctx: Any) -> None:
        pass  # no reply: the router answers INTERNAL

    return router


def _strip(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for key in ("duration_ms", "connected_ms", "queued_ms"):
        if key in out:
            assert isinstance(out.pop(key), float)
    return out


async def test_one_record_per_connection_and_message(log: Any, failing_harness: Any) -> None:
    logger, records = log
    router = _router(logger=logger)
    async with failing_harness(router) as h:
        conn = await h.connect()
        cid = conn.client_id
        conn.send(Ping, {"token": "secret"})
        conn.send(Deny, {})
        conn.send(Boom)
        await conn.request(Ask, {})
        with pytest.raises(RpcError):
            await conn.request(Ask, {"missing": True})
        with pytest.raises(RpcError):
            await conn.request(Mute, {})
        conn.send_raw('{"type": "PING", "payload": 5}')  # refused before any middleware
        conn.send_raw('{"type": "NOPE"}')
        conn.send_raw("not json")
        await h.flush()
        await conn.close(4000, "bye now")
    assert [_strip(f) for f in records.fields] == [
        {"event": "open", "client_id": cid},
        {"event": "message", "client_id": cid, "type": "PING", "outcome": "ok"},
        {"event": "message", "client_id": cid, "type": "DENY", "outcome": "PERMISSION_DENIED"},
        {"event": "message", "client_id": cid, "type": "BOOM", "outcome": "INTERNAL"},
        {
            "event": "message",
            "client_id": cid,
            "type": "ASK",
            "correlation_id": "rpc-1",
            "outcome": "ok",
        },
        {
            "event": "message",
            "client_id": cid,
            "type": "ASK",
            "correlation_id": "rpc-2",
            "outcome": "NOT_FOUND",
        },
        {
            "event": "message",
            "client_id": cid,
            "type": "MUTE",
            "correlation_id": "rpc-3",
            "outcome": "INTERNAL",
        },
        {"event": "message", "client_id": cid, "type": "PING", "outcome": "INVALID_ARGUMENT"},
        {"event": "message", "client_id": cid, "type": "NOPE", "outcome": "UNIMPLEMENTED"},
        {"event": "message", "client_id": cid, "outcome": "INVALID_ARGUMENT"},
        {
            "event": "close",
            "client_id": cid,
            "close_code": 4000,
            "close_reason": "bye now",
        },
    ]
    levels = [r.levelno for r in records.records]
    info, warning = logging.INFO, logging.WARNING
    assert levels == [info, info, warning, warning, info] + [warning] * 5 + [info]
    # Payloads are not logged by default; the text is key=value.
    assert "secret" not in "".join(r.getMessage() for r in records.records)
    text = records.records[2].getMessage()
    assert text.startswith(f"event=message client_id={cid} type=DENY outcome=PERMISSION_DENIED")
    assert records.records[-1].getMessage().endswith('close_reason="bye now" connected_ms=0.000')


async def test_fields_levels_payloads_and_context_fields(log: Any, failing_harness: Any) -> None:
    logger, records = log
    router = _router(
        logger=logger,
        level=logging.DEBUG,
        error_level=logging.ERROR,
        fields=["type", "outcome", "rpc", "traceparent", "queued_ms"],
        log_payload=True,
        connections=False,
        context_fields=lambda ctx: {"user": ctx.data["user"]},
    )
    async with failing_harness(router) as h:
        conn = await h.connect(data={"user": "ann"})
        conn.send(
            Ping,
            {"text": "hi", "password": "hunter2", "nested": {"access_token": "t", "n": 1}},
            meta={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
        conn.send(Deny, {"x": "y" * 600})
        conn.send(Boom)  # no payload: no payload field
        await h.flush()
    assert [_strip(f) for f in records.fields] == [
        {
            "type": "PING",
            "rpc": False,
            "outcome": "ok",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "payload": {"text": "hi", "nested": {"n": 1}},
            "user": "ann",
        },
        {
            "type": "DENY",
            "rpc": False,
            "outcome": "PERMISSION_DENIED",
            "payload": {},
            "user": "ann",
        },
        {"type": "BOOM", "rpc": False, "outcome": "INTERNAL", "user": "ann"},
    ]
    assert [r.levelno for r in records.records] == [logging.DEBUG, logging.ERROR, logging.ERROR]
    assert "hunter2" not in records.records[0].getMessage()


async def test_disabled_logger_costs_nothing_and_changes_nothing(log: Any) -> None:
    logger, records = log
    logger.setLevel(logging.CRITICAL)
    router = _router(logger=logger)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Deny, {})
        assert await conn.request(Ask, {}) == {"ok": True}
        await h.flush()
        assert conn.error_codes == ["PERMISSION_DENIED"]
    assert records.records == []


async def test_errors_only(log: Any) -> None:
    logger, records = log
    logger.setLevel(logging.WARNING)
    router = _router(logger=logger)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        conn.send(Deny, {})
        await h.flush()
    assert [(f["type"], f["outcome"]) for f in records.fields] == [("DENY", "PERMISSION_DENIED")]


async def test_a_failing_context_fields_is_logged_not_fatal(log: Any) -> None:
    logger, records = log

    def broken(ctx: Any) -> dict[str, Any]:
        raise KeyError("user")

    router = _router(logger=logger, context_fields=broken, connections=False)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        await h.flush()
        assert conn.frames == []
    assert [r.getMessage().split(" ")[0] for r in records.records] == [
        "wskit.middleware:",
        "event=message",
    ]


async def test_sample_rate_keeps_a_share_of_successes_and_every_error(
    log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, records = log
    draws = iter([0.05, 0.5, 0.2, 0.9])
    monkeypatch.setattr("wskit.middleware.logs._random", lambda: next(draws))
    router = _router(logger=logger, sample_rate=0.25)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {"n": 1})  # 0.05: kept
        conn.send(Ping, {"n": 2})  # 0.5: left out
        conn.send(Deny, {})  # an error: always, no draw
        conn.send(Ping, {"n": 3})  # 0.2: kept
        conn.send(Ping, {"n": 4})  # 0.9: left out
        await h.flush()
        assert conn.error_codes == ["PERMISSION_DENIED"]
        await conn.close()
    assert [(f["event"], f.get("type"), f.get("outcome")) for f in records.fields] == [
        ("open", None, None),
        ("message", "PING", "ok"),
        ("message", "DENY", "PERMISSION_DENIED"),
        ("message", "PING", "ok"),
        ("close", None, None),
    ]
    assert next(draws, None) is None  # one draw per successful message, none per error


async def test_sample_rate_one_draws_nothing(log: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    logger, records = log

    def no_draw() -> float:
        raise AssertionError("drew a number at sample_rate=1")

    monkeypatch.setattr("wskit.middleware.logs._random", no_draw)
    router = _router(logger=logger, connections=False)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        await h.flush()
    assert [f["type"] for f in records.fields] == ["PING"]


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_bad_sample_rates_are_refused(rate: Any) -> None:
    with pytest.raises(ValueError, match=f"sample_rate must be a number from 0 to 1, got {rate!r}"):
        with_logging(sample_rate=rate)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown log fields: colour"):
        with_logging(fields=["type", "colour"])
    assert set(DEFAULT_FIELDS) <= FIELDS


async def test_every_field_in_its_place(log: Any) -> None:
    """All message fields at once: each key carries its own value, in the
    documented order (the text a formatter writes, and the dict)."""
    logger, records = log
    router = _router(logger=logger, fields=sorted(FIELDS), connections=False)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with Harness(router) as h:
        conn = await h.connect()
        await conn.request(Ask, {"q": 1}, meta={"traceparent": traceparent})
        await h.flush()
    (record,) = records.records
    fields = records.fields[0]
    assert list(fields) == [
        "event",
        "client_id",
        "type",
        "rpc",
        "correlation_id",
        "outcome",
        "duration_ms",
        "queued_ms",
        "traceparent",
        "payload",
    ]
    assert _strip(fields) == {
        "event": "message",
        "client_id": conn.client_id,
        "type": "ASK",
        "rpc": True,
        "correlation_id": "rpc-1",
        "outcome": "ok",
        "traceparent": traceparent,
        "payload": {"q": 1},
    }
    text = record.getMessage()
    assert text.startswith(
        f"event=message client_id={conn.client_id} type=ASK rpc=true correlation_id=rpc-1 "
        "outcome=ok duration_ms="
    )
    assert text.endswith(f'traceparent={traceparent} payload={{"q":1}}')
