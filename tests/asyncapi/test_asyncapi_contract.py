"""The AsyncAPI documents of the chat example and of a router using every feature
validate against the official AsyncAPI 3.0.0 JSON Schema, go through the reference
parser (JSON and YAML), and describe the frames the server really exchanges."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any, Literal

import attrs
import jsonschema
import pytest
from pydantic import BaseModel, Field
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from wskit.attrs import message as attrs_message
from wskit.attrs import rpc as attrs_rpc
from wskit.attrs import with_attrs
from wskit.core import RpcError, any_object, define_message
from wskit.core.asyncapi import asyncapi_document, sends, to_json, to_yaml
from wskit.core.testing import Harness
from wskit.pubsub import with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic

# ------------------------------------------------------------ the routers


def chat_router() -> Any:
    from examples.chat.app import build_router

    return build_router()


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    """A line item."""

    sku: str
    quantity: int = Field(ge=1)


class Order(BaseModel):
    """An order placed by a client."""

    order_id: str = Field(alias="orderId")
    items: list[Item]
    colour: Colour | None = None
    kind: Literal["retail", "wholesale"] = "retail"


class OtherItem(BaseModel):
    label: str


Item2 = type("Item", (BaseModel,), {"__annotations__": {"label": str}})  # same name, other shape


class Progress(BaseModel):
    done: int
    total: int


@attrs.define
class Point:
    x: int
    y: int


@attrs.define
class Path:
    points: list[Point]
    closed: bool = False


Place = message("PLACE", Order, meta={"tenant": str})  # model form, extended meta
Tag = message("TAG", items=list[Item2])  # a different "Item" definition
Nudge = message("NUDGE")  # no payload
Raw = define_message("raw.event", any_object())  # core codec, odd type name
Draw = attrs_message("DRAW", Path)  # attrs class form
Area = attrs_rpc("AREA", Path, "AREA_RESULT", {"area": float})  # attrs RPC
# An RPC with progress, and required extended meta on the request and the response.
Track = rpc(
    "TRACK",
    {"order_id": str},
    "TRACKED",
    Progress,
    meta={"tenant": str},
    response_meta={"region": str},
)
Placed = message("PLACED", order_id=str)
Shipped = message("room/shipped", order_id=str, at=int)
Hello = message("HELLO", server=str)
Bye = message("BYE")
Stats = message("STATS", connections=int)


def everything_router() -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_attrs()).plugin(with_pubsub())

    @router.on_open
    @sends(Hello)
    async def hello(ctx: Any) -> None:
        ctx.send(Hello, {"server": "test"})
        await ctx.topics.subscribe("orders:o1")

    @router.on_close
    @sends(Bye, topic="presence")
    async def bye(ctx: Any) -> None:
        await ctx.router.publish("presence", Bye)

    @router.on(Place)
    @sends(Placed)
    @sends(Shipped, topic="orders:{orderId}")
    async def place(ctx: Any) -> None:
        ctx.send(Placed, {"order_id": ctx.payload.order_id})
        await ctx.publish(
            f"orders:{ctx.payload.order_id}", Shipped, {"order_id": ctx.payload.order_id, "at": 1}
        )

    @router.on(Tag)
    def tag(ctx: Any) -> None:  # a sync handler
        ctx.error("PERMISSION_DENIED", "no tagging")

    @router.on(Nudge)
    async def nudge(ctx: Any) -> None:
        pass

    @router.on(Raw)
    async def raw(ctx: Any) -> None:
        pass

    @router.on(Draw)
    async def draw(ctx: Any) -> None:
        pass

    @router.rpc(Area)
    async def area(ctx: Any) -> None:
        ctx.reply({"area": float(len(ctx.payload.points))})

    sub = create_router().plugin(with_pydantic())

    @sub.rpc(Track)
    async def track(ctx: Any) -> None:
        if ctx.payload.order_id == "missing":
            raise RpcError("NOT_FOUND", "no such order")
        ctx.progress({"done": 1, "total": 2}, meta={"region": "eu"})
        ctx.reply({"done": 2, "total": 2}, meta={"region": "eu"})

    router.merge(sub)
    return router


def _document(router: Any) -> dict[str, Any]:
    return asyncapi_document(
        router,
        title="Test API",
        version="1.2.3",
        path="/ws",
        servers={"local": "ws://127.0.0.1:3000/ws", "prod": "wss://api.example.com/ws"},
        sends=[Stats],
        publishes={"stats": [Stats]},
    )


DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "chat": lambda: asyncapi_document(chat_router(), title="Chat", path="/ws"),
    "everything": lambda: _document(everything_router()),
}


# ------------------------------------------------------------------ checks


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_valid_against_the_official_schema(name: str, asyncapi_schema: dict[str, Any]) -> None:
    document = DOCUMENTS[name]()
    validator = jsonschema.Draft7Validator(asyncapi_schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    # The check is not vacuous: a broken document fails it.
    broken = json.loads(json.dumps(document))
    broken["operations"]["send_error"]["action"] = "emit"
    del broken["components"]["messages"]["ERROR"]["payload"]
    broken["components"]["messages"]["ERROR"]["bogus"] = 1
    assert len(list(validator.iter_errors(broken))) >= 2


@pytest.mark.timeout(600)  # the first run installs the parser with npm
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
@pytest.mark.parametrize("form", ["json", "yaml"])
def test_reference_parser_reads_it(
    name: str, form: str, asyncapi_parser: Callable[[str, str], Any]
) -> None:
    document = DOCUMENTS[name]()
    text = to_json(document) if form == "json" else to_yaml(document)
    result = asyncapi_parser(text, "." + form)
    problems = [d for d in result["diagnostics"] if d["severity"] <= 1]  # errors, warnings
    assert problems == [] and result["parsed"]
    assert result["version"] == "3.0.0"
    assert result["title"] == document["info"]["title"]
    assert sorted(result["operations"]) == sorted(document["operations"])
    assert sorted(result["channels"]) == sorted(document["channels"])
    for op_id, op in document["operations"].items():
        parsed = result["operations"][op_id]
        assert parsed["action"] == op["action"]
        names = [_message(document, m["$ref"])["name"] for m in op["messages"]]
        assert parsed["messages"] == names
        if "reply" in op:
            names = [_message(document, m["$ref"])["name"] for m in op["reply"]["messages"]]
            assert parsed["reply"] == names
    assert ["RPC_ERROR", "$message.payload#/meta/correlationId"] in result["correlationIds"]
    # A broken document is refused by the parser.
    broken = json.loads(json.dumps(document))
    broken["operations"]["send_error"]["messages"] = [{"$ref": "#/channels/socket/messages/nope"}]
    assert not asyncapi_parser(to_json(broken), ".json")["parsed"]


def test_chat_document_content() -> None:
    document = DOCUMENTS["chat"]()
    ops = document["operations"]
    assert {"rpc_JOIN", "receive_LEAVE", "receive_SAY", "rpc_HISTORY"} <= set(ops)
    assert ops["send_WELCOME"]["x-wskit-sent-by"] == ["$ws:open"]
    room = ops["publish_topic_room_room"]
    assert room["x-wskit-sent-by"] == ["JOIN", "LEAVE", "SAY", "$ws:close"]
    assert [_message(document, m["$ref"])["name"] for m in room["messages"]] == [
        "NOTICE",
        "MESSAGE",
    ]
    assert document["channels"]["topic_room_room"]["address"] == "room:{room}"
    chunk = document["components"]["messages"]["HISTORY_CHUNK"]["payload"]
    lines = chunk["properties"]["payload"]["properties"]["lines"]
    assert lines["items"] == {"$ref": "#/components/schemas/Line"}


def test_everything_document_content() -> None:
    document = DOCUMENTS["everything"]()
    messages = document["components"]["messages"]
    place = messages["PLACE"]
    assert place["description"] == "An order placed by a client."
    meta = place["payload"]["properties"]["meta"]["properties"]
    assert meta["tenant"]["type"] == "string" and "correlationId" in meta
    assert "tenant" in place["payload"]["properties"]["meta"]["required"]
    schemas = document["components"]["schemas"]
    assert {"Item", "Item_2", "Colour", "Point", "Error"} <= set(schemas)
    assert schemas["Item"]["description"] == "A line item."
    assert "label" in schemas["Item_2"]["properties"]
    assert messages["NUDGE"]["payload"]["required"] == ["type"]
    assert messages["room_shipped"]["name"] == "room/shipped"
    assert document["channels"]["topic_orders_orderId"]["parameters"] == {
        "orderId": {"description": "The orderId part of the topic"}
    }
    ops = document["operations"]
    assert {"rpc_AREA", "rpc_TRACK", "receive_DRAW", "receive_raw.event"} <= set(ops)
    assert ops["send_STATS"]["x-wskit-sent-by"] == [""]
    assert ops["publish_topic_presence"]["x-wskit-sent-by"] == ["$ws:close"]
    assert set(document["servers"]) == {"local", "prod"}


# ------------------------------------------ the frames really exchanged


def _message(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    if set(node) == {"$ref"}:
        return _message(document, node["$ref"])
    return node


class _Frames:
    """Validates frames against the document's message schemas."""

    def __init__(self, document: dict[str, Any]) -> None:
        resource = Resource.from_contents(document, default_specification=DRAFT7)
        self.registry: Registry[Any] = Registry().with_resource("urn:wskit:api", resource)
        self.by_name: dict[str, list[str]] = {}
        for key, body in document["components"]["messages"].items():
            self.by_name.setdefault(body["name"], []).append(key)

    def errors(self, frame: dict[str, Any]) -> list[str]:
        """Why ``frame`` matches none of the messages of its type ([] if one matches)."""
        keys = self.by_name.get(frame.get("type", ""), [])
        if not keys:
            return [f"no message named {frame.get('type')!r}"]
        found: list[str] = []
        for key in keys:
            ref = {"$ref": f"urn:wskit:api#/components/messages/{key}/payload"}
            validator = jsonschema.Draft7Validator(ref, registry=self.registry)
            errors = [e.message for e in validator.iter_errors(frame)]
            if not errors:
                return []
            found += errors
        return found


async def _exchange_chat(router: Any) -> tuple[list[Any], list[Any]]:
    from examples.chat.router import History, Join, Say

    sent: list[Any] = []
    async with Harness(router) as h:
        conn = await h.connect(data={"user": "ann"})
        other = await h.connect(data={"user": "bob"})

        def send(c: Any, frame: dict[str, Any]) -> None:
            sent.append(frame)
            c.send_raw(json.dumps(frame))

        lobby = {"room": "lobby"}
        send(conn, {"type": Join.type, "meta": {"correlationId": "j1"}, "payload": lobby})
        send(other, {"type": Join.type, "meta": {"correlationId": "j2"}, "payload": lobby})
        for i in range(25):
            send(
                conn,
                {
                    "type": Say.type,
                    "meta": {"timestamp": i},
                    "payload": {"room": "lobby", "text": f"m{i}"},
                },
            )
        bad = {"room": "Bad Room"}
        send(conn, {"type": Join.type, "meta": {"correlationId": "j3"}, "payload": bad})
        send(conn, {"type": Say.type, "payload": {"room": "elsewhere", "text": "x"}})  # ERROR
        history = {"room": "lobby"}
        send(conn, {"type": History.type, "meta": {"correlationId": "h1"}, "payload": history})
        send(
            conn, {"type": History.type, "meta": {"correlationId": "h2"}, "payload": {"room": "!"}}
        )
        send(conn, {"type": "__heartbeat"})
        send(conn, {"type": "$ws:abort", "meta": {"correlationId": "gone"}})
        await h.flush()
        await other.close()
        received = conn.frames + other.frames
    return sent, received


async def test_chat_frames_match_the_document() -> None:
    frames = _Frames(DOCUMENTS["chat"]())
    sent, received = await _exchange_chat(chat_router())
    types = {f["type"] for f in received}
    assert {
        "WELCOME",
        "NOTICE",
        "MESSAGE",
        "$ws:rpc-progress",
        "HISTORY_CHUNK",
        "JOINED",
        "ERROR",
        "RPC_ERROR",
        "__heartbeat_ack",
    } <= types
    for frame in [*sent, *received]:
        assert frames.errors(frame) == [], frame
    # Invalid frames do not match: the schemas are strict, as the server is.
    assert frames.errors({"type": "SAY", "payload": {"room": "a", "text": "t", "x": 1}})
    assert frames.errors(
        {"type": "SAY", "meta": {"bogus": 1}, "payload": {"room": "a", "text": "t"}}
    )
    assert frames.errors({"type": "HISTORY", "payload": {"room": "a"}})  # no correlationId
    assert frames.errors({"type": "ERROR", "meta": {}, "payload": {"message": "no code"}})


async def test_everything_frames_match_the_document() -> None:
    router = everything_router()
    frames = _Frames(_document(router))
    sent: list[Any] = [
        {
            "type": "PLACE",
            "meta": {"tenant": "t1"},
            "payload": {"orderId": "o1", "items": [{"sku": "s", "quantity": 2}], "colour": "red"},
        },
        {"type": "TAG", "payload": {"items": [{"label": "x"}]}},
        {"type": "NUDGE"},
        {"type": "raw.event", "payload": {"anything": [1, 2]}},
        {"type": "DRAW", "payload": {"points": [{"x": 1, "y": 2}], "closed": True}},
        {
            "type": "AREA",
            "meta": {"correlationId": "a1"},
            "payload": {"points": [{"x": 0, "y": 0}]},
        },
        {
            "type": "TRACK",
            "meta": {"correlationId": "t1", "timeoutMs": 1000, "tenant": "t"},
            "payload": {"orderId": "o1"},
        },
        {
            "type": "TRACK",
            "meta": {"correlationId": "t2", "tenant": "t"},
            "payload": {"orderId": "missing"},
        },
        {"type": "UNKNOWN_TYPE", "payload": {}},
    ]
    async with Harness(router) as h:
        conn = await h.connect()
        watcher = await h.connect()
        await watcher.connection.router.pubsub.topics(watcher.connection).subscribe("presence")
        for frame in sent:
            conn.send_raw(json.dumps(frame))
        await h.flush()
        await conn.close()
        received = conn.frames + watcher.frames
        await router.publish("stats", Stats, {"connections": 1})
    types = [f["type"] for f in received]
    for expected in (
        "HELLO",
        "PLACED",
        "room/shipped",
        "ERROR",
        "AREA_RESULT",
        "$ws:rpc-progress",
        "TRACKED",
        "RPC_ERROR",
        "BYE",
    ):
        assert expected in types
    for frame in sent[:-1] + received:
        assert frames.errors(frame) == [], frame
    assert frames.errors(sent[-1]) == ["no message named 'UNKNOWN_TYPE'"]
    assert frames.errors({"type": "PLACE", "payload": sent[0]["payload"]})  # tenant required
    assert frames.errors({"type": "DRAW", "payload": {"points": [{"x": "1", "y": 2}]}})


async def test_chat_app_serves_its_document() -> None:
    import aiohttp

    from examples.chat.app import make_app
    from wskit.aiohttp.testing import loopback_server

    async with (
        loopback_server(make_app(), path="/ws") as server,
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/asyncapi.json") as response,
    ):
        assert response.status == 200
        served = await response.json()
    expected = asyncapi_document(chat_router(), title="wskit chat", path="/ws")
    assert served == json.loads(to_json(expected))
