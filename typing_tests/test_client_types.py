"""Static typing checks for wskit.client (run by mypy and pyright, not pytest).

``request()`` returns the response payload type of an ``RpcSchema[P, R]``;
handlers, streams and ``Call.reply()`` see ``Message[P]`` / ``Message[R]``.
"""

from __future__ import annotations

from pydantic import BaseModel
from typing_extensions import assert_type

from wskit.client import Call, Client, Message, SendStatus, Stream
from wskit.pydantic import message, rpc


class GetUserRequest(BaseModel):
    user_id: str


class User(BaseModel):
    name: str


class Joined(BaseModel):
    room_id: str


GetUser = rpc("GET_USER", GetUserRequest, "USER_DATA", User)
Join = message("JOINED", Joined)


async def check(client: Client) -> None:
    user = await client.request(GetUser, payload=GetUserRequest(user_id="u1"))
    assert_type(user, User)
    user2 = await client.request(GetUser, payload={"user_id": "u1"}, timeout_ms=500)
    assert_type(user2, User)

    call = client.call(GetUser, payload={"user_id": "u1"})
    assert_type(call, Call[User])
    async for update in call.progress():
        assert_type(update, User)
    assert_type(await call, User)
    assert_type(await call.reply(), Message[User])

    def on_progress(update: User) -> None: ...

    await client.request(GetUser, payload={"user_id": "u1"}, on_progress=on_progress)

    status = client.send(Join, payload=Joined(room_id="r"))
    assert_type(status, SendStatus)

    def on_joined(msg: Message[Joined]) -> None:
        assert_type(msg.payload, Joined)

    unsubscribe = client.on(Join, on_joined)
    unsubscribe()

    @client.on(Join)
    async def decorated(msg: Message[Joined]) -> None: ...

    stream = client.stream(Join)
    assert_type(stream, Stream[Joined])
    async for msg in stream:
        assert_type(msg.payload, Joined)


async def check_follow(client: Client) -> None:
    from typing import Any

    from wskit.client import FollowState, TopicFollow
    from wskit.core import StreamPosition, TopicStatus

    def on_status(status: TopicStatus) -> None:
        assert_type(status.gap, bool)

    def subscribe(since: dict[str, Any] | None) -> SendStatus:
        return client.send(Join, payload={"room_id": "r"})

    feed = client.follow("feed:a", subscribe, on_status=on_status)
    assert_type(feed, TopicFollow)
    assert_type(feed.status, FollowState)
    assert_type(feed.position, StreamPosition | None)
    assert_type(feed.since, dict[str, Any] | None)
    msg: Message[Joined] | None = None
    if msg is not None:
        assert_type(msg.position, StreamPosition | None)
        assert_type(msg.topic, str | None)
