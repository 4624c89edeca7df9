"""ctx.topics: the order of checks, idempotent no-ops, rules, limits, ACL, batches, cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.core.connection import Connection
from wskit.core.testing import FakeConnection, Harness
from wskit.pubsub import (
    WIRE_CODES,
    MemoryPubSub,
    PubSubError,
    get_pubsub,
    with_pubsub,
)
from wskit.pubsub.testing import RecordingAdapter
from wskit.pydantic import create_router, message, rpc, with_pydantic

Sub = message("SUB", topic=str)
SubMany = message("SUB_MANY", topics=list[str])
Note = message("NOTE", text=str)
SubRpc = rpc("SUB_RPC", {"topic": str}, "SUB_OK", {"total": int})


def make_router(adapter: Any = None, **options: Any) -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub(adapter, **options))

    @router.on(Sub)
    async def sub(ctx: Any) -> None:
        await ctx.topics.subscribe(ctx.payload.topic)

    @router.on(SubMany)
    async def sub_many(ctx: Any) -> None:
        await ctx.topics.subscribe_many(ctx.payload.topics)

    @router.rpc(SubRpc)
    async def sub_rpc(ctx: Any) -> None:
        await ctx.topics.subscribe(ctx.payload.topic)
        ctx.reply({"total": len(ctx.topics)})

    return router


DENY = lambda topic, conn: False  # noqa: E731
PATTERN_MESSAGE = "Topic format invalid (allowed: a-z0-9:_-/.)"


def topics_of(router: Any, conn: FakeConnection[Any]) -> Any:
    return get_pubsub(router).topics(conn.connection)


async def raises(code: str, coro: Any) -> PubSubError:
    with pytest.raises(PubSubError) as info:
        await coro
    assert info.value.pubsub_code == code
    assert info.value.code == WIRE_CODES[code]
    return info.value


# ------------------------------------------------------------------ basics


async def test_subscribe_has_len_iter_and_contains() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter, normalize=lambda t, c: t.lower())
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe("Room:1")
        await topics.subscribe("room:2")
        assert topics.has("ROOM:1") and "room:2" in topics
        assert not topics.has("room:3") and 42 not in topics
        assert len(topics) == 2
        assert list(topics) == ["room:1", "room:2"]
        assert conn.subscriptions == ["room:1", "room:2"]
        assert set(adapter.subscribers("room:1")) == {conn.client_id}


async def test_ctx_topics_is_the_same_object_per_connection() -> None:
    router = make_router()
    async with Harness(router) as h:
        conn = await h.connect()
        assert topics_of(router, conn) is topics_of(router, conn)


async def test_subscribe_from_a_handler_and_on_open() -> None:
    router = make_router()

    @router.on_open
    async def opened(ctx: Any) -> None:
        await ctx.topics.subscribe("lobby")

    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Sub, {"topic": "room:9"})
        reply = await conn.request(SubRpc, {"topic": "room:10"})
        assert reply == {"total": 3}
        assert conn.subscriptions == ["lobby", "room:10", "room:9"]
        assert conn.errors == []


# ------------------------- order: normalize, validate, authorize, limit, adapter, state, hooks


async def test_order_normalize_validate_authorize_limit_adapter_state_hooks() -> None:
    events: list[tuple[str, str]] = []
    topics_ref: list[Any] = []

    class Adapter(MemoryPubSub):
        async def subscribe(self, client_id: str, topic: str) -> None:
            # The adapter runs before the local state changes.
            events.append(("adapter", topic))
            assert topic not in list(topics_ref[0])
            await super().subscribe(client_id, topic)

    def normalize(topic: str, conn: Connection[Any] | None) -> str:
        events.append(("normalize", topic))
        return topic.lower()

    def authorize(topic: str, conn: Connection[Any]) -> bool:
        events.append(("authorize", topic))
        return True

    def on_subscribe(topic: str, conn: Connection[Any]) -> None:
        # Hooks run after the local state changed.
        events.append(("hook", topic))
        assert topic in list(topics_ref[0])

    router = make_router(
        Adapter(), normalize=normalize, authorize_subscribe=authorize, on_subscribe=on_subscribe
    )
    async with Harness(router) as h:
        conn = await h.connect()
        topics_ref.append(topics_of(router, conn))
        await topics_ref[0].subscribe("Room:1")
        assert events == [
            ("normalize", "Room:1"),
            ("authorize", "room:1"),
            ("adapter", "room:1"),
            ("hook", "room:1"),
        ]
        assert h.reported == []


async def test_noop_subscribe_has_no_side_effects() -> None:
    calls: list[str] = []
    adapter = RecordingAdapter()
    router = make_router(
        adapter,
        max_topics_per_connection=1,
        authorize_subscribe=lambda t, c: calls.append("auth") or True,
        on_subscribe=lambda t, c: calls.append("hook"),
    )
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe("room:1")
        calls.clear()
        adapter.calls.clear()
        # Already subscribed and at the limit: a no-op, not TOPIC_LIMIT_EXCEEDED.
        await topics.subscribe("room:1")
        assert await topics.subscribe_many(["room:1", "room:1"]) == {"added": 0, "total": 1}
        assert await topics.set(["room:1"]) == {"added": 0, "removed": 0, "total": 1}
        assert (calls, adapter.calls) == ([], [])


async def test_noop_unsubscribe_even_for_invalid_topics() -> None:
    adapter = RecordingAdapter()
    unsubscribed: list[str] = []
    router = make_router(adapter, on_unsubscribe=lambda t, c: unsubscribed.append(t))
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.unsubscribe("not subscribed")
        await topics.unsubscribe("")
        await topics.unsubscribe(None)
        assert await topics.unsubscribe_many(["a", "b b"]) == {"removed": 0, "total": 0}
        assert await topics.clear() == {"removed": 0, "total": 0}
        assert (adapter.calls, unsubscribed) == ([], [])


async def test_validation_runs_before_authorization() -> None:
    authorized: list[str] = []
    router = make_router(authorize_subscribe=lambda t, c: authorized.append(t) or True)
    async with Harness(router) as h:
        conn = await h.connect()
        await raises("INVALID_TOPIC", topics_of(router, conn).subscribe("bad topic"))
        assert authorized == []


async def test_authorization_runs_before_the_limit() -> None:
    adapter = RecordingAdapter()
    router = make_router(
        adapter, max_topics_per_connection=0, authorize_subscribe=lambda t, c: t != "secret"
    )
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        err = await raises("ACL_SUBSCRIBE", topics.subscribe("secret"))
        assert err.details == {
            "pubsubCode": "ACL_SUBSCRIBE",
            "op": "subscribe",
            "kind": "forbidden",
            "topic": "secret",
        }
        await raises("TOPIC_LIMIT_EXCEEDED", topics.subscribe("open"))
        assert adapter.calls == []


async def test_async_authorize_and_custom_denial() -> None:
    async def authorize(topic: str, conn: Connection[Any]) -> bool:
        if topic.startswith("admin:"):
            raise PubSubError("ACL_SUBSCRIBE", "admins only", {"policy": "admin"})
        return conn.data.get("user") == "alice"

    router = make_router(authorize_subscribe=authorize)
    async with Harness(router) as h:
        alice = await h.connect({"user": "alice"})
        bob = await h.connect({"user": "bob"})
        await topics_of(router, alice).subscribe("room:1")
        await raises("ACL_SUBSCRIBE", topics_of(router, bob).subscribe("room:1"))
        err = await raises("ACL_SUBSCRIBE", topics_of(router, alice).subscribe("admin:x"))
        assert (err.message, err.details) == (
            "admins only",
            {"pubsubCode": "ACL_SUBSCRIBE", "policy": "admin"},
        )
        assert alice.subscriptions == ["room:1"] and bob.subscriptions == []


async def test_hook_failure_is_reported_and_not_rolled_back() -> None:
    def on_subscribe(topic: str, conn: Connection[Any]) -> None:
        raise RuntimeError("hook bug")

    router = make_router(on_subscribe=on_subscribe)
    async with Harness(router) as h:
        conn = await h.connect()
        await topics_of(router, conn).subscribe("room:1")
        await h.flush()
        assert conn.subscriptions == ["room:1"]
        assert [str(r.error) for r in h.take_reported()] == ["hook bug"]


# ------------------------------------------------------------ topic rules


@pytest.mark.parametrize(
    ("topic", "message", "details"),
    [
        ("", "Topic must be a non-empty string", {"reason": "pattern"}),
        (7, "Topic must be a non-empty string", {"reason": "pattern"}),
        (
            "x" * 129,
            "Topic exceeds 128 characters",
            {"reason": "length", "length": 129, "max": 128},
        ),
        (
            "room 1",
            PATTERN_MESSAGE,
            {"reason": "pattern", "topic": "room 1"},
        ),
        ("room#1", PATTERN_MESSAGE, {"reason": "pattern", "topic": "room#1"}),
    ],
)
async def test_invalid_topics(topic: Any, message: str, details: dict[str, Any]) -> None:
    router = make_router()
    async with Harness(router) as h:
        conn = await h.connect()
        err = await raises("INVALID_TOPIC", topics_of(router, conn).subscribe(topic))
        assert err.message == message
        assert err.details == {"pubsubCode": "INVALID_TOPIC", **details}


async def test_default_rules_accept_the_documented_alphabet() -> None:
    router = make_router()
    async with Harness(router) as h:
        conn = await h.connect()
        good = ["Room:1", "a/b/c", "v1.2", "snake_case", "kebab-case", "x" * 128]
        await topics_of(router, conn).subscribe_many(good)
        assert len(topics_of(router, conn)) == len(good)


async def test_topic_rules_are_configurable() -> None:
    router = make_router(topic_pattern=r"[a-z]+(:[0-9]+)?", max_topic_length=8)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe("room:42")
        err = await raises("INVALID_TOPIC", topics.subscribe("Room:42"))
        assert err.message == "Topic format invalid"
        err = await raises("INVALID_TOPIC", topics.subscribe("room:4242"))
        assert err.details["reason"] == "length"


# ------------------------------------------------------------------ limits


async def test_per_connection_topic_limit() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter, max_topics_per_connection=2)
    async with Harness(router) as h:
        conn = await h.connect()
        other = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe_many(["a", "b"])
        adapter.calls.clear()
        err = await raises("TOPIC_LIMIT_EXCEEDED", topics.subscribe("c"))
        assert err.details == {
            "pubsubCode": "TOPIC_LIMIT_EXCEEDED",
            "limit": 2,
            "current": 2,
            "requested": 1,
        }
        assert err.retryable is False
        await raises("TOPIC_LIMIT_EXCEEDED", topics.set(["a", "b", "c"]))
        assert adapter.calls == []
        # set() counts what remains: current - removed + added <= limit.
        assert await topics.set(["b", "c"]) == {"added": 1, "removed": 1, "total": 2}
        # The limit is per connection.
        await topics_of(router, other).subscribe_many(["a", "b"])


async def test_batch_over_the_limit_adds_nothing() -> None:
    router = make_router(max_topics_per_connection=3)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe("a")
        await raises("TOPIC_LIMIT_EXCEEDED", topics.subscribe_many(["b", "c", "d"]))
        assert list(topics) == ["a"]


# ----------------------------------------------------------------- batches


async def test_subscribe_many_skips_existing_and_duplicates() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe("a")
        adapter.calls.clear()
        assert await topics.subscribe_many(["a", "b", "c", "b"]) == {"added": 2, "total": 3}
        assert adapter.ops() == [("subscribe", "b"), ("subscribe", "c")]
        with pytest.raises(TypeError):
            await topics.subscribe_many("abc")


async def test_batch_validation_is_all_or_nothing() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await raises("INVALID_TOPIC", topics.subscribe_many(["ok", "not ok"]))
        await raises("INVALID_TOPIC", topics.set(["ok", ""]))
        assert adapter.calls == [] and list(topics) == []


async def test_batch_authorization_is_all_or_nothing() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter, authorize_subscribe=lambda t, c: t != "b")
    async with Harness(router) as h:
        conn = await h.connect()
        await raises("ACL_SUBSCRIBE", topics_of(router, conn).subscribe_many(["a", "b", "c"]))
        assert adapter.calls == [] and conn.subscriptions == []


async def test_subscribe_many_rolls_back_on_adapter_failure() -> None:
    adapter = RecordingAdapter()
    adapter.fail_subscribe = {"c"}
    subscribed: list[str] = []
    router = make_router(adapter, on_subscribe=lambda t, c: subscribed.append(t))
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        err = await raises("ADAPTER_ERROR", topics.subscribe_many(["a", "b", "c", "d"]))
        assert adapter.ops() == [
            ("subscribe", "a"),
            ("subscribe", "b"),
            ("subscribe", "c"),
            ("unsubscribe", "b"),
            ("unsubscribe", "a"),
        ]
        assert err.details == {
            "pubsubCode": "ADAPTER_ERROR",
            "op": "subscribe",
            "topic": "c",
            "cause": "ConnectionError",
            "rollbackFailed": False,
            "failedRollbackTopics": [],
        }
        assert err.retryable is True
        assert isinstance(err.__cause__, ConnectionError)
        assert list(topics) == [] and subscribed == []
        assert list(adapter.subscribers("a")) == []


async def test_failed_rollback_is_reported_in_details() -> None:
    adapter = RecordingAdapter()
    adapter.fail_subscribe = {"b"}
    adapter.fail_unsubscribe = {"a"}
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        err = await raises("ADAPTER_ERROR", topics_of(router, conn).subscribe_many(["a", "b"]))
        assert err.details["rollbackFailed"] is True
        assert err.details["failedRollbackTopics"] == ["a"]
        assert conn.subscriptions == []


async def test_unsubscribe_many_rolls_back_on_adapter_failure() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe_many(["a", "b", "c"])
        adapter.calls.clear()
        adapter.fail_unsubscribe = {"b"}
        err = await raises("ADAPTER_ERROR", topics.unsubscribe_many(["a", "b", "x"]))
        assert err.details["op"] == "unsubscribe"
        assert adapter.ops() == [("unsubscribe", "a"), ("unsubscribe", "b"), ("subscribe", "a")]
        assert list(topics) == ["a", "b", "c"]
        adapter.fail_unsubscribe = set()
        assert await topics.unsubscribe_many(["a", "x"]) == {"removed": 1, "total": 2}


async def test_set_unsubscribes_first_then_subscribes() -> None:
    adapter = RecordingAdapter()
    events: list[str] = []
    router = make_router(
        adapter,
        on_subscribe=lambda t, c: events.append(f"+{t}"),
        on_unsubscribe=lambda t, c: events.append(f"-{t}"),
    )
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe_many(["a", "b", "c"])
        adapter.calls.clear()
        events.clear()
        assert await topics.set(["c", "d", "e"]) == {"added": 2, "removed": 2, "total": 3}
        assert adapter.ops() == [
            ("unsubscribe", "a"),
            ("unsubscribe", "b"),
            ("subscribe", "d"),
            ("subscribe", "e"),
        ]
        assert events == ["-a", "-b", "+d", "+e"]
        assert list(topics) == ["c", "d", "e"]


async def test_set_rolls_back_new_then_removed_topics() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe_many(["a", "b"])
        adapter.calls.clear()
        adapter.fail_subscribe = {"y"}
        await raises("ADAPTER_ERROR", topics.set(["x", "y"]))
        assert adapter.ops() == [
            ("unsubscribe", "a"),
            ("unsubscribe", "b"),
            ("subscribe", "x"),
            ("subscribe", "y"),
            ("unsubscribe", "x"),
            ("subscribe", "b"),
            ("subscribe", "a"),
        ]
        assert list(topics) == ["a", "b"]
        assert set(adapter.subscribers("a")) == {conn.client_id}
        assert list(adapter.subscribers("x")) == []


async def test_clear_and_unsubscribe() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe_many(["a", "b", "c"])
        await topics.unsubscribe("b")
        assert list(topics) == ["a", "c"]
        adapter.calls.clear()
        assert await topics.clear() == {"removed": 2, "total": 0}
        assert adapter.ops() == [("unsubscribe", "a"), ("unsubscribe", "c")]


async def test_single_subscribe_adapter_failure_leaves_no_state() -> None:
    adapter = RecordingAdapter()
    adapter.fail_subscribe = {"a"}
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        await raises("ADAPTER_ERROR", topics_of(router, conn).subscribe("a"))
        assert conn.subscriptions == []


async def test_concurrent_changes_of_one_connection_are_serialized() -> None:
    gate = asyncio.Event()
    calls: list[str] = []

    class Slow(MemoryPubSub):
        async def subscribe(self, client_id: str, topic: str) -> None:
            calls.append(topic)
            await gate.wait()
            await super().subscribe(client_id, topic)

    router = make_router(Slow())
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        first = asyncio.create_task(topics.subscribe("a"))
        second = asyncio.create_task(topics.subscribe("a"))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, second)
        assert calls == ["a"] and list(topics) == ["a"]


# ------------------------------------------------------- errors on the wire


@pytest.mark.parametrize(
    ("options", "topic", "wire", "pubsub_code", "retryable"),
    [
        ({}, "bad topic", "INVALID_ARGUMENT", "INVALID_TOPIC", False),
        ({"authorize_subscribe": DENY}, "a", "PERMISSION_DENIED", "ACL_SUBSCRIBE", False),
        ({"max_topics_per_connection": 0}, "a", "RESOURCE_EXHAUSTED", "TOPIC_LIMIT_EXCEEDED", 0),
    ],
)
async def test_pubsub_errors_reach_the_client(
    options: dict[str, Any], topic: str, wire: str, pubsub_code: str, retryable: int
) -> None:
    router = make_router(**options)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Sub, {"topic": topic})
        await h.flush()
        assert [f["type"] for f in conn.frames] == ["ERROR"]
        body = conn.errors[0]
        assert body["code"] == wire
        assert body["details"]["pubsubCode"] == pubsub_code
        assert body["retryable"] is bool(retryable)
        assert conn.subscriptions == []
        assert h.reported_codes == [wire]


async def test_adapter_error_reaches_the_client_as_unavailable() -> None:
    adapter = RecordingAdapter()
    adapter.fail_subscribe = {"b"}
    adapter.fail_with = lambda: ConnectionError("secret-host:6379 refused")
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(SubMany, {"topics": ["a", "b"]})
        call = conn.call(SubRpc, {"topic": "b"})
        await h.flush()
        event_error, rpc_error = conn.frames
        assert event_error["type"] == "ERROR" and event_error["payload"]["code"] == "UNAVAILABLE"
        assert event_error["payload"]["retryable"] is True
        assert "secret-host" not in conn.raw_frames[0]
        assert rpc_error["type"] == "RPC_ERROR" and rpc_error["payload"]["code"] == "UNAVAILABLE"
        assert rpc_error["meta"] == {"correlationId": call.correlation_id}


# -------------------------------------------------------------- lifecycle


async def test_subscriptions_are_removed_on_close() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        stay = await h.connect()
        await topics_of(router, conn).subscribe_many(["a", "b"])
        await topics_of(router, stay).subscribe("a")
        adapter.calls.clear()
        await conn.close()
        assert conn.subscriptions == []
        assert adapter.ops() == [("unsubscribe", "a"), ("unsubscribe", "b")]
        assert set(adapter.subscribers("a")) == {stay.client_id}
        assert list(adapter.subscribers("b")) == []


async def test_changes_after_close_raise_connection_closed() -> None:
    router = make_router()
    async with Harness(router) as h:
        conn = await h.connect()
        topics = topics_of(router, conn)
        await topics.subscribe("a")
        await conn.close()
        err = await raises("CONNECTION_CLOSED", topics.subscribe("b"))
        assert err.code == "FAILED_PRECONDITION"
        # A no-op is still a no-op.
        await topics.unsubscribe("a")


async def test_on_close_sees_topics_read_only_and_may_publish() -> None:
    seen: list[Any] = []
    router = make_router()

    @router.on_close
    async def closed(ctx: Any) -> None:
        seen.append((list(ctx.topics), ctx.topics.has("room:1"), len(ctx.topics)))
        seen.append(hasattr(ctx.topics, "subscribe"))
        for topic in ctx.topics:
            seen.append(await ctx.publish(topic, Note, {"text": "bye"}, exclude_self=True))

    async with Harness(router) as h:
        leaving = await h.connect()
        staying = await h.connect()
        await topics_of(router, leaving).subscribe_many(["room:1", "room:2"])
        await topics_of(router, staying).subscribe("room:1")
        await leaving.close()
        assert seen[0] == (["room:1", "room:2"], True, 2)
        assert seen[1] is False
        assert [(r.ok, r.matched) for r in seen[2:]] == [(True, 1), (True, 0)]
        assert staying.payloads(Note) == [{"text": "bye"}]
        assert leaving.subscriptions == []


async def test_adapter_failure_on_close_is_reported_and_state_cleared() -> None:
    adapter = RecordingAdapter()
    router = make_router(adapter)
    async with Harness(router) as h:
        conn = await h.connect()
        await topics_of(router, conn).subscribe_many(["a", "b"])
        adapter.fail_unsubscribe = {"a"}
        await conn.close()
        assert conn.subscriptions == []
        assert ("unsubscribe", "b") in adapter.ops()
        [reported] = h.reported
        assert isinstance(reported.error, PubSubError)
        assert reported.error.details == {"pubsubCode": "ADAPTER_ERROR", "topics": ["a"]}
