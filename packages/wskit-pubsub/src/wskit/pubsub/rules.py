"""Topic rules: what a topic name may look like (by default 1-128 of ``a-z 0-9 : _ . / -``,
case-insensitive)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from wskit.pubsub.errors import PubSubError

__all__ = [
    "DEFAULT_TOPIC_MAX_LENGTH",
    "DEFAULT_TOPIC_PATTERN",
    "TopicRules",
]

#: ``a-z 0-9 : _ . / -``, 1 to 128 characters, case-insensitive. Conventions:
#: ``:`` namespaces (``room:42``), ``/`` hierarchy, ``.`` versions.
DEFAULT_TOPIC_PATTERN: Final = re.compile(r"^[a-z0-9:_./-]{1,128}$", re.IGNORECASE)
DEFAULT_TOPIC_MAX_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class TopicRules:
    """Validates topic names; raises ``PubSubError("INVALID_TOPIC")``.

    Checked in this order: a non-empty string (``reason="pattern"``), at most
    ``max_length`` characters (``reason="length"``), matching ``pattern``
    (``reason="pattern"``). ``pattern`` may be a string or compiled regex; it
    must match the whole topic (use ``fullmatch`` semantics or anchors).
    """

    pattern: re.Pattern[str] | str = DEFAULT_TOPIC_PATTERN
    max_length: int = DEFAULT_TOPIC_MAX_LENGTH

    def __post_init__(self) -> None:
        if isinstance(self.pattern, str):
            object.__setattr__(self, "pattern", re.compile(self.pattern))
        if self.max_length < 1:
            raise ValueError("max_length must be >= 1")

    def check(self, topic: object) -> str | None:
        """The reason ``topic`` is invalid (``"pattern"`` or ``"length"``), or ``None``."""
        if type(topic) is not str or not topic:
            return "pattern"
        if len(topic) > self.max_length:
            return "length"
        pattern = self.pattern
        assert isinstance(pattern, re.Pattern)
        if pattern.fullmatch(topic) is None:
            return "pattern"
        return None

    def validate(self, topic: object) -> str:
        """Return ``topic`` if valid, else raise ``PubSubError("INVALID_TOPIC")``."""
        reason = self.check(topic)
        if reason is None:
            return topic  # type: ignore[return-value]
        raise self.error(topic, reason)

    def error(self, topic: object, reason: str) -> PubSubError:
        if type(topic) is not str or not topic:
            return PubSubError(
                "INVALID_TOPIC", "Topic must be a non-empty string", {"reason": "pattern"}
            )
        if reason == "length":
            return PubSubError(
                "INVALID_TOPIC",
                f"Topic exceeds {self.max_length} characters",
                {"reason": "length", "length": len(topic), "max": self.max_length},
            )
        return PubSubError(
            "INVALID_TOPIC",
            "Topic format invalid (allowed: a-z0-9:_-/.)"
            if self.pattern is DEFAULT_TOPIC_PATTERN
            else "Topic format invalid",
            {"reason": "pattern", "topic": topic},
        )
