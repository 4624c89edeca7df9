"""The in-memory adapter: one process, exact subscriber counts (the default)."""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection

from wskit.core.pubsub import PublishResult, StreamPosition
from wskit.pubsub.adapter import HistoryPage, PublishEnvelope
from wskit.pubsub.history import HistoryPolicy

__all__ = ["MemoryPubSub"]

_EMPTY: frozenset[str] = frozenset()


def _wall_ms() -> float:
    return time.time() * 1000.0


class _History:
    """One topic's history: its epoch, last offset and kept entries."""

    __slots__ = ("entries", "epoch", "top")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.top = 0
        # (offset, time in ms, positioned envelope), oldest first; offsets contiguous.
        self.entries: deque[tuple[int, float, PublishEnvelope]] = deque()

    def trim(self, policy: HistoryPolicy, now: float, *, size: bool = True) -> None:
        entries = self.entries
        if size and policy.max_messages is not None:
            while len(entries) > policy.max_messages:
                entries.popleft()
        if policy.max_age_ms is not None:
            cutoff = now - policy.max_age_ms
            while entries and entries[0][1] < cutoff:
                entries.popleft()

    @property
    def first(self) -> int:
        return self.entries[0][0] if self.entries else self.top + 1


class MemoryPubSub:
    """Keeps ``topic -> client ids`` in memory; the plugin delivers locally.

    ``publish`` never fails and reports ``capability="exact"`` with
    ``matched`` = subscribers minus the excluded sender. Empty topics are
    dropped, so memory follows the live subscriptions.

    Topic history (``with_pubsub(history=...)``) is kept in this process:
    each topic with history gets a random epoch when it is first used, so a
    restarted process answers every old position with a gap (``"epoch"``).
    ``clock`` (milliseconds) ages entries for ``max_age_ms``; tests inject one.
    """

    name = "memory"

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._topics: dict[str, set[str]] = {}
        self._client_topics: dict[str, set[str]] = {}
        self._history: dict[str, _History] = {}
        self._clock = clock or _wall_ms
        # Epochs: a random prefix per adapter plus a counter (unique, cheap).
        self._epoch_prefix = secrets.token_hex(4)
        self._epochs = itertools.count(1)

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        position: StreamPosition | None = None
        policy = envelope.history
        if policy is not None:
            history = self._topic_history(envelope.topic)
            position = StreamPosition(history.epoch, history.top + 1)
            positioned = envelope.at(position)
            _ = positioned.frame  # serialize now: an unserializable message takes no offset
            now = self._clock()
            history.top = position.offset
            history.entries.append((position.offset, now, positioned))
            history.trim(policy, now)
        subs = self._topics.get(envelope.topic)
        if not subs:
            return PublishResult.success("exact", 0, position=position)
        matched = len(subs)
        if envelope.exclude_client_id is not None and envelope.exclude_client_id in subs:
            matched -= 1
        return PublishResult.success("exact", matched, position=position)

    async def read_history(
        self,
        topic: str,
        since: StreamPosition | None,
        *,
        limit: int,
        policy: HistoryPolicy,
    ) -> HistoryPage:
        history = self._topic_history(topic)
        history.trim(policy, self._clock(), size=False)  # the size is kept by publish
        first = history.first
        entries: list[PublishEnvelope] = []
        if since is not None and since.epoch == history.epoch and since.offset < history.top:
            start = max(0, since.offset + 1 - first)
            entries = [e for _, _, e in itertools.islice(history.entries, start, start + limit)]
        return HistoryPage(history.epoch, history.top, first, entries)

    def _topic_history(self, topic: str) -> _History:
        history = self._history.get(topic)
        if history is None:
            epoch = f"{self._epoch_prefix}{next(self._epochs):x}"
            history = self._history[topic] = _History(epoch)
        return history

    def forget_history(self, topic: str | None = None) -> None:
        """Drop the history of ``topic`` (or of every topic): the next use starts
        a new epoch, as after a restart."""
        if topic is None:
            self._history.clear()
        else:
            self._history.pop(topic, None)

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
