"""The attrs codec on its own: strict structuring, issue paths, wire names, outbound."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from typing import Any, Literal, Optional, Union

import attrs
import cattrs
import pytest
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from wskit.attrs import (
    WIRE_NAME,
    AttrsCodec,
    make_converter,
    message,
    register_wire_names,
    rpc,
)
from wskit.core.envelope import dumps
from wskit.core.errors import SchemaDefinitionError, ValidationError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.define
class Item:
    name: str
    qty: int = attrs.field(validator=attrs.validators.gt(0))


@attrs.define
class Order:
    order_id: str = attrs.field(metadata={WIRE_NAME: "orderId"})
    items: list[Item]
    color: Color = Color.RED
    note: str | None = None
    tags: dict[str, int] = attrs.Factory(dict)


def issues(codec: Any, data: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        codec.decode(data)
    assert info.value.code == "INVALID_ARGUMENT"
    return info.value.issues


def paths(codec: Any, data: Any) -> list[list[str | int]]:
    return [i["path"] for i in issues(codec, data)]


# ------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    ("t", "good", "bad"),
    [
        (int, 5, ["5", 5.0, True, None, [5]]),
        (float, 1.5, ["1.5", True, None]),
        (str, "x", [1, b"x", None, ["x"]]),
        (bool, True, [1, 0, "true", None]),
        (list[int], [1, 2], ["12", {"a": 1}, (1, 2), None]),
        (dict[str, int], {"a": 1}, [[["a", 1]], "a", None]),
        (Literal["a", "b"], "a", ["c", 1, None]),
        (Literal[1, 2], 1, [True, 1.0, "1"]),
        (Color, "red", ["RED", "green", 1]),
        (Level, 1, [True, "1", 3]),
        (Optional[int], None, ["1", False]),  # noqa: UP045 - typing.Optional on purpose
        (int | None, None, ["1", False]),
        (Union[int, str], "x", [1.5, None, [1]]),  # noqa: UP007 - typing.Union on purpose
        (int | str, "x", [1.5, None, [1]]),
        (tuple[int, str], [1, "a"], [[1], [1, "a", 2], ["a", 1], (1, "a")]),
        (tuple[int, ...], [1, 2, 3], [["1"], "123"]),
        (set[int], [1, 2], [{1, 2}, "12"]),
    ],
)
def test_no_coercion(t: Any, good: Any, bad: list[Any]) -> None:
    codec = message("T", value=t).payload
    assert codec is not None
    codec.decode({"value": good})
    for value in bad:
        found = issues(codec, {"value": value})
        assert found and all(i["path"][0] == "value" for i in found), (t, value, found)


def test_structured_values_have_the_declared_types() -> None:
    codec = message(
        "T",
        f=float,
        c=Color,
        lv=Level,
        t=tuple[int, str],
        s=frozenset[int],
        d=dt.datetime,
        day=dt.date,
        u=uuid.UUID,
        either=int | float,
    ).payload
    assert codec is not None
    uid = uuid.uuid4()
    value = codec.decode(
        {
            "f": 3,
            "c": "blue",
            "lv": 2,
            "t": [1, "a"],
            "s": [1, 1, 2],
            "d": "2024-05-01T12:00:00Z",
            "day": "2024-05-01",
            "u": str(uid),
            "either": 2,
        }
    )
    assert value.f == 3.0 and type(value.f) is float
    assert value.c is Color.BLUE and value.lv is Level.HIGH
    assert value.t == (1, "a") and value.s == frozenset({1, 2})
    assert value.d == dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    assert value.day == dt.date(2024, 5, 1) and value.u == uid
    assert value.either == 2 and type(value.either) is int  # exact type wins in unions
    bad = paths(codec.__class__(codec.cl), {**codec.encode(value, validate=True), "d": "nope"})
    assert bad == [["d"]]


def test_top_level_must_be_an_object() -> None:
    codec = message("T", a=int).payload
    for value in ([], "x", None, 1):
        assert issues(codec, value) == [{"path": [], "message": "Expected an object"}]


# ------------------------------------------------------------- issue paths


def test_every_failure_is_reported_with_its_path() -> None:
    codec = message("ORDER", Order).payload
    found = issues(
        codec,
        {
            "orderId": 1,
            "items": [{"name": "a", "qty": "1", "extra": 2}, {"name": "b", "qty": 0}, 5],
            "color": "green",
            "tags": {"a": True},
            "zz": 1,
        },
    )
    assert found == [
        {"path": ["orderId"], "message": "Input should be a valid string"},
        {"path": ["items", 0, "qty"], "message": "Input should be a valid integer"},
        {"path": ["items", 0, "extra"], "message": "Unrecognized key"},
        {"path": ["items", 1, "qty"], "message": "'qty' must be > 0: 0"},
        {"path": ["items", 2], "message": "Input should be an object"},
        {"path": ["color"], "message": "Input should be 'red' or 'blue'"},
        {"path": ["tags", "a"], "message": "Input should be a valid integer"},
        {"path": ["zz"], "message": "Unrecognized key"},
    ]


def test_missing_fields_and_python_names_on_the_wire() -> None:
    codec = message("ORDER", Order).payload
    assert issues(codec, {"order_id": "1"}) == [
        {"path": ["orderId"], "message": "Field required"},
        {"path": ["items"], "message": "Field required"},
        {"path": ["order_id"], "message": "Unrecognized key"},
    ]


@attrs.define
class Account:
    name: str = attrs.field(validator=attrs.validators.min_len(2))
    age: int = attrs.field(validator=attrs.validators.ge(0))
    role: str = attrs.field(default="user", validator=attrs.validators.in_(["user", "admin"]))

    @name.validator
    def _no_root(self, attribute: Any, value: str) -> None:
        if value == "root":
            raise ValueError("name is reserved")

    def __attrs_post_init__(self) -> None:
        if self.name == "nobody" and self.role == "admin":
            raise ValueError("nobody cannot be admin")


@attrs.define
class Team:
    lead: Account
    members: list[Account] = attrs.Factory(list)


def test_attrs_validators_are_reported_per_field() -> None:
    codec = message("ACC", Account).payload
    assert paths(codec, {"name": "a", "age": -1, "role": "god"}) == [["name"], ["age"], ["role"]]
    assert issues(codec, {"name": "root", "age": 1}) == [
        {"path": ["name"], "message": "name is reserved"}
    ]
    # A constructor failure no field validator explains is reported on the object.
    assert issues(codec, {"name": "nobody", "age": 1, "role": "admin"}) == [
        {"path": [], "message": "nobody cannot be admin"}
    ]


def test_validators_of_fields_that_structured_are_reported_with_type_errors() -> None:
    codec = message("ACC", Account).payload
    assert issues(codec, {"name": "root", "age": "1"}) == [
        {"path": ["age"], "message": "Input should be a valid integer"},
        {"path": ["name"], "message": "name is reserved"},
    ]


def test_nested_validator_paths() -> None:
    codec = message("TEAM", Team).payload
    assert paths(
        codec,
        {
            "lead": {"name": "x", "age": 1},
            "members": [{"name": "ok", "age": 1}, {"name": "ok", "age": -5}],
        },
    ) == [["lead", "name"], ["members", 1, "age"]]
    assert paths(codec, {"lead": {"name": "ok", "age": 1, "x": 1}}) == [["lead", "x"]]


@attrs.define
class Cat:
    kind: Literal["cat"]
    meows: bool


@attrs.define
class Dog:
    kind: Literal["dog"]
    barks: bool


def test_unions_of_classes_and_optional_nested_errors() -> None:
    codec = message("PET", pet=Union[Cat, Dog], maybe=(Item | None, None)).payload  # noqa: UP007
    assert codec is not None
    assert codec.decode({"pet": {"kind": "dog", "barks": True}}).pet == Dog("dog", True)
    assert issues(codec, {"pet": {"kind": "cow"}}) == [
        {"path": ["pet"], "message": "Input should be Cat or Dog"}
    ]
    # Optional[X] reports X's own errors, with their nested paths.
    assert paths(
        codec, {"pet": {"kind": "cat", "meows": True}, "maybe": {"name": 1, "qty": 1}}
    ) == [["maybe", "name"]]


# ------------------------------------------------------------- wire names


def test_quick_form_is_camel_case_and_keyword_only() -> None:
    schema = message("USER_JOINED", user_id=str, room_name=(str, "lobby"))
    codec = schema.payload
    assert codec is not None
    assert codec.field_names == frozenset({"userId", "roomName"})
    value = codec.decode({"userId": "u1"})
    assert (value.user_id, value.room_name) == ("u1", "lobby")
    assert paths(codec, {"user_id": "u1"}) == [["userId"], ["user_id"]]
    assert codec.encode({"user_id": "u1"}, validate=True) == {"userId": "u1", "roomName": "lobby"}
    assert codec.encode({"userId": "u1"}, validate=True) == {"userId": "u1", "roomName": "lobby"}
    assert codec.cl.__name__ == "UserJoinedPayload"


def test_quick_form_mutable_defaults_are_not_shared() -> None:
    codec = message("T", tags=(list[str], ["a"])).payload
    assert codec is not None
    first = codec.decode({})
    first.tags.append("b")
    assert codec.decode({}).tags == ["a"]


def test_quick_form_accepts_typed_attrs_fields() -> None:
    codec = message(
        "T", count=attrs.field(type=int, default=1, validator=attrs.validators.gt(0))
    ).payload
    assert codec is not None
    assert codec.decode({}).count == 1
    assert issues(codec, {"count": 0}) == [{"path": ["count"], "message": "'count' must be > 0: 0"}]
    with pytest.raises(SchemaDefinitionError):
        message("T", count=attrs.field(default=1))


@attrs.define
class Join:
    room_id: str
    user_name: str


def test_cattrs_overrides_on_a_converter_rename_fields() -> None:
    conv = make_converter()
    conv.register_structure_hook(
        Join, make_dict_structure_fn(Join, conv, room_id=override(rename="roomId"))
    )
    conv.register_unstructure_hook(
        Join, make_dict_unstructure_fn(Join, conv, room_id=override(rename="roomId"))
    )
    codec = message("JOIN", Join, converter=conv).payload
    assert codec is not None
    assert codec.field_names == frozenset({"roomId", "user_name"})
    assert codec.decode({"roomId": "r", "user_name": "u"}) == Join("r", "u")
    assert codec.encode(Join("r", "u"), validate=True) == {"roomId": "r", "user_name": "u"}
    assert codec.encode({"room_id": "r", "user_name": "u"}, validate=True) == {
        "roomId": "r",
        "user_name": "u",
    }
    assert paths(codec, {"roomId": 1, "userName": "u"}) == [["roomId"], ["user_name"], ["userName"]]
    # The default converter is untouched.
    assert message("JOIN", Join).payload.field_names == frozenset({"room_id", "user_name"})  # type: ignore[union-attr]


def test_register_wire_names() -> None:
    conv = make_converter()
    register_wire_names(conv, Join, room_id="roomId", user_name="userName")
    codec = message("JOIN", Join, converter=conv).payload
    assert codec is not None
    assert codec.decode({"roomId": "r", "userName": "u"}) == Join("r", "u")
    assert codec.encode(Join("r", "u"), validate=False) == {"roomId": "r", "userName": "u"}
    with pytest.raises(ValueError, match="no field"):
        register_wire_names(conv, Join, nope="x")


def test_strict_false_ignores_unknown_top_level_keys_only() -> None:
    codec = message("TEAM", Team, strict=False).payload
    assert codec is not None
    assert codec.decode({"lead": {"name": "ok", "age": 1}, "extra": 1}).lead.name == "ok"
    assert paths(codec, {"lead": {"name": "ok", "age": 1, "extra": 1}}) == [["lead", "extra"]]
    assert "additionalProperties" not in codec.json_schema()


# ------------------------------------------------------------- outbound


def test_encode_instances_and_mappings() -> None:
    codec = message("ORDER", Order).payload
    assert codec is not None
    order = Order("1", [Item("a", 2)], Color.BLUE)
    wire = {
        "orderId": "1",
        "items": [{"name": "a", "qty": 2}],
        "color": "blue",
        "note": None,
        "tags": {},
    }
    assert codec.encode(order, validate=True) == wire
    assert codec.encode(order, validate=False) == wire
    # Python or wire names, nested instances and enums in a mapping.
    assert (
        codec.encode({"order_id": "1", "items": [Item("a", 2)], "color": Color.BLUE}, validate=True)
        == wire
    )
    assert (
        codec.encode(
            {"orderId": "1", "items": [{"name": "a", "qty": 2}], "color": "blue"}, validate=True
        )
        == wire
    )


def test_encode_validates() -> None:
    codec = message("ORDER", Order).payload
    assert codec is not None
    with pytest.raises(ValidationError) as info:
        codec.encode({"order_id": 1, "items": []}, validate=True)
    assert [i["path"] for i in info.value.issues] == [["orderId"]]
    with pytest.raises(ValidationError) as info:
        codec.encode(Order("1", [Item("a", 1)], "purple"), validate=True)  # type: ignore[arg-type]
    assert [i["path"] for i in info.value.issues] == [["color"]]
    with pytest.raises(ValidationError):
        codec.encode(Item("a", 1), validate=True)
    with pytest.raises(ValidationError):
        codec.encode(["not", "a", "mapping"], validate=False)
    # Without validation a mapping is only renamed and unstructured.
    assert codec.encode({"order_id": 1}, validate=False) == {"orderId": 1}


def test_encode_json_is_encode_written_by_wskits_writer() -> None:
    codec = message("ORDER", Order).payload
    assert isinstance(codec, AttrsCodec)
    order = Order("1", [Item("a\ud800", 2)], Color.BLUE)
    for value in (order, {"order_id": "1", "items": [Item("a", 2)], "color": Color.RED}):
        text = codec.encode_json(value)
        assert text == dumps(codec.encode(value, validate=True))
        assert json.loads(text)["orderId"] == "1"
    assert '"a\\ud800"' in codec.encode_json(order)  # a lone surrogate, escaped
    # The same refusals as encode(validate=True), with the same issues.
    for bad in ({"order_id": 1, "items": []}, Item("a", 1), ["not", "a", "mapping"]):
        with pytest.raises(ValidationError) as general:
            codec.encode(bad, validate=True)
        with pytest.raises(ValidationError) as fast:
            codec.encode_json(bad)
        assert fast.value.issues == general.value.issues
    floats = message("F", value=float).payload
    assert isinstance(floats, AttrsCodec)
    with pytest.raises(ValueError, match="JSON compliant"):
        floats.encode_json({"value": float("nan")})


def test_encode_a_dict_with_nothing_to_rename() -> None:
    # No field has a wire name of its own: the dict is structured as given.
    codec = message("N", text=str, n=int).payload
    assert isinstance(codec, AttrsCodec)
    value = {"text": "a", "n": 1}
    assert codec.encode(value, validate=True) == value
    assert codec.encode_json(value) == '{"text":"a","n":1}'
    assert value == {"text": "a", "n": 1}  # not changed
    for bad, path in (({"text": 1, "n": 1}, ["text"]), ({"text": "a"}, ["n"])):
        with pytest.raises(ValidationError) as info:
            codec.encode(bad, validate=True)
        assert [i["path"] for i in info.value.issues] == [path]
    with pytest.raises(ValidationError) as info:
        codec.encode({"text": "a", "n": 1, "extra": True}, validate=True)
    assert info.value.issues


# ------------------------------------------------------------- definitions


def test_schema_definition_errors() -> None:
    with pytest.raises(SchemaDefinitionError):
        message("$ws:mine", a=int)
    with pytest.raises(SchemaDefinitionError):
        message("T", {"a": int}, b=int)
    with pytest.raises(SchemaDefinitionError):
        message("T", int)  # type: ignore[call-overload]
    with pytest.raises(SchemaDefinitionError):
        message("T", {"not an identifier": int})
    with pytest.raises(SchemaDefinitionError):
        AttrsCodec(dict)
    with pytest.raises(SchemaDefinitionError, match="clientId"):
        message("T", meta={"client_id": str})


def test_meta_and_rpc_codecs() -> None:
    schema = message("CHAT", {"text": str}, meta={"room_id": str})
    assert schema.meta is not None and schema.meta.field_names == frozenset({"roomId"})
    assert schema.validators == frozenset({"attrs"})
    get = rpc("GET", Join, "GOT", {"name": str})
    assert get.payload is not None and get.payload.validator == "attrs"
    assert get.response.type == "GOT" and get.response.payload is not None
    assert isinstance(make_converter(), cattrs.Converter)
