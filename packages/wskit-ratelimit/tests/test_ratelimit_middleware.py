"""rate_limit() through the real router (wskit.core.testing.Harness): exact frames."""

from __future__ import annotations

from typing import Any

import pytest

from wskit.core import any_object, create_router, define_message, define_rpc
from wskit.core.testing import FakeClock, Harness
from wskit.ratelimit import (
    Decision,
    RateLimitPolicy,
    key_per_client,
    key_per_user,
    key_per_user_per_type,
    memory_rate_limiter,
    rate_limit,
)

Ping = define_message("PING", any_object())
Pong = define_message("PONG", any_object())
Other = define_message("OTHER", any_object())
Get = define_rpc("GET", any_object(), "GOT", any_object())


def app(**options: Any) -> tuple[Any, FakeClock, Any]:
    clock = FakeClock()
    limiter = options.pop("limiter", None) or memory_rate_limiter(
        capacity=2, tokens_per_second=1, clock=clock.now
    )
    router = create_router()
    router.use(rate_limit(limiter=limiter, **options))

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {"n": ctx.payload["n"]})

    @router.on(Other)
    async def other(ctx: Any) -> None:
        ctx.send(Pong, {"n": -1})

    @router.rpc(Get)
    async def get(ctx: Any) -> None:
        ctx.reply({"ok": True})

    return router, clock, limiter


def exhausted(cost: int, capacity: int, remaining: int, retry: int) -> dict[str, Any]:
    return {
        "code": "RESOURCE_EXHAUSTED",
        "message": "Rate limit exceeded",
        "details": {"cost": cost, "capacity": capacity, "remaining": remaining},
        "retryAfterMs": retry,
    }


async def test_limited_event_gets_error_frame_then_refills() -> None:
    router, clock, _ = app()
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({"user_id": "u1"})
        for n in range(3):
            conn.send(Ping, {"n": n})
        await h.flush()
        assert conn.frames == [
            {"type": "PONG", "meta": {}, "payload": {"n": 0}},
            {"type": "PONG", "meta": {}, "payload": {"n": 1}},
            {"type": "ERROR", "meta": {}, "payload": exhausted(1, 2, 0, 1000)},
        ]
        conn.clear()
        await h.advance(1000)
        conn.send(Ping, {"n": 3})
        await h.flush()
        assert conn.frames == [{"type": "PONG", "meta": {}, "payload": {"n": 3}}]
        assert not conn.closed


async def test_limited_rpc_gets_rpc_error_with_correlation_id() -> None:
    router, clock, _ = app(key=key_per_user)
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({"user_id": "u1"})
        conn.send(Ping, {"n": 0})
        conn.send(Ping, {"n": 1})
        call = conn.call(Get, {}, correlation_id="c-1")
        await h.flush()
        assert call.terminal == {
            "type": "RPC_ERROR",
            "meta": {"correlationId": "c-1"},
            "payload": exhausted(1, 2, 0, 1000),
        }


async def test_cost_above_capacity_is_failed_precondition() -> None:
    router, clock, _ = app(cost=lambda ctx: 3)
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({"user_id": "u1"})
        conn.send(Ping, {"n": 0})
        conn.call(Get, {}, correlation_id="c-9")
        await h.flush()
        body = {
            "code": "FAILED_PRECONDITION",
            "message": "Operation cost exceeds capacity",
            "details": {"cost": 3, "capacity": 2},
        }
        assert conn.frames == [
            {"type": "ERROR", "meta": {}, "payload": body},
            {"type": "RPC_ERROR", "meta": {"correlationId": "c-9"}, "payload": body},
        ]


@pytest.mark.parametrize("cost", [-1, 1.0, "1", True, None])
async def test_invalid_cost_is_invalid_argument(cost: Any) -> None:
    calls: list[str] = []

    class Spy:
        policy = RateLimitPolicy(2, 1.0)

        async def consume(self, key: str, cost: int = 1) -> Decision:
            calls.append(key)
            return Decision(True, 1)

    router, clock, _ = app(limiter=Spy(), cost=lambda ctx: cost)
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({"user_id": "u1"})
        conn.send(Ping, {"n": 0})
        await h.flush()
        assert conn.frames == [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Rate limit cost must be a non-negative integer",
                },
            }
        ]
        assert calls == []


async def test_zero_cost_skips_the_limiter() -> None:
    calls: list[str] = []

    class Spy:
        policy = RateLimitPolicy(1, 1.0)

        async def consume(self, key: str, cost: int = 1) -> Decision:
            calls.append(key)
            return Decision(False, 0, 1000)

    router, clock, _ = app(limiter=Spy(), cost=lambda ctx: 0 if ctx.type == "PING" else 1)
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({"user_id": "u1"})
        conn.send(Ping, {"n": 0})
        conn.send(Other, {})
        await h.flush()
        assert conn.payloads(Pong) == [{"n": 0}]
        assert conn.error_codes == ["RESOURCE_EXHAUSTED"]
        assert calls == ["rl:public:u1:OTHER"]


async def test_default_key_is_per_user_per_type() -> None:
    router, clock, _ = app()
    async with Harness(router, clock=clock) as h:
        alice = await h.connect({"user_id": "alice", "tenant_id": "t1"})
        alice2 = await h.connect({"user_id": "alice", "tenant_id": "t1"})
        bob = await h.connect({"user_id": "bob", "tenant_id": "t1"})
        alice.send(Ping, {"n": 1})
        alice2.send(Ping, {"n": 2})
        alice2.send(Ping, {"n": 3})  # alice's PING bucket (shared across her connections) is empty
        alice2.send(Other, {})  # another type: another bucket
        bob.send(Ping, {"n": 4})
        await h.flush()
        assert alice2.payloads(Pong) == [{"n": 2}, {"n": -1}]
        assert alice2.error_codes == ["RESOURCE_EXHAUSTED"]
        assert bob.payloads(Pong) == [{"n": 4}]


async def test_key_functions() -> None:
    class Data:
        user_id = "u7"
        tenant_id = None

    router, clock, _ = app()
    async with Harness(router, clock=clock) as h:
        seen: dict[str, list[str]] = {}

        async def keys(ctx: Any) -> None:
            seen[ctx.client_id] = [
                key_per_user_per_type(ctx),
                key_per_user(ctx),
                key_per_client(ctx),
            ]

        router.on(define_message("KEYS", any_object()), keys)

        conns = [
            await h.connect({"user_id": "u1", "tenant_id": "acme"}, client_id="c1"),
            await h.connect({"userId": "u2", "tenantId": "t2"}, client_id="c2"),
            await h.connect(Data(), client_id="c3"),
            await h.connect(None, client_id="c4"),
            await h.connect({}, client_id="c5"),
        ]
        for c in conns:
            c.send("KEYS", {})
        await h.flush()
        assert seen == {
            "c1": ["rl:acme:u1:KEYS", "rl:acme:u1", "rl:client:c1"],
            "c2": ["rl:t2:u2:KEYS", "rl:t2:u2", "rl:client:c2"],
            "c3": ["rl:public:u7:KEYS", "rl:public:u7", "rl:client:c3"],
            "c4": ["rl:public:anon:KEYS", "rl:public:anon", "rl:client:c4"],
            "c5": ["rl:public:anon:KEYS", "rl:public:anon", "rl:client:c5"],
        }


async def test_custom_async_key_and_cost() -> None:
    async def key(ctx: Any) -> str:
        return f"room:{ctx.payload['n'] % 2}"

    async def cost(ctx: Any) -> int:
        return 2

    router, clock, _ = app(key=key, cost=cost)
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({})
        for n in (0, 1, 2, 3):
            conn.send(Ping, {"n": n})
        await h.flush()
        assert conn.payloads(Pong) == [{"n": 0}, {"n": 1}]
        assert conn.errors == [exhausted(2, 2, 0, 2000), exhausted(2, 2, 0, 2000)]


async def test_limiter_failure_is_internal_and_reported() -> None:
    class Broken:
        policy = RateLimitPolicy(1, 1.0)

        async def consume(self, key: str, cost: int = 1) -> Decision:
            raise ConnectionError("backend down")

    router, clock, _ = app(limiter=Broken())
    async with Harness(router, clock=clock) as h:
        conn = await h.connect({})
        conn.send(Ping, {"n": 0})
        await h.flush()
        assert conn.error_codes == ["INTERNAL"]
        assert "backend down" not in conn.raw_frames[0]
        assert [type(r.error) for r in h.take_reported()] == [ConnectionError]


def test_rate_limit_needs_a_limiter() -> None:
    with pytest.raises(TypeError, match="needs a RateLimiter"):
        rate_limit(limiter=object())  # type: ignore[arg-type]


async def test_route_level_middleware() -> None:
    clock = FakeClock()
    limiter = memory_rate_limiter(capacity=1, tokens_per_second=1, clock=clock.now)
    router = create_router()

    @router.on(Ping, middleware=[rate_limit(limiter=limiter)])
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {"n": ctx.payload["n"]})

    @router.on(Other)
    async def other(ctx: Any) -> None:
        ctx.send(Pong, {"n": -1})

    async with Harness(router, clock=clock) as h:
        conn = await h.connect({})
        conn.send(Ping, {"n": 1})
        conn.send(Ping, {"n": 2})
        conn.send(Other, {})
        conn.send(Other, {})
        await h.flush()
        assert conn.payloads(Pong) == [{"n": 1}, {"n": -1}, {"n": -1}]
        assert conn.errors == [exhausted(1, 1, 0, 1000)]
