"""The pub/sub contract between the router and a pub/sub plugin.

Core only defines the types: :class:`PublishResult`, the :class:`Topics`
interface handlers see as ``ctx.topics``, and the :class:`PubSubProvider`
that a plugin (``wskit.pubsub.with_pubsub()``) installs on a router. The
implementation lives in the ``wskit-pubsub`` distribution.

It also holds what both ends of the topic-history protocol share (the server
plugin and ``wskit.client``): :class:`StreamPosition`, :class:`TopicStatus`,
the meta key :data:`TOPIC_POSITION` that positioned messages carry and the
system message :data:`TOPIC_STATUS` that tells a client where its stream
stands after a subscribe (and when it has a gap).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from wskit.core.connection import Connection
    from wskit.core.schema import MessageSchema

__all__ = [
    "PUBLISH_ERROR_RETRYABLE",
    "TOPIC_POSITION",
    "TOPIC_STATUS",
    "GapReason",
    "PubSubProvider",
    "PublishCapability",
    "PublishRecord",
    "PublishResult",
    "ReadonlyTopics",
    "StreamPosition",
    "TopicStatus",
    "TopicStatusKind",
    "Topics",
]

#: Meta key of a message published on a topic with history:
#: ``{"topic": str, "epoch": str, "offset": int}`` (server to client only).
TOPIC_POSITION: Final = "topicPosition"
#: System message (server to client) announcing where a subscription's stream
#: stands: ``{"topic", "status", "epoch", "offset", "reason"?}`` as its payload.
TOPIC_STATUS: Final = "$ws:topic-status"

#: ``"subscribed"``: no position was given, the stream starts after ``offset``;
#: ``"recovered"``: the messages after the given position follow, then live ones;
#: ``"gap"``: the given position cannot be recovered (see :data:`GapReason`), or
#: the stream lost continuity; it goes on after ``offset``; ``"unchanged"``
#: (server side only): the connection was subscribed already, nothing was done.
TopicStatusKind = Literal["subscribed", "recovered", "gap", "unchanged"]
#: Why a position cannot be recovered: ``"epoch"`` (the history it belongs to
#: is gone: a restart without persistence, an expired topic), ``"trimmed"``
#: (older than the history keeps), ``"ahead"`` (past the newest offset: never
#: issued here), ``"unavailable"`` (the history could not be read).
GapReason = Literal["epoch", "trimmed", "ahead", "unavailable"]

_STATUS_KINDS: Final = frozenset({"subscribed", "recovered", "gap"})
_MAX_EPOCH_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a topic's history: ``offset`` within ``epoch``.

    Offsets start at 1 and grow by one per publish within an epoch; a new epoch
    starts (at offset 1) when the history was lost. ``offset`` 0 means "before
    the first message". Wire form: ``{"epoch": str, "offset": int}``.
    """

    epoch: str
    offset: int

    def to_dict(self) -> dict[str, Any]:
        """The wire form ``{"epoch", "offset"}``."""
        return {"epoch": self.epoch, "offset": self.offset}

    @classmethod
    def parse(cls, value: object) -> StreamPosition:
        """A position from its wire form (a mapping), an object with ``epoch`` and
        ``offset`` attributes (a validated model) or a :class:`StreamPosition`.

        Raises ``ValueError`` unless ``epoch`` is a non-empty string of at most 64
        characters and ``offset`` an integer >= 0.
        """
        if isinstance(value, StreamPosition):
            return value
        if isinstance(value, Mapping):
            epoch, offset = value.get("epoch"), value.get("offset")
        else:
            epoch, offset = getattr(value, "epoch", None), getattr(value, "offset", None)
        if type(epoch) is not str or not 0 < len(epoch) <= _MAX_EPOCH_LENGTH:
            raise ValueError("position: 'epoch' must be a non-empty string (at most 64 characters)")
        if type(offset) is not int or offset < 0:
            raise ValueError("position: 'offset' must be an integer >= 0")
        return cls(epoch, offset)


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """Where one subscription's stream stands (see :data:`TopicStatusKind`).

    On the wire (:data:`TOPIC_STATUS`), ``position`` is where the stream goes
    on from: every later message of the topic has a higher offset in that
    epoch. As the result of ``ctx.topics.subscribe()``, it is the position the
    connection reached once the replay (``replayed`` messages) was queued.
    ``position`` is ``None`` for topics without history.
    """

    topic: str
    status: TopicStatusKind
    position: StreamPosition | None = None
    reason: GapReason | None = None
    replayed: int = 0

    @property
    def recovered(self) -> bool:
        """Nothing was missed: the given position was recovered."""
        return self.status == "recovered"

    @property
    def gap(self) -> bool:
        """Messages were missed and cannot be replayed: reload the state."""
        return self.status == "gap"

    def to_payload(self) -> dict[str, Any]:
        """The :data:`TOPIC_STATUS` payload."""
        out: dict[str, Any] = {"topic": self.topic, "status": self.status}
        if self.position is not None:
            out["epoch"] = self.position.epoch
            out["offset"] = self.position.offset
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_payload(cls, payload: object) -> TopicStatus:
        """Parse a :data:`TOPIC_STATUS` payload; raises ``ValueError``."""
        if not isinstance(payload, Mapping):
            raise ValueError("topic status: payload must be an object")
        topic, status, reason = payload.get("topic"), payload.get("status"), payload.get("reason")
        if type(topic) is not str or not topic:
            raise ValueError("topic status: 'topic' must be a non-empty string")
        if status not in _STATUS_KINDS:
            raise ValueError("topic status: 'status' must be subscribed, recovered or gap")
        if reason is not None and type(reason) is not str:
            raise ValueError("topic status: 'reason' must be a string")
        position = StreamPosition.parse(payload) if "epoch" in payload else None
        return cls(topic, status, position, reason)  # type: ignore[arg-type]


PublishCapability = Literal["exact", "estimate", "unknown"]

#: Whether each publish error code is worth retrying.
PUBLISH_ERROR_RETRYABLE: Final[Mapping[str, bool]] = {
    "VALIDATION": False,
    "ACL_PUBLISH": False,
    "STATE": False,
    "PAYLOAD_TOO_LARGE": False,
    "UNSUPPORTED": False,
    "BACKPRESSURE": True,
    "CONNECTION_CLOSED": True,
    "ADAPTER_ERROR": True,
}


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Outcome of a publish; publish never raises for runtime conditions.

    Success: ``ok=True``, ``capability`` says how exact ``matched`` is
    (``matched`` is ``None`` when the capability is ``"unknown"``).
    Failure: ``ok=False``, ``error`` is a code such as ``"VALIDATION"`` or
    ``"ADAPTER_ERROR"``, ``retryable`` says whether trying again may help.
    On a topic with history, ``position`` is the message's place in it.
    """

    ok: bool
    capability: PublishCapability | None = None
    matched: int | None = None
    error: str | None = None
    retryable: bool = False
    adapter: str | None = None
    details: Mapping[str, Any] | None = None
    #: Where the message went in the topic's history (topics with history only).
    position: StreamPosition | None = None

    @classmethod
    def success(
        cls,
        capability: PublishCapability,
        matched: int | None = None,
        *,
        position: StreamPosition | None = None,
    ) -> PublishResult:
        return cls(
            True, capability, None if capability == "unknown" else matched, position=position
        )

    @classmethod
    def failure(
        cls,
        error: str,
        *,
        retryable: bool | None = None,
        adapter: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        if retryable is None:
            retryable = PUBLISH_ERROR_RETRYABLE.get(error, False)
        return cls(False, None, None, error, retryable, adapter, details)


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """One publish as observers (the test harness, metrics) see it."""

    topic: str
    type: str
    payload: Any
    meta: Mapping[str, Any]
    result: PublishResult
    sender: str | None = None


class ReadonlyTopics(Protocol):
    """A read-only view of one connection's subscriptions."""

    def has(self, topic: str) -> bool: ...

    def __contains__(self, topic: object) -> bool: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[str]: ...


class Topics(ReadonlyTopics, Protocol):
    """One connection's subscriptions (``ctx.topics``); mutations are async.

    ``subscribe(topic, since=position)`` on a topic with history replays what
    the client missed after ``position`` (see :class:`TopicStatus`).
    """

    async def subscribe(self, topic: str, *, since: object = None) -> TopicStatus: ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def subscribe_many(self, topics: Iterable[str]) -> Mapping[str, int]: ...

    async def unsubscribe_many(self, topics: Iterable[str]) -> Mapping[str, int]: ...

    async def set(self, topics: Iterable[str]) -> Mapping[str, int]: ...

    async def clear(self) -> Mapping[str, int]: ...


class PubSubProvider(Protocol):
    """What a pub/sub plugin installs on the router (``router.pubsub``)."""

    def topics(self, connection: Connection[Any]) -> Topics: ...

    def readonly_topics(self, connection: Connection[Any]) -> ReadonlyTopics: ...

    async def publish(
        self,
        topic: str,
        schema: MessageSchema[Any],
        payload: Any,
        *,
        sender: Connection[Any] | None = None,
        exclude_self: bool = False,
        partition_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult: ...

    async def connection_opened(self, connection: Connection[Any]) -> None: ...

    async def connection_closed(self, connection: Connection[Any]) -> None: ...
