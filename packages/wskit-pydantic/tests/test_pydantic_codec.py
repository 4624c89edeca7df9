"""pydantic-specific behaviour: model form, aliases, strictness, JSON Schema."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from wskit.core import MessageContext, OutboundValidationError, SchemaDefinitionError
from wskit.core.testing import Harness
from wskit.pydantic import PydanticCodec, create_router, message, rpc, with_pydantic


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    name: str
    qty: int = 1


class Order(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    order_id: str
    items: list[Item]
    placed_at: datetime
    color: Color
    point: tuple[int, int] = (0, 0)


class Loose(BaseModel):
    model_config = ConfigDict(strict=False, extra="allow")

    count: int


PlaceOrder = message("PLACE_ORDER", Order)
Ack = message("ACK", order_id=str, total_items=int)


def _router() -> Any:
    router = create_router().plugin(with_pydantic())

    @router.on(PlaceOrder)
    async def place(ctx: MessageContext[Order, Any]) -> None:
        order = ctx.payload
        assert isinstance(order, Order)
        ctx.send(Ack, {"order_id": order.order_id, "total_items": sum(i.qty for i in order.items)})

    return router


async def test_model_form_with_aliases_and_json_native_types() -> None:
    async with Harness(_router()) as h:
        conn = await h.connect()
        conn.send(
            PlaceOrder,
            {
                "orderId": "o1",
                "items": [{"name": "a", "qty": 2}, {"name": "b"}],
                "placedAt": "2026-11-26T10:00:00Z",
                "color": "red",
                "point": [1, 2],
            },
        )
        await h.flush()
        assert conn.frames == [
            {"type": "ACK", "meta": {}, "payload": {"orderId": "o1", "totalItems": 3}}
        ]


@pytest.mark.parametrize(
    ("payload", "paths"),
    [
        (
            {
                "orderId": "o1",
                "items": [{"name": 5}],
                "placedAt": "2026-01-01T00:00:00Z",
                "color": "red",
            },
            [["payload", "items", 0, "name"]],
        ),
        (
            {
                "orderId": "o1",
                "items": [{"name": "a", "qty": "2"}],
                "placedAt": "2026-01-01T00:00:00Z",
                "color": "red",
            },
            [["payload", "items", 0, "qty"]],
        ),
        (
            {"orderId": "o1", "items": [], "placedAt": "yesterday", "color": "green"},
            [["payload", "placedAt"], ["payload", "color"]],
        ),
        (
            {
                "orderId": "o1",
                "items": [],
                "placedAt": "2026-01-01T00:00:00Z",
                "color": "red",
                "x": 1,
            },
            [["payload", "x"]],
        ),
    ],
)
async def test_nested_issue_paths_use_wire_names(payload: dict[str, Any], paths: list[Any]) -> None:
    async with Harness(_router()) as h:
        conn = await h.connect()
        conn.send(PlaceOrder, payload)
        await h.flush()
        (error,) = conn.errors
        assert error["code"] == "INVALID_ARGUMENT"
        assert sorted(i["path"] for i in error["details"]["issues"]) == sorted(paths)


async def test_lax_models_and_non_strict_schemas_opt_out() -> None:
    LooseMsg = message("LOOSE", Loose, strict=False)
    StrictTop = message("STRICT_TOP", Loose)
    got: list[Any] = []
    router = create_router().plugin(with_pydantic())
    router.on(LooseMsg, lambda ctx: got.append(ctx.payload.count))
    router.on(StrictTop, lambda ctx: got.append(ctx.payload.count))
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(LooseMsg, {"count": "7", "extra": True})
        conn.send(StrictTop, {"count": "8", "extra": True})
        await h.flush()
        assert got == [7]
        assert [i["path"] for i in conn.errors[0]["details"]["issues"]] == [["payload", "extra"]]


def test_quick_form_field_specs() -> None:
    schema = message("PROFILE", user_id=str, age=(int, 0), nick=Field(default="anon", max_length=5))
    codec = schema.payload
    assert isinstance(codec, PydanticCodec)
    assert codec.field_names == {"userId", "age", "nick"}
    value = codec.decode({"userId": "u"})
    assert (value.user_id, value.age, value.nick) == ("u", 0, "anon")
    assert codec.encode({"user_id": "u", "nick": "bob"}, validate=True) == {
        "userId": "u",
        "age": 0,
        "nick": "bob",
    }
    assert codec.encode(value, validate=True) == {"userId": "u", "age": 0, "nick": "anon"}
    with pytest.raises(Exception) as exc_info:
        codec.decode({"userId": "u", "nick": "toolong"})
    assert [i["path"] for i in exc_info.value.issues] == [["nick"]]  # type: ignore[attr-defined]


def test_definition_errors() -> None:
    with pytest.raises(SchemaDefinitionError, match="not both"):
        message("X", {"a": str}, b=int)
    with pytest.raises(SchemaDefinitionError):
        message("X", 42)  # type: ignore[call-overload]
    with pytest.raises(SchemaDefinitionError):
        message("$ws:x", a=str)
    with pytest.raises(SchemaDefinitionError, match="Reserved meta keys"):
        message("X", a=str, meta={"clientId": str})


async def test_outbound_accepts_models_and_rejects_the_wrong_model() -> None:
    Out = message("OUT", Item)
    Trigger = message("TRIGGER", kind=str)
    router = create_router().plugin(with_pydantic())

    @router.on(Trigger)
    async def trigger(ctx: Any) -> None:
        if ctx.payload.kind == "model":
            ctx.send(Out, Item(name="n", qty=3))
        elif ctx.payload.kind == "wrong":
            ctx.send(Out, Loose(count=1))
        else:
            ctx.send(Out, {"name": "d"})

    async with Harness(router) as h:
        conn = await h.connect()
        for kind in ("model", "dict", "wrong"):
            conn.send(Trigger, {"kind": kind})
        await h.flush()
        assert conn.payloads(Out) == [{"name": "n", "qty": 3}, {"name": "d", "qty": 1}]
        assert conn.error_codes == ["INTERNAL"]
        assert [type(r.error) for r in h.take_reported()] == [OutboundValidationError]


async def test_extended_meta() -> None:
    Hinted = message("HINTED", text=str, meta={"room_hint": str, "priority": (int, 0)})
    metas: list[Any] = []
    router = create_router().plugin(with_pydantic())
    router.on(Hinted, lambda ctx: metas.append(ctx.meta))
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Hinted, {"text": "a"}, meta={"roomHint": "r1", "timestamp": 1})
        conn.send(Hinted, {"text": "a"}, meta={"roomHint": 5})
        conn.send(Hinted, {"text": "a"}, meta={"other": 1})
        conn.send(Hinted, {"text": "a"})
        await h.flush()
        assert metas == [{"roomHint": "r1", "timestamp": 1}]
        assert [sorted(i["path"] for i in e["details"]["issues"]) for e in conn.errors] == [
            [["meta", "roomHint"]],
            [["meta", "other"], ["meta", "roomHint"]],
            [["meta", "roomHint"]],
        ]


def test_json_schema_export_hoists_defs() -> None:
    schema = PlaceOrder.json_schema()
    assert schema["properties"]["type"] == {"const": "PLACE_ORDER"}
    payload = schema["properties"]["payload"]
    assert payload["additionalProperties"] is False
    assert set(payload["required"]) == {"orderId", "items", "placedAt", "color"}
    assert payload["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
    assert set(schema["$defs"]) == {"Item", "Color"}
    assert schema["required"] == ["type", "payload"]
    meta = message("M", a=str, meta={"room_hint": str}).json_schema()["properties"]["meta"]
    assert meta["properties"]["roomHint"] == {"title": "Roomhint", "type": "string"}
    assert meta["required"] == ["roomHint"]


async def test_rpc_with_models() -> None:
    class Query(BaseModel):
        q: str

    class Result(BaseModel):
        hits: list[str]
        at: datetime

    Search = rpc("SEARCH", Query, "RESULTS", Result)
    router = create_router().plugin(with_pydantic())

    @router.rpc(Search)
    async def search(ctx: Any) -> None:
        ctx.progress(Result(hits=[], at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
        ctx.reply({"hits": [ctx.payload.q], "at": datetime(2026, 1, 2, tzinfo=timezone.utc)})

    async with Harness(router) as h:
        conn = await h.connect()
        call = conn.call(Search, {"q": "x"})
        assert await call.result() == {"hits": ["x"], "at": "2026-01-02T00:00:00Z"}
        assert call.progress == [{"hits": [], "at": "2026-01-01T00:00:00Z"}]
