"""Static typing checks for wskit.attrs (run by mypy and pyright, not pytest).

attrs-class schemas make ``ctx.payload`` the class; the same shapes as
``test_pydantic_types.py``, so swapping the import keeps user code typed.
"""

from __future__ import annotations

from typing import Any, TypedDict

import attrs
from typing_extensions import assert_type

from wskit.attrs import create_router, make_converter, message, rpc, with_attrs
from wskit.core import MessageContext, MessageSchema, Router, RpcContext, RpcSchema


@attrs.define
class JoinRoom:
    room_id: str


@attrs.frozen
class User:
    name: str
    age: int = 0


@attrs.define
class GetUserRequest:
    user_id: str


class Session(TypedDict):
    user_id: str


Join = message("JOIN_ROOM", JoinRoom)
Ping = message("PING", text=str)
Bare = message("BARE")
GetUser = rpc("GET_USER", GetUserRequest, "USER_DATA", User)
Mixed = rpc("MIXED", {"q": str}, "MIXED_RESULT", User)
Half = rpc("HALF", GetUserRequest, "HALF_RESULT", {"ok": bool})
Custom = message("CUSTOM", JoinRoom, converter=make_converter(), strict=False)

assert_type(Join, MessageSchema[JoinRoom])
assert_type(Ping, MessageSchema[Any])
assert_type(Bare, MessageSchema[None])
assert_type(GetUser, RpcSchema[GetUserRequest, User])
assert_type(Mixed, RpcSchema[Any, User])
assert_type(Half, RpcSchema[GetUserRequest, Any])
assert_type(Custom, MessageSchema[JoinRoom])

router = create_router(Session).plugin(with_attrs())
assert_type(router, Router[Session])


@router.on(Join)
async def join(ctx: MessageContext[JoinRoom, Session]) -> None:
    assert_type(ctx.payload, JoinRoom)
    assert_type(ctx.payload.room_id, str)
    assert_type(ctx.data, Session)
    ctx.send(Join, JoinRoom(room_id="r"))
    ctx.send(Join, {"room_id": "r"})


@router.rpc(GetUser)
async def get_user(ctx: RpcContext[GetUserRequest, User, Session]) -> None:
    assert_type(ctx.payload, GetUserRequest)
    assert_type(ctx.payload.user_id, str)
    ctx.progress(User(name="partial"))
    ctx.reply(User(name="Alice", age=3))
    ctx.reply({"name": "Alice"})


async def call_form(ctx: MessageContext[JoinRoom, Session]) -> None:
    assert_type(ctx.payload, JoinRoom)


router.on(Join, call_form)
