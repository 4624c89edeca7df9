"""Turn cattrs' structuring exceptions into wskit issues ``{path, message}``.

cattrs (with detailed validation) raises exception groups: a
``ClassValidationError`` whose members carry an ``AttributeValidationNote``
(the failing attribute), an ``IterableValidationError`` whose members carry an
``IterableValidationNote`` (the index or key), a ``ForbiddenExtraKeysError``
for unknown keys, and, when every field structured but the class constructor
raised (an attrs validator, ``__attrs_post_init__``), that exception without a
note. Paths are built from wire names; constructor failures are traced back to
the field whose validator failed by re-running the validators one by one.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from wskit.attrs._converter import wire_names
from wskit.core.errors import Issue

__all__ = ["issues_from"]

Path = list[str | int]


def _message(exc: BaseException) -> str:
    args = exc.args
    # attrs' own validators raise (message, attribute, ...) tuples.
    if len(args) > 1 and isinstance(args[0], str) and isinstance(args[1], attrs.Attribute):
        return args[0]
    if isinstance(exc, KeyError):
        return "Field required"
    return str(exc) or type(exc).__name__


def issues_from(
    exc: BaseException, data: Any, converter: cattrs.Converter, path: Path | None = None
) -> list[Issue]:
    """Issues for ``exc`` raised while structuring ``data`` (paths relative to it)."""
    out: list[Issue] = []
    _walk(exc, data, converter, list(path or []), out)
    return out


def _walk(
    exc: BaseException, data: Any, converter: cattrs.Converter, path: Path, out: list[Issue]
) -> None:
    if isinstance(exc, ClassValidationError):
        _walk_class(exc, data, converter, path, out)
    elif isinstance(exc, IterableValidationError):
        for sub, note in _with_notes(exc, IterableValidationNote):
            index = note.index
            item = _child(data, index)
            _walk(sub, item, converter, [*path, index], out)
        for sub in _without_notes(exc, IterableValidationNote):
            out.append(Issue(path, _message(sub)))
    else:
        out.append(Issue(path, _message(exc)))


def _with_notes(exc: Any, kind: type) -> list[tuple[BaseException, Any]]:
    pairs = []
    for sub in exc.exceptions:
        for note in getattr(sub, "__notes__", ()):
            if note.__class__ is kind:
                pairs.append((sub, note))
                break
    return pairs


def _without_notes(exc: Any, kind: type) -> list[BaseException]:
    return [
        sub
        for sub in exc.exceptions
        if not any(n.__class__ is kind for n in getattr(sub, "__notes__", ()))
    ]


def _child(data: Any, key: str | int) -> Any:
    try:
        return data[key]
    except (KeyError, IndexError, TypeError):
        return None


def _walk_class(
    exc: ClassValidationError,
    data: Any,
    converter: cattrs.Converter,
    path: Path,
    out: list[Issue],
) -> None:
    cl = exc.cl
    try:
        names = wire_names(converter, cl)
    except Exception:
        names = {}
    failed: set[str] = set()
    constructor: BaseException | None = None
    for sub, note in _with_notes(exc, AttributeValidationNote):
        failed.add(note.name)
        key = names.get(note.name, note.name)
        if isinstance(sub, KeyError) and isinstance(data, dict) and key not in data:
            out.append(Issue([*path, key], "Field required"))
            continue
        _walk(sub, _child(data, key), converter, [*path, key], out)
    for sub in _without_notes(exc, AttributeValidationNote):
        if isinstance(sub, ForbiddenExtraKeysError):
            extra = sub.extra_fields
            keys = [k for k in data if k in extra] if isinstance(data, dict) else sorted(extra)
            out.extend(Issue([*path, k], "Unrecognized key") for k in keys)
        else:
            constructor = sub
    if constructor is not None:
        # Every field structured but cl(**fields) raised.
        out.extend(
            _validator_issues(cl, data, converter, path, names, set())
            or [Issue(path, _message(constructor))]
        )
    elif failed:
        # cattrs stops before the constructor; still report the validators of
        # the fields that did structure (as pydantic reports every field).
        out.extend(_validator_issues(cl, data, converter, path, names, failed))


def _validator_issues(
    cl: type,
    data: Any,
    converter: cattrs.Converter,
    path: Path,
    names: dict[str, str],
    skip: set[str],
) -> list[Issue]:
    """Run the attrs validators of ``cl``'s fields one by one; an issue per failure.

    The instance is built without ``__init__`` from the structured fields (all
    but ``skip``, which failed to structure), so every failing field is
    reported at its own path. Used only once structuring has already failed.
    """
    if not (attrs.has(cl) and isinstance(data, dict)):
        return []
    issues: list[Issue] = []
    try:
        fields = attrs.fields(cl)
        instance = object.__new__(cl)
        values: dict[str, Any] = {}
        for a in fields:
            if a.name in skip:
                continue
            key = names.get(a.name)
            if key is not None and key in data:
                value = converter.structure(data[key], a.type) if a.type is not None else data[key]
                if a.converter is not None and callable(a.converter):
                    value = a.converter(value)
            elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
                factory: Any = a.default
                value = factory.factory(instance) if factory.takes_self else factory.factory()
            elif a.default is not attrs.NOTHING:
                value = a.default
            else:
                continue
            values[a.name] = value
            object.__setattr__(instance, a.name, value)
    except Exception:
        return []
    for a in fields:
        if a.validator is None or a.name not in values:
            continue
        try:
            a.validator(instance, a, values[a.name])
        except Exception as err:
            if skip and isinstance(err, AttributeError):
                continue  # it reads a field that failed to structure: nothing to add
            issues.append(Issue([*path, names.get(a.name, a.name)], _message(err)))
    return issues
