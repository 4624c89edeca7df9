"""The in-memory adapter: one process, exact subscriber counts (the default)."""

from __future__ import annotations

from collections.abc import Collection

from wskit.core.pubsub import PublishResult
from wskit.pubsub.adapter import PublishEnvelope

__all__ = ["MemoryPubSub"]

_EMPTY: frozenset[str] = frozenset()


class MemoryPubSub:
    """Keeps ``topic -> client ids`` in memory; the plugin delivers locally.

    ``publish`` never fails and reports ``capability="exact"`` with
    ``matched`` = subscribers minus the excluded sender. Empty topics are
    dropped, so memory follows the live subscriptions.
    """

    name = "memory"

    def __init__(self) -> None:
        self._topics: dict[str, set[str]] = {}
        self._client_topics: dict[str, set[str]] = {}

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        subs = self._topics.get(envelope.topic)
        if not subs:
            return PublishResult.success("exact", 0)
        matched = len(subs)
        if envelope.exclude_client_id is not None and envelope.exclude_client_id in subs:
            matched -= 1
        return PublishResult.success("exact", matched)

    async def subscribe(self, client_id: str, topic: str) -> None:
        subs = self._topics.get(topic)
        if subs is None:
            subs = self._topics[topic] = set()
        subs.add(client_id)
        self._client_topics.setdefault(client_id, set()).add(topic)

    async def unsubscribe(self, client_id: str, topic: str) -> None:
        subs = self._topics.get(topic)
        if subs is not None:
            subs.discard(client_id)
            if not subs:
                del self._topics[topic]
        mine = self._client_topics.get(client_id)
        if mine is not None:
            mine.discard(topic)
            if not mine:
                del self._client_topics[client_id]

    def subscribers(self, topic: str) -> Collection[str]:
        return self._topics.get(topic, _EMPTY)

    def topics(self) -> list[str]:
        """Topics with at least one subscriber."""
        return list(self._topics)

    def has_topic(self, topic: str) -> bool:
        return topic in self._topics

    def topics_of(self, client_id: str) -> frozenset[str]:
        """Topics one client is subscribed to."""
        return frozenset(self._client_topics.get(client_id, _EMPTY))

    def clear(self) -> None:
        """Forget every subscription."""
        self._topics.clear()
        self._client_topics.clear()
