"""The adapter protocol: how the pub/sub plugin talks to a message backend.

The plugin (:func:`wskit.pubsub.with_pubsub`) owns connections, topic rules,
policy and serialization; an adapter owns *where messages go* and *which local
clients listen to which topic*. Two kinds exist:

**Local adapters** (:class:`PubSubAdapter`, e.g. :class:`~wskit.pubsub.MemoryPubSub`)
have no ``start`` method. After ``publish()`` returns ``ok``, the plugin
delivers the envelope to the local subscribers itself.

**Distributed adapters** (:class:`DistributedPubSubAdapter`, e.g. the Redis
adapter) also implement ``start(deliver)`` and ``close()``. ``publish()`` only
hands the envelope to the broker; the plugin does **not** deliver locally.
Instead, every instance (the publishing one included) receives each envelope
from the broker and calls ``deliver(envelope)``, which fans it out to that
instance's own local subscribers. So each subscriber gets each message exactly
once, with no instance-id bookkeeping.

Rules every adapter follows (checked by :mod:`wskit.pubsub.testing`):

- ``subscribe(client_id, topic)`` / ``unsubscribe(client_id, topic)`` are
  idempotent and update the *local* subscriber index that
  ``subscribers(topic)`` returns. A distributed adapter subscribes to a topic
  at the broker when its first local subscriber arrives and unsubscribes when
  the last one leaves (never a catch-all pattern subscription). They may raise
  (:class:`~wskit.pubsub.BackendUnavailable` preferred); the plugin then rolls
  the change back and raises ``PubSubError("ADAPTER_ERROR")``.
- ``subscribers(topic)`` is synchronous and returns the local subscribers'
  client ids (empty when none); the plugin iterates it synchronously, right
  away, and never mutates it.
- ``publish(envelope)`` returns a :class:`~wskit.core.pubsub.PublishResult`
  and should not raise (an exception is turned into ``ADAPTER_ERROR``,
  retryable). Local adapters report ``capability="exact"`` and ``matched`` =
  local subscribers minus ``envelope.exclude_client_id``; brokers that cannot
  count report ``"unknown"`` (or ``"estimate"``).
- ``envelope.exclude_client_id`` must reach every instance's ``deliver``
  (it is the sender's client id when the publisher asked for ``exclude_self``);
  ``deliver`` skips that client. :meth:`PublishEnvelope.to_json` /
  :meth:`PublishEnvelope.from_json` give a wire form that carries it.
- ``start(deliver)`` is awaited once, lazily (first connection or first
  publish, or :meth:`wskit.pubsub.PubSub.start`); ``close()`` once at
  shutdown (:meth:`wskit.pubsub.PubSub.close`). ``deliver`` is synchronous,
  never raises, and returns how many local connections matched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from wskit.core.envelope import dumps, encode_envelope
from wskit.core.pubsub import TOPIC_POSITION, StreamPosition

if TYPE_CHECKING:
    from wskit.core.pubsub import PublishResult
    from wskit.pubsub.history import HistoryPolicy

__all__ = [
    "EXCLUDE_CLIENT_ID",
    "DeliverFn",
    "DistributedPubSubAdapter",
    "HistoryPage",
    "HistoryPubSubAdapter",
    "PubSubAdapter",
    "PublishEnvelope",
]

#: Meta key carrying the excluded sender id in the broker wire form (as in WS-Kit TS).
EXCLUDE_CLIENT_ID = "excludeClientId"


class PublishEnvelope:
    """One published message on its way to subscribers (immutable).

    ``type``/``meta``/``payload`` are the outbound message in wire form
    (JSON-compatible, already validated); ``frame`` is that message serialized
    once, exactly as every subscriber receives it (computed on first use when
    not given, so an envelope that only crosses a broker is never serialized
    as a frame). ``exclude_client_id`` names a client that must not receive it
    (the sender, with ``exclude_self``). ``partition_key`` is an ordering hint
    for brokers that shard; it is not sent to clients.

    On a topic with history, ``history`` is the topic's
    :class:`~wskit.pubsub.HistoryPolicy` (what the adapter must keep; set by
    the plugin on publish, never sent anywhere) and ``position`` the message's
    place in the history once the adapter assigned it: the frame then carries
    it as ``meta.topicPosition`` (see :meth:`at`).
    """

    __slots__ = (
        "_at",
        "_frame",
        "exclude_client_id",
        "has_payload",
        "history",
        "meta",
        "partition_key",
        "payload",
        "position",
        "topic",
        "type",
    )

    topic: str
    type: str
    meta: Mapping[str, Any]
    payload: Any
    has_payload: bool
    exclude_client_id: str | None
    partition_key: str | None
    position: StreamPosition | None
    history: HistoryPolicy | None
    _frame: str
    _at: tuple[StreamPosition, PublishEnvelope] | None

    def __init__(
        self,
        topic: str,
        type: str,
        meta: Mapping[str, Any],
        payload: Any = None,
        has_payload: bool = True,
        exclude_client_id: str | None = None,
        partition_key: str | None = None,
        frame: str = "",
        *,
        position: StreamPosition | None = None,
        history: HistoryPolicy | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "topic", topic)
        init(self, "type", type)
        init(self, "meta", meta)
        init(self, "payload", payload)
        init(self, "has_payload", has_payload)
        init(self, "exclude_client_id", exclude_client_id)
        init(self, "partition_key", partition_key)
        init(self, "position", position)
        init(self, "history", history)
        init(self, "_frame", frame)
        init(self, "_at", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PublishEnvelope is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"PublishEnvelope is immutable: cannot delete {name!r}")

    def _key(self) -> tuple[Any, ...]:
        return (
            self.topic,
            self.type,
            self.meta,
            self.payload,
            self.has_payload,
            self.exclude_client_id,
            self.partition_key,
            self.position,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not PublishEnvelope:
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # meta is a mapping

    def __repr__(self) -> str:
        return (
            f"PublishEnvelope(topic={self.topic!r}, type={self.type!r}, meta={self.meta!r}, "
            f"payload={self.payload!r}, has_payload={self.has_payload!r}, "
            f"exclude_client_id={self.exclude_client_id!r}, "
            f"partition_key={self.partition_key!r}, position={self.position!r})"
        )

    @property
    def frame(self) -> str:
        """The message as every subscriber receives it, serialized once."""
        frame = self._frame
        if not frame:
            meta = self.meta
            position = self.position
            if position is not None:
                meta = {
                    **meta,
                    TOPIC_POSITION: {
                        "topic": self.topic,
                        "epoch": position.epoch,
                        "offset": position.offset,
                    },
                }
            frame = encode_envelope(self.type, meta, self.payload, has_payload=self.has_payload)
            object.__setattr__(self, "_frame", frame)
        return frame

    def at(self, position: StreamPosition) -> PublishEnvelope:
        """This message at ``position`` in its topic's history: an envelope
        whose frame carries ``meta.topicPosition``. Asking twice for the same
        position returns the same envelope (its frame is serialized once)."""
        cached = self._at
        if cached is not None and cached[0] == position:
            return cached[1]
        positioned = PublishEnvelope(
            self.topic,
            self.type,
            self.meta,
            self.payload,
            self.has_payload,
            self.exclude_client_id,
            self.partition_key,
            position=position,
            history=self.history,
        )
        object.__setattr__(self, "_at", (position, positioned))
        return positioned

    def to_dict(self) -> dict[str, Any]:
        """The broker wire form, shaped like WS-Kit TS's envelope:
        ``{"topic", "type", "meta"?, "payload"?}`` with the excluded sender in
        ``meta.excludeClientId`` and the partition key in ``partitionKey``
        (the position and the history policy are not part of it)."""
        out: dict[str, Any] = {"topic": self.topic, "type": self.type}
        meta = dict(self.meta)
        if self.exclude_client_id is not None:
            meta[EXCLUDE_CLIENT_ID] = self.exclude_client_id
        if meta:
            out["meta"] = meta
        if self.has_payload:
            out["payload"] = self.payload
        if self.partition_key is not None:
            out["partitionKey"] = self.partition_key
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON (what a broker transports)."""
        return dumps(self.to_dict())

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], *, position: StreamPosition | None = None
    ) -> PublishEnvelope:
        """Rebuild an envelope from :meth:`to_dict`'s form (at ``position`` when
        given); raises ``ValueError`` when the shape is wrong."""
        topic = obj.get("topic")
        message_type = obj.get("type")
        meta = obj.get("meta", {})
        if type(topic) is not str or not topic:
            raise ValueError("envelope: 'topic' must be a non-empty string")
        if type(message_type) is not str or not message_type:
            raise ValueError("envelope: 'type' must be a non-empty string")
        if not isinstance(meta, Mapping):
            raise ValueError("envelope: 'meta' must be an object")
        meta = dict(meta)
        exclude = meta.pop(EXCLUDE_CLIENT_ID, None)
        partition_key = obj.get("partitionKey")
        return cls(
            topic=topic,
            type=message_type,
            meta=meta,
            payload=obj.get("payload"),
            has_payload="payload" in obj,
            exclude_client_id=exclude if type(exclude) is str else None,
            partition_key=partition_key if type(partition_key) is str else None,
            position=position,
        )

    @classmethod
    def from_json(
        cls, data: str | bytes, *, position: StreamPosition | None = None
    ) -> PublishEnvelope:
        """Parse :meth:`to_json`'s output; raises ``ValueError`` on bad input."""
        import json

        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("envelope: expected a JSON object")
        return cls.from_dict(obj, position=position)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """What :meth:`HistoryPubSubAdapter.read_history` returns for one topic.

    ``epoch`` is the topic's current epoch (created by the read when the topic
    had none), ``top`` its newest offset (0 before the first publish), ``first``
    the oldest offset still kept (``top + 1`` when nothing is kept).
    ``entries`` are positioned envelopes with offsets above the position
    asked for, oldest first, at most ``limit`` of them; empty when the position
    belongs to another epoch.
    """

    epoch: str
    top: int
    first: int
    entries: Sequence[PublishEnvelope] = ()


#: The plugin's local fan-out, handed to :meth:`DistributedPubSubAdapter.start`:
#: delivers one envelope to this instance's subscribers, returns how many matched.
DeliverFn = Callable[[PublishEnvelope], int]


@runtime_checkable
class PubSubAdapter(Protocol):
    """What every pub/sub backend implements (see the module docs for the rules)."""

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        """Send the envelope to the topic's subscribers (local: just count them)."""
        ...

    async def subscribe(self, client_id: str, topic: str) -> None:
        """Add a local subscriber (idempotent)."""
        ...

    async def unsubscribe(self, client_id: str, topic: str) -> None:
        """Remove a local subscriber (idempotent)."""
        ...

    def subscribers(self, topic: str) -> Collection[str]:
        """Client ids of this instance's subscribers to ``topic``."""
        ...


@runtime_checkable
class DistributedPubSubAdapter(PubSubAdapter, Protocol):
    """A broker-backed adapter: every instance delivers what the broker sends it."""

    async def start(self, deliver: DeliverFn) -> None:
        """Start receiving from the broker; call ``deliver(envelope)`` for each
        envelope on a topic with local subscribers (own publishes included)."""
        ...

    async def close(self) -> None:
        """Stop receiving and release connections (idempotent)."""
        ...


@runtime_checkable
class HistoryPubSubAdapter(PubSubAdapter, Protocol):
    """An adapter that keeps per-topic history (``with_pubsub(history=...)``).

    ``publish(envelope)`` with ``envelope.history`` set appends the message to
    the topic's history: it gets the next offset in the topic's epoch
    (creating the epoch on first use), the oldest entries beyond the policy's
    bounds are dropped, and the result carries ``position``. A local adapter
    returns that position and the plugin delivers ``envelope.at(position)``;
    a distributed adapter hands every instance the positioned envelope, in
    offset order, once, and after losing its broker connection fills the gap
    from the history before delivering newer messages (a gap it cannot fill
    is passed on as it is: the plugin tells the subscribers).
    """

    async def read_history(
        self,
        topic: str,
        since: StreamPosition | None,
        *,
        limit: int,
        policy: HistoryPolicy,
    ) -> HistoryPage:
        """The topic's epoch and bounds, and up to ``limit`` entries after
        ``since`` when ``since`` is in the current epoch."""
        ...
