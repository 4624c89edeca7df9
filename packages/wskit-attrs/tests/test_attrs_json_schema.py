"""JSON Schema export of attrs payloads (written by wskit, not by cattrs)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any, Literal, Optional, Union

import attrs
import pytest

from wskit.attrs import WIRE_NAME, make_converter, message
from wskit.attrs._codec import default_converter
from wskit.attrs._json_schema import json_schema_of
from wskit.core.errors import SchemaDefinitionError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.define
class Node:
    name: str
    children: list[Node] = attrs.Factory(list)


@attrs.define
class Shape:
    shape_id: str = attrs.field(metadata={WIRE_NAME: "shapeId"})
    color: Color
    kind: Literal["circle", "square"] = "circle"
    tags: frozenset[str] = frozenset()
    origin: tuple[float, float] = (0.0, 0.0)
    extra: dict[str, int] | None = None
    root: Node | None = None


def test_field_types_defaults_and_definitions() -> None:
    codec = message("SHAPE", Shape).payload
    assert codec is not None
    assert codec.json_schema() == {
        "title": "Shape",
        "type": "object",
        "properties": {
            "shapeId": {"type": "string"},
            "color": {"$ref": "#/$defs/Color"},
            "kind": {"enum": ["circle", "square"], "type": "string", "default": "circle"},
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "uniqueItems": True,
                "default": [],
            },
            "origin": {
                "type": "array",
                "prefixItems": [{"type": "number"}, {"type": "number"}],
                "minItems": 2,
                "maxItems": 2,
                "default": [0.0, 0.0],
            },
            "extra": {
                "anyOf": [
                    {"type": "object", "additionalProperties": {"type": "integer"}},
                    {"type": "null"},
                ],
                "default": None,
            },
            "root": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}], "default": None},
        },
        "required": ["shapeId", "color"],
        "additionalProperties": False,
        "$defs": {
            "Color": {"title": "Color", "enum": ["red", "blue"], "type": "string"},
            "Node": {
                "title": "Node",
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {
                        "type": "array",
                        "items": {"$ref": "#/$defs/Node"},
                        "default": [],
                    },
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    }


def test_quick_form_schema_is_camel_case() -> None:
    schema = message(
        "USER",
        user_id=str,
        age=(int, 0),
        seen=dt.datetime,
        day=(Optional[dt.date], None),  # noqa: UP045 - typing.Optional on purpose
        uid=uuid.UUID,
        anything=Any,
        either=Union[int, str],  # noqa: UP007 - typing.Union on purpose
        fixed=Literal[1],
        seq=tuple[int, ...],
    ).payload
    assert schema is not None
    out = schema.json_schema()
    assert out["title"] == "UserPayload"
    assert out["required"] == ["userId", "seen", "uid", "anything", "either", "fixed", "seq"]
    props = out["properties"]
    assert props["userId"] == {"type": "string"}
    assert props["age"] == {"type": "integer", "default": 0}
    assert props["seen"] == {"type": "string", "format": "date-time"}
    assert props["day"] == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "null"}],
        "default": None,
    }
    assert props["uid"] == {"type": "string", "format": "uuid"}
    assert props["anything"] == {}
    assert props["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["fixed"] == {"const": 1, "type": "integer"}
    assert props["seq"] == {"type": "array", "items": {"type": "integer"}}


def test_name_clashes_get_distinct_definitions() -> None:
    def make() -> type:
        @attrs.define
        class Inner:
            x: int

        return Inner

    first, second = make(), make()
    outer = attrs.make_class("Outer", {"a": attrs.field(type=first), "b": attrs.field(type=second)})
    schema = json_schema_of(outer, default_converter())
    assert schema["properties"] == {
        "a": {"$ref": "#/$defs/Inner"},
        "b": {"$ref": "#/$defs/Inner2"},
    }


def test_unsupported_types_are_refused() -> None:
    # No hook at all: refused when the schema is defined.
    with pytest.raises(SchemaDefinitionError, match="complex"):
        message("T", value=complex)
    # A hook the user registered: it validates, but we cannot describe it.
    conv = make_converter()
    conv.register_structure_hook(complex, lambda v, _: complex(v))
    codec = message("T", value=complex, converter=conv).payload
    assert codec is not None
    assert codec.decode({"value": "1+2j"}).value == 1 + 2j
    with pytest.raises(TypeError, match="no JSON Schema"):
        codec.json_schema()


def test_envelope_schema_includes_extended_meta() -> None:
    schema = message("CHAT", {"text": str}, meta={"room_id": str}).json_schema()
    assert schema["properties"]["meta"]["properties"]["roomId"] == {"type": "string"}
    assert schema["properties"]["meta"]["required"] == ["roomId"]
    assert schema["properties"]["meta"]["additionalProperties"] is False
