"""The pub/sub contract between the router and a pub/sub plugin.

Core only defines the types: :class:`PublishResult`, the :class:`Topics`
interface handlers see as ``ctx.topics``, and the :class:`PubSubProvider`
that a plugin (``wskit.pubsub.with_pubsub()``) installs on a router. The
implementation lives in the ``wskit-pubsub`` distribution.
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
    "PubSubProvider",
    "PublishCapability",
    "PublishRecord",
    "PublishResult",
    "ReadonlyTopics",
    "Topics",
]

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
    """

    ok: bool
    capability: PublishCapability | None = None
    matched: int | None = None
    error: str | None = None
    retryable: bool = False
    adapter: str | None = None
    details: Mapping[str, Any] | None = None

    @classmethod
    def success(cls, capability: PublishCapability, matched: int | None = None) -> PublishResult:
        return cls(True, capability, None if capability == "unknown" else matched)

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
    """One connection's subscriptions (``ctx.topics``); mutations are async."""

    async def subscribe(self, topic: str) -> None: ...

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
