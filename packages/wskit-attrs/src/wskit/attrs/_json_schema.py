"""JSON Schema (draft 2020-12) of attrs classes, for what the strict converter handles.

Covered: ``str``/``int``/``float``/``bool``/``None``/``Any``, ``datetime``/
``date``/``UUID`` (as formatted strings), ``Optional`` and unions, ``list``/
``Sequence``/``set``/``frozenset``/``tuple`` (homogeneous and fixed), ``dict``/
``Mapping``, ``Literal``, ``Enum``, nested attrs classes (in ``$defs``, by
reference) and field defaults. Objects are strict (``additionalProperties:
false``), as the converter is. The top-level class is inlined, as pydantic does.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from typing import Any, Final, Literal, get_args, get_origin

import attrs
import cattrs

from wskit.attrs._converter import (
    _is_dict,
    _is_list,
    _is_set,
    _is_tuple,
    _is_union,
    _NoneType,
    wire_names,
)

__all__ = ["json_schema_of"]

_SIMPLE: Final[dict[Any, dict[str, Any]]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    _NoneType: {"type": "null"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}

_JSON_TYPES: Final[dict[type, str]] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    _NoneType: "null",
}


def json_schema_of(cl: type, converter: cattrs.Converter) -> dict[str, Any]:
    """The JSON Schema of ``cl``'s wire form under ``converter``."""
    gen = _Generator(converter)
    schema = gen.object(cl)
    if gen.defs:
        schema["$defs"] = dict(sorted(gen.defs.items()))
    return schema


def _value_type(values: list[Any]) -> dict[str, Any]:
    kinds = {_JSON_TYPES.get(type(v)) for v in values}
    if len(kinds) == 1 and None not in kinds:
        return {"type": kinds.pop()}
    return {}


class _Generator:
    def __init__(self, converter: cattrs.Converter) -> None:
        self.converter = converter
        self.defs: dict[str, dict[str, Any]] = {}
        self._names: dict[Any, str] = {}

    def _ref(self, t: Any, build: Any) -> dict[str, Any]:
        name = self._names.get(t)
        if name is None:
            base = getattr(t, "__name__", "Model")
            name = base
            n = 2
            while name in self.defs:
                name = f"{base}{n}"
                n += 1
            self._names[t] = name
            self.defs[name] = {}  # placeholder: recursive classes refer to themselves
            self.defs[name] = build(t)
        return {"$ref": f"#/$defs/{name}"}

    def object(self, cl: type) -> dict[str, Any]:
        attrs.resolve_types(cl)
        names = wire_names(self.converter, cl)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for a in attrs.fields(cl):
            wire = names.get(a.name)
            if wire is None:
                continue
            prop = dict(self.of(a.type)) if a.type is not None else {}
            default = self._default(a)
            if default is not attrs.NOTHING:
                prop["default"] = default
            else:
                required.append(wire)
            properties[wire] = prop
        out: dict[str, Any] = {
            "title": cl.__name__,
            "type": "object",
            "properties": properties,
        }
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out

    def _default(self, a: attrs.Attribute[Any]) -> Any:
        default: Any = a.default
        if default is attrs.NOTHING:
            return attrs.NOTHING
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                return None  # not knowable without an instance; still optional
            default = default.factory()
        try:
            value = self.converter.unstructure(default, a.type)
            json.dumps(value)
        except Exception:
            return None
        return value

    def of(self, t: Any) -> dict[str, Any]:
        simple = _SIMPLE.get(t)
        if simple is not None:
            return dict(simple)
        if t is Any or t is object:
            return {}
        if isinstance(t, type) and attrs.has(t):
            return self._ref(t, self.object)
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return self._ref(t, self._enum)
        origin = get_origin(t)
        args = get_args(t)
        if origin is Literal:
            values = [v.value if isinstance(v, enum.Enum) else v for v in args]
            if len(values) == 1:
                return {"const": values[0], **_value_type(values)}
            return {"enum": values, **_value_type(values)}
        if _is_union(t):
            return {"anyOf": [self.of(m) for m in args]}
        if _is_tuple(t):
            if not args or (len(args) == 2 and args[1] is Ellipsis):
                return {"type": "array", "items": self.of(args[0]) if args else {}}
            if args == ((),):
                args = ()
            return {
                "type": "array",
                "prefixItems": [self.of(m) for m in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        if _is_set(t):
            return {"type": "array", "items": self.of(args[0]) if args else {}, "uniqueItems": True}
        if _is_list(t):
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if _is_dict(t):
            out: dict[str, Any] = {"type": "object"}
            if len(args) == 2:
                out["additionalProperties"] = self.of(args[1])
                if args[0] not in (str, Any):
                    out["propertyNames"] = self.of(args[0])
            return out
        raise TypeError(f"no JSON Schema for type {t!r}")

    def _enum(self, t: type[enum.Enum]) -> dict[str, Any]:
        values = [m.value for m in t]
        return {"title": t.__name__, "enum": values, **_value_type(values)}
