"""Topic history: which topics keep their recent messages, and how many.

History is opt-in per topic pattern::

    with_pubsub(history={
        "feed:*": HistoryPolicy(max_messages=1000),                    # glob pattern
        re.compile(r"room:\\d+"): HistoryPolicy(max_messages=200, max_age_ms=600_000),
    })

Every publish to such a topic gets the next offset in the topic's epoch, and
its frame carries ``meta.topicPosition``; a subscribe with ``since`` replays
what the client missed (see ``docs/history.md``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "HistoryPolicy",
    "HistoryRules",
    "HistorySpec",
]

#: ``HistoryPolicy()`` keeps this many messages per topic.
DEFAULT_HISTORY_SIZE: Final = 1000
# Topics whose policy lookup is remembered (beyond, the cache starts over).
_CACHE_SIZE: Final = 10_000


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a topic's recent history is kept.

    ``max_messages``: the newest N messages (default 1000; ``None``: no size
    bound). ``max_age_ms``: messages older than this are dropped (default
    ``None``: no age bound). At least one bound is required. A client whose
    position is older than what is kept gets a ``gap`` answer (``"trimmed"``).
    """

    max_messages: int | None = DEFAULT_HISTORY_SIZE
    max_age_ms: int | None = None

    def __post_init__(self) -> None:
        if self.max_messages is None and self.max_age_ms is None:
            raise ValueError("HistoryPolicy needs max_messages, max_age_ms or both")
        for name in ("max_messages", "max_age_ms"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"HistoryPolicy.{name} must be a positive integer (or None)")


#: What ``with_pubsub(history=...)`` accepts: patterns (glob strings such as
#: ``"feed:*"``, or compiled regexes that must match the whole topic) mapped
#: to a policy (first match wins, in mapping order), or a function
#: ``topic -> HistoryPolicy | None``.
HistorySpec: TypeAlias = (
    "Mapping[str | re.Pattern[str], HistoryPolicy] | Callable[[str], HistoryPolicy | None]"
)


class HistoryRules:
    """Resolves a (normalized) topic to its :class:`HistoryPolicy` or ``None``."""

    __slots__ = ("_cache", "_lookup", "_rules")

    def __init__(self, spec: HistorySpec) -> None:
        self._cache: dict[str, HistoryPolicy | None] = {}
        self._rules: list[tuple[re.Pattern[str], HistoryPolicy]] = []
        self._lookup: Callable[[str], HistoryPolicy | None] | None = None
        if callable(spec):
            self._lookup = spec
            return
        if not isinstance(spec, Mapping):
            raise TypeError("history must be a mapping of patterns to HistoryPolicy, or a function")
        for pattern, policy in spec.items():
            if not isinstance(policy, HistoryPolicy):
                raise TypeError(f"history[{pattern!r}] must be a HistoryPolicy, not {policy!r}")
            if isinstance(pattern, str):
                compiled = re.compile(fnmatch.translate(pattern))
            elif isinstance(pattern, re.Pattern):
                compiled = pattern
            else:
                raise TypeError(f"history pattern must be a str or re.Pattern, not {pattern!r}")
            self._rules.append((compiled, policy))

    def policy(self, topic: str) -> HistoryPolicy | None:
        """The policy of ``topic`` (``None``: no history)."""
        cache = self._cache
        try:
            return cache[topic]
        except KeyError:
            pass
        found: HistoryPolicy | None = None
        if self._lookup is not None:
            found = self._lookup(topic)
            if found is not None and not isinstance(found, HistoryPolicy):
                raise TypeError(f"history({topic!r}) must return a HistoryPolicy or None")
        else:
            for pattern, policy in self._rules:
                if pattern.fullmatch(topic) is not None:
                    found = policy
                    break
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[topic] = found
        return found
