"""bearer_token/bearer_auth on request objects shaped like the adapters' ones, and
require() through the real router."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from wskit.core import RpcError, any_object, create_router, define_message, define_rpc
from wskit.core.testing import Harness
from wskit.middleware import bearer_auth, bearer_token, data_field, has_role, has_scope, require


class MultiDict:
    """Case-insensitive, repeated keys, ``getall`` (aiohttp's CIMultiDict shape)."""

    def __init__(self, *items: tuple[str, str]) -> None:
        self.items = items

    def getall(self, key: str, default: Any = ()) -> list[str]:
        found = [v for k, v in self.items if k.lower() == key.lower()]
        return found or list(default)

    def get(self, key: str, default: Any = None) -> Any:
        found = self.getall(key)
        return found[0] if found else default


class StarletteHeaders(MultiDict):
    """``getlist(key)`` only (Starlette's Headers shape)."""

    def getlist(self, key: str) -> list[str]:
        return super().getall(key)

    getall = None  # type: ignore[assignment]


@dataclass
class AiohttpLike:
    headers: Any = field(default_factory=MultiDict)
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class StarletteLike:
    headers: Any = field(default_factory=StarletteHeaders)
    query_params: dict[str, str] = field(default_factory=dict)


def test_token_places_and_their_order() -> None:
    offer = ("Sec-WebSocket-Protocol", "chat.v1, bearer.from-protocol")
    header = ("authorization", "Bearer from-header")
    query = {"access_token": "from-query"}
    assert bearer_token(AiohttpLike(MultiDict(offer, header), query)) == "from-protocol"
    assert bearer_token(AiohttpLike(MultiDict(header), query)) == "from-header"
    assert bearer_token(AiohttpLike(MultiDict(), query)) == "from-query"
    assert bearer_token(AiohttpLike()) is None
    assert bearer_token(StarletteLike(StarletteHeaders(offer))) == "from-protocol"
    assert bearer_token(StarletteLike(query_params=query)) == "from-query"
    # Places can be switched off or renamed.
    assert bearer_token(AiohttpLike(MultiDict(offer), query), protocol_prefix=None) == "from-query"
    assert bearer_token(AiohttpLike(MultiDict(header)), header=None) is None
    assert bearer_token(AiohttpLike(query={"t": "x"}), query_param="t") == "x"
    # Not bearer tokens.
    assert bearer_token(AiohttpLike(MultiDict(("Authorization", "Basic abc")))) is None
    assert bearer_token(AiohttpLike(MultiDict(("Sec-WebSocket-Protocol", "bearer.")))) is None
    assert bearer_token(AiohttpLike(MultiDict(("Authorization", "Bearer  ")))) is None
    plain = AiohttpLike(headers={"Authorization": "bearer abc"})  # a plain dict works too
    assert bearer_token(plain) == "abc"


async def test_bearer_auth_returns_data_or_none() -> None:
    seen: list[str] = []

    async def verify(token: str) -> Any:
        seen.append(token)
        return {"user_id": "u1"} if token == "good" else (False if token == "bad" else None)

    authenticate = bearer_auth(verify)
    assert await authenticate(AiohttpLike(query={"access_token": "good"})) == {"user_id": "u1"}
    assert await authenticate(AiohttpLike(query={"access_token": "bad"})) is None
    assert await authenticate(AiohttpLike(query={"access_token": "other"})) is None
    assert await authenticate(AiohttpLike()) is None  # no token: verify is not called
    assert seen == ["good", "bad", "other"]
    sync = bearer_auth(lambda token: {"token_len": len(token)}, query_param="t")
    assert await sync(AiohttpLike(query={"t": "abcd"})) == {"token_len": 4}


# ------------------------------------------------------------------ require

Ping = define_message("PING", any_object())
Admin = define_message("ADMIN", any_object())
Ask = define_rpc("ASK", any_object(), "ANSWER", any_object())


@dataclass
class Session:
    user_id: str | None
    roles: Any = ()
    scopes: Any = ""


def _router() -> tuple[Any, list[str]]:
    router = create_router()
    ran: list[str] = []

    async def is_signed_in(ctx: Any) -> bool:  # an async check
        return data_field(ctx.data, "user_id") is not None

    router.use(require(is_signed_in, code="UNAUTHENTICATED", message="Sign in first"))

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ran.append("PING")

    @router.on(Admin, middleware=[require(has_role("admin", "owner"))])
    async def admin(ctx: Any) -> None:
        ran.append("ADMIN")

    @router.rpc(Ask, middleware=[require(has_scope("read", "ask"))])
    async def ask(ctx: Any) -> None:
        ran.append("ASK")
        ctx.reply({})

    return router, ran


@pytest.mark.parametrize("dict_data", [True, False])
async def test_require_answers_refusals_and_skips_the_handler(dict_data: bool) -> None:
    router, ran = _router()

    def data(user_id: str | None, roles: Any = (), scopes: Any = "") -> Any:
        if dict_data:
            return {"user_id": user_id, "roles": roles, "scopes": scopes}
        return Session(user_id, roles, scopes)

    async with Harness(router) as h:
        anon = await h.connect(data=data(None))
        user = await h.connect(data=data("u1", roles=["member"], scopes="read"))
        boss = await h.connect(data=data("u2", roles={"owner"}, scopes="read write ask"))
        for conn in (anon, user, boss):
            conn.send(Ping, {})
            conn.send(Admin, {})
        with pytest.raises(RpcError) as refused:
            await user.request(Ask, {})
        assert await boss.request(Ask, {}) == {}
        await h.flush()
    assert anon.errors == [
        {"code": "UNAUTHENTICATED", "message": "Sign in first"},
        {"code": "UNAUTHENTICATED", "message": "Sign in first"},
    ]
    assert user.errors[0] == {"code": "PERMISSION_DENIED", "message": "Permission denied"}
    assert [f["type"] for f in user.frames] == ["ERROR", "RPC_ERROR"]
    assert refused.value.code == "PERMISSION_DENIED"
    assert boss.errors == []
    assert sorted(ran) == ["ADMIN", "ASK", "PING", "PING"]  # anon ran nothing


async def test_a_failing_check_is_internal(failing_harness: Any) -> None:
    router = create_router()

    def broken(ctx: Any) -> bool:
        raise RuntimeError("deliberate failure")

    router.on(Ping, lambda ctx: None, middleware=[require(broken)])
    async with failing_harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {})
        await h.flush()
        assert conn.error_codes == ["INTERNAL"]


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="at least one check"):
        require()
    with pytest.raises(TypeError, match="callables"):
        require("admin")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one role"):
        has_role()
    with pytest.raises(TypeError, match="at least one scope"):
        has_scope()
    assert has_role("a").__name__ == "has_role(a)"
    assert data_field(None, "x", 1) == 1 and data_field({"x": 2}, "x") == 2
