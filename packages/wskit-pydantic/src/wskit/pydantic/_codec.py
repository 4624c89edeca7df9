"""The pydantic implementation of wskit's payload codec protocol."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from wskit.core.envelope import dumps
from wskit.core.errors import Issue, SchemaDefinitionError, ValidationError

M = TypeVar("M", bound=BaseModel)

VALIDATOR_NAME = "pydantic"


# Strict errors the JSON retry must not paper over: JSON mode would read an
# integer too large for a float as infinity.
_NO_JSON_RETRY = frozenset({"float_type", "finite_number"})


# Core-schema node types whose JSON is never a number pydantic could write as
# null/NaN/Infinity (the containers are walked into; anything else counts as able to).
_FINITE_NODES: Final = frozenset(
    {
        "str", "int", "bool", "none", "datetime", "date", "time", "timedelta", "uuid",
        "url", "multi-host-url", "bytes", "literal", "enum", "list", "tuple", "set",
        "frozenset", "dict", "nullable", "default", "union", "tagged-union", "model",
        "model-fields", "model-field", "typed-dict", "typed-dict-field", "dataclass",
        "dataclass-args", "dataclass-field", "definitions", "definition-ref",
        "lax-or-strict", "json-or-python",
    }
)  # fmt: skip
_ITEM_SCHEMAS: Final = {
    "list": ("items_schema",),
    "set": ("items_schema",),
    "frozenset": ("items_schema",),
    "tuple": ("items_schema",),
    "dict": ("keys_schema", "values_schema"),
}
_NOT_WALKED: Final = frozenset({"metadata", "config", "cls", "members", "expected", "ref"})
_PLAIN_VALUES: Final = (str, int, bool, type(None))


def _may_write_nonfinite(schema: Any) -> bool:
    """Whether a model's core schema can hold a float, or a value serialized by
    a function, anywhere: then its JSON may carry a NaN or an infinity written as
    ``null``/``NaN``/``"Infinity"``, and what it writes is checked. Unknown node
    types, custom serializers, custom ``__init__``/``model_post_init`` and extra
    fields count as able to."""
    # References resolve only within a schema that carries its definitions.
    refs = isinstance(schema, dict) and schema.get("type") == "definitions"
    return _nonfinite(schema, refs)


def _nonfinite(node: Any, refs: bool) -> bool:
    if isinstance(node, list):
        return any(_nonfinite(item, refs) for item in node)
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if isinstance(kind, str):
        if kind not in _FINITE_NODES or "serialization" in node:
            return True
        if kind == "definition-ref" and not refs:
            return True
        if any(key not in node for key in _ITEM_SCHEMAS.get(kind, ())):
            return True  # a container of anything
        if node.get("custom_init") or node.get("post_init"):
            return True
        if node.get("extra_behavior") == "allow" or node.get("computed_fields"):
            return True
        config = node.get("config")
        if isinstance(config, dict) and config.get("extra_fields_behavior") == "allow":
            return True
        if kind == "literal" and not all(type(v) in _PLAIN_VALUES for v in node["expected"]):
            return True
        if kind == "enum" and not all(
            type(member.value) in _PLAIN_VALUES for member in node["members"]
        ):
            return True
    return any(_nonfinite(value, refs) for key, value in node.items() if key not in _NOT_WALKED)


def _issues(exc: pydantic.ValidationError) -> list[Issue]:
    return [
        Issue([p for p in err["loc"] if isinstance(p, (str, int))], err["msg"])
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


class PydanticCodec(Generic[M]):
    """Validates a JSON object into ``model`` and dumps models to wire form.

    Inbound validation is strict (no type coercion; JSON-native conversions
    such as ISO strings to ``datetime`` still apply) unless the model's config
    sets ``strict=False``. With ``forbid_extra`` (the default) unknown
    top-level keys are rejected even if the model allows extras.
    """

    validator = VALIDATOR_NAME

    __slots__ = (
        "_allowed",
        "_check_nonfinite",
        "_dump",
        "_dump_json",
        "_strict",
        "_validate_json",
        "_validate_python",
        "field_names",
        "forbid_extra",
        "model",
    )

    def __init__(self, model: type[M], *, forbid_extra: bool = True) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise SchemaDefinitionError(f"expected a pydantic model class, got {model!r}")
        self.model = model
        self.forbid_extra = forbid_extra
        config = model.model_config
        strict_setting = config.get("strict")
        self._strict = True if strict_setting is None else bool(strict_setting)
        by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
        wire: set[str] = set()
        allowed: set[str] = set()
        for name, info in model.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else None
            alias = alias or info.alias or name
            wire.add(info.serialization_alias or info.alias or name)
            allowed.add(alias)
            if by_name or alias == name:
                allowed.add(name)
        self.field_names = frozenset(wire)
        # Unknown top-level keys are reported by us (the same way as wskit-attrs, and
        # for keys pydantic cannot read at all, such as lone surrogates); nested
        # models follow their own config.
        self._allowed: frozenset[str] | None = frozenset(allowed) if forbid_extra else None
        self._validate_python = model.__pydantic_validator__.validate_python
        self._validate_json = model.__pydantic_validator__.validate_json
        self._dump = model.__pydantic_serializer__.to_python
        self._dump_json = model.__pydantic_serializer__.to_json
        self._check_nonfinite = _may_write_nonfinite(model.__pydantic_core_schema__)

    def decode(self, data: Any) -> M:
        if type(data) is not dict:
            raise ValidationError("Validation failed", [Issue([], "Expected an object")])
        unknown: list[Issue] = []
        allowed = self._allowed
        if allowed is not None and not allowed.issuperset(data):
            unknown = [Issue([k], "Unrecognized key") for k in data if k not in allowed]
            data = {k: v for k, v in data.items() if k in allowed}
        try:
            result: M = self._validate_python(data, strict=self._strict)
            if not unknown:
                return result
        except pydantic.ValidationError as first:
            try:
                result = self._validate_again(data, first)
            except ValidationError as exc:
                raise ValidationError("Validation failed", [*unknown, *exc.issues]) from None
        if unknown:
            raise ValidationError("Validation failed", unknown)
        return result

    def _validate_again(self, data: dict[str, Any], first: pydantic.ValidationError) -> M:
        """After strict Python validation failed with ``first``: the strict JSON-mode
        retry where it applies, else ``first`` as a wskit ValidationError."""
        if not self._strict or any(e["type"] in _NO_JSON_RETRY for e in first.errors()):
            raise ValidationError("Validation failed", _issues(first)) from None
        # Strict Python mode refuses JSON-native forms (ISO datetimes, enum values,
        # arrays for tuples); strict JSON mode accepts exactly those and nothing looser.
        try:
            text = dumps(data)
        except (TypeError, ValueError, RecursionError):
            # Not JSON data: only the strict Python answer applies.
            raise ValidationError("Validation failed", _issues(first)) from None
        try:
            result: M = self._validate_json(text, strict=True)
            return result
        except pydantic.ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                # pydantic cannot re-read its own JSON form (a lone surrogate in a
                # string): the strict Python answer is the one to give.
                exc = first
            raise ValidationError("Validation failed", _issues(exc)) from None

    def encode(self, value: Any, *, validate: bool) -> Any:
        if type(value) is not dict:  # a plain dict from a handler is the common case
            model = self.model
            if isinstance(value, model):
                return self._to_wire(value)
            if isinstance(value, BaseModel):
                raise ValidationError(
                    "Outbound validation failed",
                    [Issue([], f"Expected {model.__name__}, got {type(value).__name__}")],
                )
            if not isinstance(value, Mapping):
                raise ValidationError(
                    "Outbound validation failed", [Issue([], "Expected an object or a model")]
                )
            value = dict(value)
        if not validate:
            return value
        try:
            obj = self._validate_python(value)
        except pydantic.ValidationError as exc:
            raise ValidationError("Outbound validation failed", _issues(exc)) from None
        try:  # (the common case inline: this runs for every message sent)
            return self._dump(obj, mode="json", by_alias=True)
        except ValueError:
            return self._to_wire(obj)

    def encode_json(self, value: Any) -> str:
        """``encode(value, validate=True)`` as JSON text, written by pydantic-core
        (about twice as fast as dumping the Python form with the stdlib)."""
        if type(value) is dict:
            try:
                obj = self._validate_python(value)
            except pydantic.ValidationError as exc:
                raise ValidationError("Outbound validation failed", _issues(exc)) from None
        elif isinstance(value, self.model):
            obj = value
        else:
            return dumps(self.encode(value, validate=True))
        try:
            text: str = self._dump_json(obj, by_alias=True).decode()
        except ValueError:  # a lone surrogate (pydantic-core cannot write it as UTF-8)
            return dumps(self._to_wire(obj))
        # (Searched in the str: `b"..." in some_bytes` first tries the needle as an
        # integer and raises and clears a TypeError, several times slower.)
        # A model given as is may hold anything (assignment is not validated); a
        # freshly validated one holds what its fields allow.
        checked = self._check_nonfinite or obj is value
        if checked and ("null" in text or "NaN" in text or "Infinity" in text):
            # pydantic writes NaN and infinities as null (or as constants or strings,
            # as the model's config says), where wskit refuses them: the Python form
            # through wskit's encoder decides. (Also taken for any null or such text
            # in a string: same answer, just slower.)
            return dumps(self._to_wire(obj))
        return text

    def _to_wire(self, obj: BaseModel) -> Any:
        try:
            return self._dump(obj, mode="json", by_alias=True)
        except ValueError:
            # pydantic's JSON mode cannot write some strings (a lone surrogate in a
            # dict key); the Python form is JSON already unless it holds datetimes
            # and the like, and wskit's encoder escapes the surrogates.
            return self._dump(obj, mode="python", by_alias=True)

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema(by_alias=True, mode="validation")
        if self.forbid_extra:
            schema.setdefault("additionalProperties", False)
        return schema


_QUICK_CONFIG = ConfigDict(
    extra="forbid",
    strict=True,
    alias_generator=to_camel,
    populate_by_name=True,
    frozen=False,
)


def _model_name(message_type: str, suffix: str) -> str:
    words = [w for w in re.split(r"[^0-9A-Za-z]+", message_type) if w]
    base = "".join(w[:1].upper() + w[1:].lower() for w in words) or "Message"
    if base[0].isdigit():
        base = "M" + base
    return base + suffix


def quick_model(message_type: str, fields: Mapping[str, Any], suffix: str) -> type[BaseModel]:
    """Build a strict model from ``{"name": type | (type, default) | Field}``;
    wire names are camelCase (``user_id`` ↔ ``userId``)."""
    definitions: dict[str, Any] = {}
    for name, spec in fields.items():
        if not name.isidentifier():
            raise SchemaDefinitionError(f"field name must be an identifier: {name!r}")
        if isinstance(spec, tuple) and len(spec) == 2:
            definitions[name] = spec
        elif isinstance(spec, FieldInfo):
            definitions[name] = (spec.annotation if spec.annotation is not None else Any, spec)
        else:
            definitions[name] = (spec, ...)
    name = _model_name(message_type, suffix)
    try:
        model: type[BaseModel] = pydantic.create_model(
            name, __config__=_QUICK_CONFIG, **definitions
        )
    except Exception as exc:
        raise _field_error(message_type, suffix, fields, definitions) or exc from exc
    return model


def _field_error(
    message_type: str, suffix: str, fields: Mapping[str, Any], definitions: dict[str, Any]
) -> SchemaDefinitionError | None:
    """Name the first quick-form field pydantic cannot build (one model per field)."""
    part = "meta" if suffix == "Meta" else "payload"
    for field, definition in definitions.items():
        try:
            pydantic.create_model("Probe", __config__=_QUICK_CONFIG, **{field: definition})
        except Exception as exc:
            reason = str(exc).split("\n", 1)[0].split(". ", 1)[0].rstrip(".")
            return SchemaDefinitionError(
                f"message {message_type!r}: {part} field {field!r} = {fields[field]!r} is not "
                f"a type pydantic can validate ({reason}). Give a type (str, int | None, "
                f"list[str], a BaseModel), a (type, default) pair or a pydantic Field(...)."
            )
    return None
