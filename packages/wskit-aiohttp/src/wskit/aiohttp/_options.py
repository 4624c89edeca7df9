"""Validation of the handler's options at construction: a bad value fails at
once, with the option's name and the value, not later inside a connection."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from wskit.aiohttp._hosts import normalize_origin

__all__ = [
    "check_optional_timeout",
    "check_origins",
    "check_overflow",
    "check_sequence",
    "check_size",
    "check_timeout",
]


def check_size(name: str, value: Any) -> int | None:
    """A positive ``int`` (a count or a byte size) or ``None``."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def check_timeout(name: str, value: Any) -> float:
    """A positive, finite number of seconds."""
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        return float(value)
    raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def check_optional_timeout(name: str, value: Any) -> float | None:
    """A positive, finite number of seconds, or ``None`` (no limit)."""
    if value is None:
        return None
    try:
        return check_timeout(name, value)
    except ValueError:
        raise ValueError(
            f"{name} must be a positive number of seconds or None, got {value!r}"
        ) from None


def check_overflow(value: Any) -> Any:
    if value is None or value in ("close", "drop"):
        return value
    raise ValueError(f"overflow must be 'close', 'drop' or None, got {value!r}")


def check_sequence(name: str, value: Any) -> Sequence[Any]:
    """A list/tuple of entries (a lone string would be taken letter by letter)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


def check_origins(value: Sequence[str] | None) -> frozenset[str]:
    """``allowed_origins`` as normalized origins (``scheme://host[:port]``) or ``"*"``."""
    if value is None:
        return frozenset()
    origins: set[str] = set()
    for entry in check_sequence("allowed_origins", value):
        if entry == "*":
            origins.add(entry)
            continue
        normalized = normalize_origin(entry) if isinstance(entry, str) else None
        if normalized is None:
            hint = "expected scheme://host[:port], like 'https://app.example.com'"
            if isinstance(entry, str) and entry.strip().lower() == "null":
                hint = (
                    "browsers send 'null' from sandboxed frames and local files of any site; "
                    "use '*' to accept every origin"
                )
            raise ValueError(f"allowed_origins: invalid entry {entry!r}: {hint}")
        origins.add(normalized)
    return frozenset(origins)
