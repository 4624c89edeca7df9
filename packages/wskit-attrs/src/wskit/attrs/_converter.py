"""The strict cattrs converter behind every attrs codec.

cattrs' stock converter is lenient: ``int("5")`` structures a string into an
integer, any iterable (even ``"abc"``) becomes a list, ``True`` passes as
``1``. wskit's wire is strict (a value must already have its JSON type, and
unknown keys are refused), so this module registers hooks that
accept exactly the JSON forms of each type and nothing looser, and lets cattrs'
generated attrs-class functions do the rest (unknown keys forbidden,
detailed validation, per-field renames).

Wire names of attrs fields come from field metadata (``WIRE_NAME``) or from
cattrs overrides (``cattrs.override(rename=...)``) registered on a converter.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

__all__ = [
    "WIRE_NAME",
    "InvalidValue",
    "make_converter",
    "register_wire_names",
    "wire_names",
]

#: Field metadata key naming a field's wire (JSON) name:
#: ``user_id: str = attrs.field(metadata={WIRE_NAME: "userId"})``.
WIRE_NAME: Final = "wskit.wire_name"

_NoneType: Final = type(None)


class InvalidValue(ValueError):
    """A value does not have the JSON form its type requires."""


def _subclass(value: Any, t: Any) -> Any:
    """A subclass of a primitive reached its base's hook (singledispatch)."""
    if isinstance(t, type) and issubclass(t, enum.Enum):
        hook = _ENUM_HOOKS.get(t)
        if hook is None:
            hook = _ENUM_HOOKS[t] = _enum_factory(t, None)
        return hook(value, t)
    raise InvalidValue(f"Input should be a valid {getattr(t, '__name__', t)}")


_ENUM_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {}


def _structure_str(value: Any, t: Any) -> str:
    if t is not str:
        result: str = _subclass(value, t)
        return result
    if value.__class__ is not str:
        raise InvalidValue("Input should be a valid string")
    return value


def _structure_int(value: Any, t: Any) -> int:
    if t is not int:
        result: int = _subclass(value, t)
        return result
    if value.__class__ is not int:
        raise InvalidValue("Input should be a valid integer")
    return value


def _structure_float(value: Any, t: Any) -> float:
    if t is not float:
        result: float = _subclass(value, t)
        return result
    cls = value.__class__
    if cls is float:
        return value  # type: ignore[no-any-return]
    if cls is int:
        return float(value)
    raise InvalidValue("Input should be a valid number")


def _structure_bool(value: Any, _: Any) -> bool:
    if value.__class__ is not bool:
        raise InvalidValue("Input should be a valid boolean")
    return value


def _structure_none(value: Any, _: Any) -> None:
    if value is not None:
        raise InvalidValue("Input should be null")


def _structure_any(value: Any, _: Any) -> Any:
    return value


def _parse_iso(value: Any, parse: Callable[[str], Any], what: str) -> Any:
    if value.__class__ is not str:
        raise InvalidValue(f"Input should be a valid {what} string")
    text: str = value
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return parse(text)
    except ValueError:
        raise InvalidValue(f"Input should be a valid {what} string") from None


def _structure_datetime(value: Any, _: Any) -> dt.datetime:
    result: dt.datetime = _parse_iso(value, dt.datetime.fromisoformat, "ISO 8601 datetime")
    return result


def _structure_date(value: Any, t: Any) -> dt.date:
    if t is not dt.date:
        raise InvalidValue(f"Input should be a valid {getattr(t, '__name__', t)}")
    result: dt.date = _parse_iso(value, dt.date.fromisoformat, "ISO 8601 date")
    return result


def _structure_uuid(value: Any, _: Any) -> uuid.UUID:
    if value.__class__ is not str:
        raise InvalidValue("Input should be a valid UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidValue("Input should be a valid UUID string") from None


def _describe(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def _choices(values: list[Any]) -> str:
    shown = [_describe(v) for v in values]
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " or " + shown[-1]


# ------------------------------------------------------------- hook factories

_LIST_ORIGINS: Final = frozenset(
    {list, cabc.Sequence, cabc.MutableSequence, typing.List, typing.Sequence}  # noqa: UP006
)
_SET_ORIGINS: Final = frozenset({set, frozenset, cabc.Set, cabc.MutableSet})
_DICT_ORIGINS: Final = frozenset({dict, cabc.Mapping, cabc.MutableMapping})


def _origin(t: Any) -> Any:
    return get_origin(t) or t


def _is_union(t: Any) -> bool:
    origin = get_origin(t)
    return origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType)


def _is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def _is_list(t: Any) -> bool:
    return _origin(t) in _LIST_ORIGINS


def _is_set(t: Any) -> bool:
    return _origin(t) in _SET_ORIGINS


def _is_tuple(t: Any) -> bool:
    return _origin(t) in (tuple, typing.Tuple)  # noqa: UP006


def _is_dict(t: Any) -> bool:
    return _origin(t) in _DICT_ORIGINS


def _element(converter: cattrs.Converter, t: Any) -> tuple[Any, Callable[[Any, Any], Any]]:
    return t, converter.get_structure_hook(t)


def _note(exc: Exception, index: int | str, t: Any) -> Exception:
    note = IterableValidationNote(f"Structuring @ index {index!r}", index, t)
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]
    return exc


def _list_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = get_args(t)
    et, eh = _element(converter, args[0] if args else Any)
    into_set = _is_set(t)
    frozen = _origin(t) is frozenset
    message = "Input should be a valid array"

    def structure(value: Any, _: Any) -> Any:
        if value.__class__ is not list:
            raise InvalidValue(message)
        out = []
        errors: list[Exception] = []
        for i, item in enumerate(value):
            try:
                out.append(eh(item, et))
            except Exception as exc:
                errors.append(_note(exc, i, et))
        if errors:
            raise IterableValidationError("While structuring an array", errors, t)
        if into_set:
            return frozenset(out) if frozen else set(out)
        return out

    return structure


def _tuple_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = get_args(t)
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        homogeneous = _list_factory(types.GenericAlias(list, args[:1]) if args else list, converter)

        def structure_var(value: Any, _: Any) -> Any:
            return tuple(homogeneous(value, _))

        return structure_var
    if args == ((),):  # tuple[()]
        args = ()
    hooks = [_element(converter, a) for a in args]
    size = len(hooks)

    def structure(value: Any, _: Any) -> Any:
        if value.__class__ is not list:
            raise InvalidValue("Input should be a valid array")
        if len(value) != size:
            raise InvalidValue(f"Input should be an array of {size} items")
        out = []
        errors: list[Exception] = []
        for i, ((et, eh), item) in enumerate(zip(hooks, value, strict=True)):
            try:
                out.append(eh(item, et))
            except Exception as exc:
                errors.append(_note(exc, i, et))
        if errors:
            raise IterableValidationError("While structuring a tuple", errors, t)
        return tuple(out)

    return structure


def _dict_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = get_args(t)
    kt = args[0] if args else Any
    vt, vh = _element(converter, args[1] if len(args) > 1 else Any)
    kh = None if kt in (str, Any) else converter.get_structure_hook(kt)

    def structure(value: Any, _: Any) -> Any:
        if value.__class__ is not dict:
            raise InvalidValue("Input should be an object")
        out = {}
        errors: list[Exception] = []
        for key, item in value.items():
            try:
                k = key if kh is None else kh(key, kt)
                out[k] = vh(item, vt)
            except Exception as exc:
                errors.append(_note(exc, key, vt))
        if errors:
            raise IterableValidationError("While structuring an object", errors, t)
        return out

    return structure


_PRIMITIVES: Final = frozenset({str, int, float, bool, _NoneType})


def _union_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    members = get_args(t)
    exact = frozenset(m for m in members if m in _PRIMITIVES)
    hooks = [(m, converter.get_structure_hook(m)) for m in members if m is not _NoneType]
    nullable = _NoneType in members
    names = " or ".join(
        "null" if m is _NoneType else getattr(m, "__name__", None) or repr(m) for m in members
    )

    def structure(value: Any, _: Any) -> Any:
        if value.__class__ in exact:  # exact JSON type match first (smart union)
            return value
        if value is None and nullable:
            return None
        errors: list[Exception] = []
        for m, hook in hooks:
            try:
                return hook(value, m)
            except Exception as exc:
                errors.append(exc)
        if len(errors) == 1:  # Optional[X]: report X's own (possibly nested) errors
            raise errors[0]
        raise InvalidValue(f"Input should be {names}")

    return structure


def _literal_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    values = list(get_args(t))
    plain = [v.value if isinstance(v, enum.Enum) else v for v in values]
    allowed = {(type(p), p): v for p, v in zip(plain, values, strict=True)}
    message = f"Input should be {_choices(values)}"

    def structure(value: Any, _: Any) -> Any:
        try:
            return allowed[(value.__class__, value)]
        except (KeyError, TypeError):
            raise InvalidValue(message) from None

    return structure


def _enum_factory(t: Any, converter: cattrs.Converter | None) -> Callable[[Any, Any], Any]:
    members = list(t)
    by_value = {(type(m.value), m.value): m for m in members}
    message = f"Input should be {_choices(members)}"

    def structure(value: Any, _: Any) -> Any:
        try:
            return by_value[(value.__class__, value)]
        except (KeyError, TypeError):
            raise InvalidValue(message) from None

    return structure


def _metadata_overrides(cl: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in attrs.fields(cl):
        name = a.metadata.get(WIRE_NAME)
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"{cl.__name__}.{a.name}: metadata {WIRE_NAME} must be a str")
            out[a.name] = override(rename=name)
    return out


def _attrs_structure_factory(cl: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = make_dict_structure_fn(cl, converter, **_metadata_overrides(_origin(cl)))
    return _object_guard(inner)


def _object_guard(inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Reject non-objects before cattrs' generated function indexes into them."""

    def structure(value: Any, t: Any) -> Any:
        if value.__class__ is not dict:
            raise InvalidValue("Input should be an object")
        return inner(value, t)

    structure.overrides = getattr(inner, "overrides", {})  # type: ignore[attr-defined]
    structure.__wrapped__ = inner  # type: ignore[attr-defined]
    return structure


def _attrs_unstructure_factory(cl: Any, converter: cattrs.Converter) -> Callable[[Any], Any]:
    return make_dict_unstructure_fn(cl, converter, **_metadata_overrides(_origin(cl)))


def _array_unstructure_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any], Any]:
    """Tuples and sets are JSON arrays; items are unstructured by their runtime type."""
    unstructure = converter.unstructure

    def unstructure_array(value: Any) -> Any:
        return [unstructure(item) for item in value]

    return unstructure_array


def _is_array_class(t: Any) -> bool:
    return (
        (isinstance(t, type) and issubclass(t, (set, frozenset, tuple)))
        or _is_set(t)
        or (_is_tuple(t))
    )


def make_converter() -> cattrs.Converter:
    """A new strict converter, as every attrs codec uses.

    - unknown keys are rejected in every attrs class (``forbid_extra_keys``);
    - no coercion: ``"5"`` is not an ``int``, ``True`` is not an ``int``, a
      string is not a list; ``float`` accepts JSON integers;
    - arrays for ``list``/``tuple``/``set``, objects for ``dict`` and attrs
      classes; ``Literal`` and ``Enum`` compare by value *and* JSON type;
      ``datetime``/``date``/``UUID`` from their ISO/canonical strings;
    - wire names from ``WIRE_NAME`` field metadata.

    Register cattrs overrides on it (or use :func:`register_wire_names`) and
    pass it as ``converter=`` to ``message()``/``rpc()``.
    """
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    # Later registrations win in cattrs' dispatch, so these replace its lenient defaults.
    conv.register_structure_hook_factory(attrs.has, _attrs_structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, _attrs_unstructure_factory)
    conv.register_structure_hook_factory(_is_list, _list_factory)
    conv.register_structure_hook_factory(_is_set, _list_factory)
    conv.register_structure_hook_factory(_is_tuple, _tuple_factory)
    conv.register_structure_hook_factory(_is_dict, _dict_factory)
    conv.register_structure_hook_factory(_is_literal, _literal_factory)
    conv.register_structure_hook_factory(_is_union, _union_factory)
    for t, hook in (
        (str, _structure_str),
        (int, _structure_int),
        (float, _structure_float),
        (bool, _structure_bool),
        (_NoneType, _structure_none),
        (dt.datetime, _structure_datetime),
        (dt.date, _structure_date),
        (uuid.UUID, _structure_uuid),
        # Enums: via singledispatch as well (older cattrs register Enum there).
        (enum.Enum, _subclass),
    ):
        # cattrs consults singledispatch first, so these replace its lenient
        # defaults; subclasses (IntEnum, StrEnum, `class E(str, Enum)`) reach the
        # same hooks and are sent on to the enum hook from there.
        conv.register_structure_hook(t, hook)
    conv.register_structure_hook_func(lambda t: t is Any or t is object, _structure_any)
    conv.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
    conv.register_unstructure_hook(dt.date, lambda v: v.isoformat())
    conv.register_unstructure_hook(uuid.UUID, str)
    conv.register_unstructure_hook_factory(_is_array_class, _array_unstructure_factory)
    return conv


def register_wire_names(converter: cattrs.Converter, cl: type, **names: str) -> None:
    """Rename fields of ``cl`` on the wire, for this converter only (both ways).

    ``register_wire_names(conv, JoinRoom, room_id="roomId")`` is shorthand for
    registering cattrs ``override(rename=...)`` structure and unstructure hooks;
    field metadata (``WIRE_NAME``) of the other fields still applies.
    """
    fields = attrs.fields_dict(cl)
    unknown = sorted(set(names) - set(fields))
    if unknown:
        raise ValueError(f"{cl.__name__} has no field(s): {', '.join(unknown)}")
    overrides = _metadata_overrides(cl)
    overrides.update({k: override(rename=v) for k, v in names.items()})
    converter.register_structure_hook(
        cl, _object_guard(make_dict_structure_fn(cl, converter, **overrides))
    )
    converter.register_unstructure_hook(cl, make_dict_unstructure_fn(cl, converter, **overrides))


def wire_names(converter: cattrs.Converter, cl: type) -> dict[str, str]:
    """Python attribute name -> wire name for ``cl`` under ``converter``.

    Read from the overrides cattrs attaches to its generated structure function
    (so both metadata and user-registered ``override(rename=...)`` count).
    """
    hook = converter.get_structure_hook(cl)
    overrides: Mapping[str, Any] = getattr(hook, "overrides", None) or {}
    out: dict[str, str] = {}
    for a in attrs.fields(_origin(cl)):
        ov = overrides.get(a.name)
        rename = getattr(ov, "rename", None)
        omit = getattr(ov, "omit", None)
        if omit or (omit is None and not a.init):
            continue
        out[a.name] = rename if isinstance(rename, str) else a.name
    return out
