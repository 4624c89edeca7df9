"""Following a topic with history across reconnects (``client.follow``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from wskit.core.pubsub import StreamPosition, TopicStatus

if TYPE_CHECKING:
    from wskit.client._client import Client

__all__ = ["FollowState", "SubscribeFn", "TopicFollow"]

_log = logging.getLogger("wskit.client")

#: ``"pending"``: the subscribe request went out (or waits for the connection)
#: and the server has not answered with a status yet; then the last status
#: the server sent: ``"subscribed"``, ``"recovered"`` or ``"gap"``.
FollowState = Literal["pending", "subscribed", "recovered", "gap"]
#: ``subscribe(since)``: send the app's own subscribe message carrying ``since``
#: (``{"epoch": str, "offset": int}``, or ``None`` the first time). Sync or async.
SubscribeFn = Callable[[dict[str, Any] | None], Any]


class TopicFollow:
    """A topic with history the client follows: it remembers the position of
    the last message it got and, on every (re)connect, calls ``subscribe(since)``
    so the server replays what was missed.

    ``status`` and :meth:`on_status` tell "recovered" (nothing was lost) from
    "gap" (messages were lost for good: reload the state). Create with
    :meth:`wskit.client.Client.follow`.
    """

    __slots__ = (
        "_callbacks",
        "_client",
        "_subscribe",
        "last_status",
        "position",
        "reason",
        "status",
        "topic",
    )

    def __init__(
        self,
        client: Client,
        topic: str,
        subscribe: SubscribeFn,
        position: StreamPosition | None,
    ) -> None:
        self._client = client
        self.topic = topic
        self._subscribe = subscribe
        #: The position of the last message seen (or announced by a status):
        #: what the next resume asks for. Persist it to resume after a restart.
        self.position = position
        self.status: FollowState = "pending"
        #: Why the last ``"gap"`` happened (``"epoch"``, ``"trimmed"``, ...).
        self.reason: str | None = None
        #: The last status received (a ``gap`` detected from a message's epoch
        #: included), ``None`` before the first.
        self.last_status: TopicStatus | None = None
        self._callbacks: list[Callable[[TopicStatus], Any]] = []

    @property
    def since(self) -> dict[str, Any] | None:
        """``position`` in wire form (``{"epoch", "offset"}``), what ``subscribe`` gets."""
        return self.position.to_dict() if self.position is not None else None

    def on_status(self, callback: Callable[[TopicStatus], Any]) -> Callable[[], None]:
        """``callback(status)`` for every status of this topic (sync or async);
        returns an unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Stop following (nothing is sent: unsubscribe with your own message)."""
        self._client._unfollow(self)

    def __repr__(self) -> str:
        return f"<TopicFollow {self.topic!r} {self.status} at {self.position}>"

    # ------------------------------------------------------------ internals

    def _resubscribe(self) -> None:
        self.status = "pending"
        self._client._run_callback(self._subscribe, self.since, None)

    def _on_status(self, status: TopicStatus) -> None:
        if status.position is not None:
            self.position = status.position
        self.status = status.status  # type: ignore[assignment]  # never "unchanged" on the wire
        self.reason = status.reason
        self._emit(status)

    def _on_message(self, position: StreamPosition) -> bool:
        """Track a delivered message; ``False`` for one seen already (dropped)."""
        current = self.position
        if current is not None:
            if position.epoch != current.epoch:
                # A new epoch nobody announced: the history was lost.
                self.position = position
                self.status, self.reason = "gap", "epoch"
                self._emit(
                    TopicStatus(
                        self.topic,
                        "gap",
                        StreamPosition(position.epoch, position.offset - 1),
                        "epoch",
                    )
                )
                return True
            if position.offset <= current.offset:
                return False
        self.position = position
        return True

    def _emit(self, status: TopicStatus) -> None:
        self.last_status = status
        for callback in tuple(self._callbacks):
            self._client._run_callback(callback, status, None)


def parse_position(value: Any) -> tuple[str, StreamPosition]:
    """``meta.topicPosition`` as ``(topic, position)``; raises ``ValueError``."""
    if not isinstance(value, Mapping):
        raise ValueError("topicPosition must be an object")
    topic = value.get("topic")
    if type(topic) is not str or not topic:
        raise ValueError("topicPosition.topic must be a non-empty string")
    return topic, StreamPosition.parse(value)
