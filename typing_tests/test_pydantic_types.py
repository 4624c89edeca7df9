"""Static typing checks for wskit.pydantic (run by mypy and pyright, not pytest).

Model-form schemas make ``ctx.payload`` the model type; the router's data type
parameter types ``ctx.data``.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import BaseModel
from typing_extensions import assert_type

from wskit.core import MessageContext, MessageSchema, Router, RpcContext, RpcSchema
from wskit.pydantic import create_router, message, rpc, with_pydantic


class JoinRoom(BaseModel):
    room_id: str


class User(BaseModel):
    name: str


class GetUserRequest(BaseModel):
    user_id: str


class Session(TypedDict):
    user_id: str


Join = message("JOIN_ROOM", JoinRoom)
Ping = message("PING", text=str)
Bare = message("BARE")
GetUser = rpc("GET_USER", GetUserRequest, "USER_DATA", User)
Mixed = rpc("MIXED", {"q": str}, "MIXED_RESULT", User)

assert_type(Join, MessageSchema[JoinRoom])
assert_type(Ping, MessageSchema[Any])
assert_type(Bare, MessageSchema[None])
assert_type(GetUser, RpcSchema[GetUserRequest, User])
assert_type(Mixed, RpcSchema[Any, User])

router = create_router(Session).plugin(with_pydantic())
assert_type(router, Router[Session])
plain = create_router()
assert_type(plain, Router[dict[str, Any]])


@router.on(Join)
async def join(ctx: MessageContext[JoinRoom, Session]) -> None:
    assert_type(ctx.payload, JoinRoom)
    assert_type(ctx.payload.room_id, str)
    assert_type(ctx.data, Session)
    assert_type(ctx.data["user_id"], str)
    ctx.send(Join, JoinRoom(room_id="r"))
    ctx.send(Join, {"room_id": "r"})


@router.rpc(GetUser)
async def get_user(ctx: RpcContext[GetUserRequest, User, Session]) -> None:
    assert_type(ctx.payload, GetUserRequest)
    assert_type(ctx.correlation_id, str)
    ctx.progress(User(name="partial"))
    ctx.reply(User(name="Alice"))
    ctx.reply({"name": "Alice"})


async def call_form(ctx: MessageContext[JoinRoom, Session]) -> None:
    assert_type(ctx.payload, JoinRoom)


router.on(Join, call_form)


async def follow(ctx: MessageContext[JoinRoom, Session]) -> None:
    from wskit.core import TopicStatus

    status = await ctx.topics.subscribe(f"room:{ctx.payload.room_id}", since=None)
    assert_type(status, TopicStatus)
    assert_type(status.recovered, bool)
