"""The pub/sub provider: per-connection topics, policy, publish and fan-out."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from wskit.core.errors import CapabilityError, RpcError, ValidationError
from wskit.core.pubsub import PublishRecord, PublishResult
from wskit.pubsub.adapter import EXCLUDE_CLIENT_ID, PublishEnvelope, PubSubAdapter
from wskit.pubsub.errors import PubSubError
from wskit.pubsub.memory import MemoryPubSub
from wskit.pubsub.rules import TopicRules

if TYPE_CHECKING:
    from wskit.core.connection import Connection
    from wskit.core.router import Router
    from wskit.core.schema import MessageSchema

__all__ = [
    "AuthorizeHook",
    "NormalizeHook",
    "PubSub",
    "TopicHook",
    "get_pubsub",
]

_log = logging.getLogger("wskit.pubsub")

#: ``normalize(topic, connection)`` -> the canonical topic (``connection`` is
#: ``None`` for ``router.publish``). Synchronous.
NormalizeHook = Callable[[str, "Connection[Any] | None"], str]
#: ``authorize(topic, connection)`` -> truthy to allow, falsy to deny (sync or
#: async). Raising :class:`PubSubError` denies with your own message/details.
AuthorizeHook = Callable[[str, "Connection[Any]"], "bool | Awaitable[bool]"]
#: ``hook(topic, connection)`` after a subscription change (sync or async).
TopicHook = Callable[[str, "Connection[Any]"], Any]

_STATE_KEY: Final = "wskit.pubsub"
# Outbound meta keys never copied from a publisher's ``meta``.
_META_DROP: Final = frozenset(
    {"type", "correlationId", "clientId", "receivedAt", EXCLUDE_CLIENT_ID}
)


class _ConnTopics:
    """Subscriptions of one connection (ordered set) plus its mutation lock."""

    __slots__ = ("closed", "conn", "lock", "readonly", "topics", "view")

    def __init__(self, provider: PubSub, conn: Connection[Any]) -> None:
        self.conn = conn
        self.topics: dict[str, None] = {}
        self.lock = asyncio.Lock()
        self.closed = False
        self.view = ConnectionTopics(provider, self)
        self.readonly = TopicsView(provider, self)


class TopicsView:
    """A read-only view of one connection's topics (``CloseContext.topics``).

    ``has(t)``/``t in view`` normalize ``t`` first; ``len()`` and iteration
    (a snapshot, in subscription order) are supported.
    """

    __slots__ = ("_provider", "_state")

    def __init__(self, provider: PubSub, state: _ConnTopics) -> None:
        self._provider = provider
        self._state = state

    def has(self, topic: str) -> bool:
        if type(topic) is not str:
            return False
        return self._provider._normalize(topic, self._state.conn) in self._state.topics

    def __contains__(self, topic: object) -> bool:
        return self.has(topic)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._state.topics)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._state.topics))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {list(self._state.topics)!r}>"


class ConnectionTopics(TopicsView):
    """One connection's subscriptions (``ctx.topics``).

    Every change runs in this order: normalize → idempotency check (a no-op
    returns at once with no side effects) → validate → authorize → limit →
    adapter → local state → hooks. Batches are all-or-nothing: nothing changes
    unless every topic passes, and adapter calls already made are rolled back
    (in reverse) when one fails. Changes of one connection run one at a time.
    Raises :class:`PubSubError`.
    """

    __slots__ = ()

    async def subscribe(self, topic: str) -> None:
        """Subscribe to one topic (no-op when already subscribed)."""
        await self._provider._change(self._state, add=[topic])

    async def unsubscribe(self, topic: str) -> None:
        """Unsubscribe from one topic (no-op when not subscribed, even if invalid)."""
        await self._provider._change(self._state, remove=[topic])

    async def subscribe_many(self, topics: Iterable[str]) -> Mapping[str, int]:
        """Subscribe to several topics at once: ``{"added", "total"}``."""
        added, _ = await self._provider._change(self._state, add=_items(topics))
        return {"added": added, "total": len(self._state.topics)}

    async def unsubscribe_many(self, topics: Iterable[str]) -> Mapping[str, int]:
        """Unsubscribe from several topics at once: ``{"removed", "total"}``."""
        _, removed = await self._provider._change(self._state, remove=_items(topics))
        return {"removed": removed, "total": len(self._state.topics)}

    async def set(self, topics: Iterable[str]) -> Mapping[str, int]:
        """Make the subscriptions exactly ``topics``: ``{"added", "removed", "total"}``.

        Unsubscribes first, then subscribes; the limit applies to the result.
        """
        added, removed = await self._provider._change(self._state, target=_items(topics))
        return {"added": added, "removed": removed, "total": len(self._state.topics)}

    async def clear(self) -> Mapping[str, int]:
        """Unsubscribe from everything: ``{"removed", "total"}``."""
        _, removed = await self._provider._change(self._state, target=[])
        return {"removed": removed, "total": len(self._state.topics)}


def _items(topics: Iterable[str]) -> list[str]:
    if isinstance(topics, (str, bytes)):
        raise TypeError("expected an iterable of topics, not a single string")
    return list(topics)


def _dedupe(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out: list[Any] = []
    for item in items:
        if type(item) is str:
            if item in seen:
                continue
            seen.add(item)
        out.append(item)
    return out


class PubSub:
    """The pub/sub provider ``with_pubsub()`` installs as ``router.pubsub``.

    See :func:`wskit.pubsub.with_pubsub` for the options. Besides the
    :class:`~wskit.core.pubsub.PubSubProvider` contract it offers
    :meth:`start`/:meth:`close` (distributed adapters) and :meth:`deliver`
    (local fan-out, what distributed adapters call).
    """

    def __init__(
        self,
        router: Router[Any],
        adapter: PubSubAdapter | None = None,
        *,
        rules: TopicRules | None = None,
        max_topics_per_connection: int | None = None,
        normalize: NormalizeHook | None = None,
        authorize_subscribe: AuthorizeHook | None = None,
        authorize_publish: AuthorizeHook | None = None,
        on_subscribe: TopicHook | None = None,
        on_unsubscribe: TopicHook | None = None,
    ) -> None:
        if max_topics_per_connection is not None and max_topics_per_connection < 0:
            raise ValueError("max_topics_per_connection must be >= 0 (or None: unlimited)")
        self.router = router
        self.adapter: PubSubAdapter = adapter if adapter is not None else MemoryPubSub()
        self.rules = rules or TopicRules()
        self.max_topics_per_connection = max_topics_per_connection
        self._normalize_hook = normalize
        self._authorize_subscribe = authorize_subscribe
        self._authorize_publish = authorize_publish
        self._on_subscribe = on_subscribe
        self._on_unsubscribe = on_unsubscribe
        self.distributed: bool = callable(getattr(self.adapter, "start", None))
        # The router's own registry of open connections (no second map to keep).
        self._connections: dict[str, Connection[Any]] = router._connections
        self._started = False
        self._starting: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start a distributed adapter (idempotent; runs by itself on the first
        connection or publish). A failed start is retried on the next call."""
        if self._started or not self.distributed:
            return
        if self._starting is None:
            start: Callable[[Any], Awaitable[None]] = self.adapter.start  # type: ignore[attr-defined]
            self._starting = asyncio.ensure_future(start(self.deliver))
        task = self._starting
        try:
            await asyncio.shield(task)
        except BaseException:
            if task.done() and self._starting is task:
                self._starting = None
            raise
        self._started = True

    async def close(self) -> None:
        """Close the adapter (``adapter.close()`` when it has one); idempotent."""
        close = getattr(self.adapter, "close", None)
        self._started = False
        self._starting = None
        if callable(close):
            result = close()
            if inspect.isawaitable(result):
                await result

    async def connection_opened(self, connection: Connection[Any]) -> None:
        # A connection's topic state is made when it first subscribes (or asks for
        # its topics): idle connections hold none.
        if self.distributed and not self._started:
            await self.start()

    async def connection_closed(self, connection: Connection[Any]) -> None:
        """Remove every subscription of a closing connection (after ``on_close``)."""
        state: _ConnTopics | None = connection.extensions.get(_STATE_KEY)
        if state is None:
            return
        state.closed = True
        failures: list[str] = []
        first: BaseException | None = None
        async with state.lock:
            topics = tuple(state.topics)
            state.topics.clear()
            for topic in topics:
                try:
                    await self.adapter.unsubscribe(connection.client_id, topic)
                except Exception as exc:
                    failures.append(topic)
                    first = first or exc
        if first is not None:
            raise PubSubError(
                "ADAPTER_ERROR",
                "Pub/sub adapter failed to remove subscriptions of a closed connection",
                {"topics": failures},
            ) from first

    # --------------------------------------------------------------- topics

    def topics(self, connection: Connection[Any]) -> ConnectionTopics:
        return self._state(connection).view

    def readonly_topics(self, connection: Connection[Any]) -> TopicsView:
        return self._state(connection).readonly

    def _state(self, connection: Connection[Any]) -> _ConnTopics:
        state: _ConnTopics | None = connection.extensions.get(_STATE_KEY)
        if state is None:
            state = connection.extensions[_STATE_KEY] = _ConnTopics(self, connection)
        return state

    def _normalize(self, topic: str, connection: Connection[Any] | None) -> str:
        hook = self._normalize_hook
        return hook(topic, connection) if hook is not None else topic

    async def _change(
        self,
        state: _ConnTopics,
        *,
        add: list[Any] | None = None,
        remove: list[Any] | None = None,
        target: list[Any] | None = None,
    ) -> tuple[int, int]:
        conn = state.conn
        norm = self._normalize

        def normalize(items: list[Any]) -> list[Any]:
            return _dedupe([norm(t, conn) if type(t) is str else t for t in items])

        add_n = normalize(add) if add else []
        remove_n = normalize(remove) if remove else []
        target_n = normalize(target) if target is not None else None

        async with state.lock:
            current = state.topics
            # Idempotency: keep only what would change. A no-op stops here.
            if target_n is not None:
                wanted = {t for t in target_n if type(t) is str}
                to_remove = [t for t in current if t not in wanted]
                to_add = [t for t in target_n if type(t) is not str or t not in current]
            else:
                to_add = [t for t in add_n if type(t) is not str or t not in current]
                to_remove = [t for t in remove_n if type(t) is str and t in current]
            if not to_add and not to_remove:
                return 0, 0
            if state.closed or conn.state in ("closing", "closed") or conn.close_requested:
                raise PubSubError(
                    "CONNECTION_CLOSED", "Connection is closed", {"clientId": conn.client_id}
                )
            rules = self.rules
            for topic in to_add:
                rules.validate(topic)
            if self._authorize_subscribe is not None:
                for topic in to_add:
                    await self._authorize(topic, conn)
            limit = self.max_topics_per_connection
            if to_add and limit is not None:
                after = len(current) - len(to_remove) + len(to_add)
                if after > limit:
                    raise PubSubError(
                        "TOPIC_LIMIT_EXCEEDED",
                        f"Topic limit exceeded: at most {limit} topics per connection",
                        {"limit": limit, "current": len(current), "requested": len(to_add)},
                    )
            await self._call_adapter(conn.client_id, to_add, to_remove)
            for topic in to_remove:
                del current[topic]
            for topic in to_add:
                current[topic] = None
        if self._on_unsubscribe is not None:
            for topic in to_remove:
                self._run_hook(self._on_unsubscribe, topic, conn)
        if self._on_subscribe is not None:
            for topic in to_add:
                self._run_hook(self._on_subscribe, topic, conn)
        return len(to_add), len(to_remove)

    async def _authorize(self, topic: str, conn: Connection[Any]) -> None:
        hook = self._authorize_subscribe
        assert hook is not None
        allowed = hook(topic, conn)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise PubSubError(
                "ACL_SUBSCRIBE",
                f"Not allowed to subscribe to {topic!r}",
                {"op": "subscribe", "kind": "forbidden", "topic": topic},
            )

    async def _call_adapter(self, client_id: str, to_add: list[str], to_remove: list[str]) -> None:
        adapter = self.adapter
        removed: list[str] = []
        added: list[str] = []
        topic = ""
        op = "unsubscribe"
        try:
            for topic in to_remove:
                await adapter.unsubscribe(client_id, topic)
                removed.append(topic)
            op = "subscribe"
            for topic in to_add:
                await adapter.subscribe(client_id, topic)
                added.append(topic)
        except Exception as exc:
            failed: list[str] = []
            for t in reversed(added):
                try:
                    await adapter.unsubscribe(client_id, t)
                except Exception:
                    failed.append(t)
            for t in reversed(removed):
                try:
                    await adapter.subscribe(client_id, t)
                except Exception:
                    failed.append(t)
            raise PubSubError(
                "ADAPTER_ERROR",
                f"Pub/sub adapter failed to {op} {topic!r}",
                {
                    "op": op,
                    "topic": topic,
                    "cause": type(exc).__name__,
                    "rollbackFailed": bool(failed),
                    "failedRollbackTopics": failed,
                },
            ) from exc

    @staticmethod
    def _run_hook(hook: TopicHook, topic: str, conn: Connection[Any]) -> None:
        # Hooks observe a committed change: a failure is reported, never rolled back.
        conn.run_callback(lambda: hook(topic, conn))

    # -------------------------------------------------------------- publish

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
    ) -> PublishResult:
        """Validate, serialize once, hand to the adapter, fan out locally.

        Never raises for runtime conditions: an invalid topic or payload gives
        ``VALIDATION``, a denial ``ACL_PUBLISH``, an adapter failure
        ``ADAPTER_ERROR`` (retryable). ``authorize_publish`` runs for
        publishes from a connection (``ctx.publish``), not for ``router.publish``.
        """
        out_meta: dict[str, Any] = (
            {k: v for k, v in meta.items() if k not in _META_DROP} if meta else {}
        )
        envelope: PublishEnvelope | None = None
        wire: Any = payload
        try:
            try:
                if type(topic) is str:
                    topic = self._normalize(topic, sender)
            except PubSubError as exc:
                raise _Failed(PublishResult.failure("VALIDATION", details=exc.details)) from None
            reason = self.rules.check(topic)
            if reason is not None:
                raise _Failed(
                    PublishResult.failure(
                        "VALIDATION", details=self.rules.error(topic, reason).details
                    )
                )
            if sender is not None and self._authorize_publish is not None:
                await self._check_publish(topic, sender)
            wire, has_payload = self._encode(schema, payload)
            try:
                envelope = PublishEnvelope(
                    topic,
                    schema.type,
                    out_meta,
                    wire,
                    has_payload,
                    sender.client_id if exclude_self and sender is not None else None,
                    partition_key,
                )
            except (TypeError, ValueError) as exc:
                raise _Failed(
                    PublishResult.failure(
                        "VALIDATION", details={"reason": "serialization", "cause": str(exc)}
                    )
                ) from None
            result = await self._send(envelope)
        except _Failed as failed:
            result = failed.result
        self.router.notify_publish(
            PublishRecord(
                topic if type(topic) is str else repr(topic),
                schema.type,
                wire,
                out_meta,
                result,
                sender.client_id if sender is not None else None,
            )
        )
        return result

    async def _check_publish(self, topic: str, sender: Connection[Any]) -> None:
        hook = self._authorize_publish
        assert hook is not None
        try:
            allowed = hook(topic, sender)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except RpcError as exc:
            raise _Failed(PublishResult.failure("ACL_PUBLISH", details=exc.details)) from None
        if not allowed:
            raise _Failed(
                PublishResult.failure(
                    "ACL_PUBLISH", details={"op": "publish", "kind": "forbidden", "topic": topic}
                )
            )

    def _encode(self, schema: MessageSchema[Any], payload: Any) -> tuple[Any, bool]:
        codec = schema.payload
        if codec is None:
            if payload is not None:
                raise _Failed(
                    PublishResult.failure(
                        "VALIDATION",
                        details={"issues": [_issue("Message has no payload")]},
                    )
                )
            return None, False
        if payload is None:
            raise _Failed(
                PublishResult.failure(
                    "VALIDATION",
                    details={"issues": [_issue("Payload required")]},
                )
            )
        validate = schema.validate_outgoing
        if validate is None:
            validate = self.router.validate_outgoing
        try:
            return codec.encode(payload, validate=validate), True
        except ValidationError as exc:
            raise _Failed(
                PublishResult.failure(
                    "VALIDATION",
                    details={"issues": [_issue(i["message"], i["path"]) for i in exc.issues]},
                )
            ) from None

    async def _send(self, envelope: PublishEnvelope) -> PublishResult:
        adapter = self.adapter
        name = getattr(adapter, "name", None) or type(adapter).__name__
        try:
            if self.distributed and not self._started:
                await self.start()
            result = await adapter.publish(envelope)
        except Exception as exc:
            _log.warning("wskit.pubsub: %s publish failed: %r", name, exc)
            return PublishResult.failure(
                "ADAPTER_ERROR",
                retryable=True,
                adapter=name,
                details={"cause": type(exc).__name__},
            )
        if result.ok and not self.distributed:
            self.deliver(envelope)
        return result

    # ------------------------------------------------------------- delivery

    def deliver(self, envelope: PublishEnvelope) -> int:
        """Send ``envelope.frame`` to this instance's subscribers of its topic,
        skipping ``envelope.exclude_client_id``; returns how many matched.

        The frame is queued on each connection as is (serialized once per
        publish). Never raises.
        """
        try:
            subscribers = self.adapter.subscribers(envelope.topic)
        except Exception:
            _log.exception("wskit.pubsub: adapter.subscribers() failed")
            return 0
        if not subscribers:
            return 0
        connections = self._connections
        frame = envelope.frame
        excluded = envelope.exclude_client_id
        matched = 0
        for client_id in subscribers:
            if client_id == excluded:
                continue
            conn = connections.get(client_id)
            if conn is None:
                continue
            matched += 1
            try:
                conn.send_frame(frame)
            except Exception:
                _log.exception("wskit.pubsub: delivery to %s failed", client_id)
        return matched


def _issue(message: str, path: list[Any] | None = None) -> dict[str, Any]:
    return {"path": ["payload", *(path or [])], "message": message}


class _Failed(Exception):
    def __init__(self, result: PublishResult) -> None:
        self.result = result


def get_pubsub(router: Router[Any]) -> PubSub:
    """The :class:`PubSub` provider installed on ``router`` by ``with_pubsub()``."""
    pubsub = router.pubsub
    if not isinstance(pubsub, PubSub):
        raise CapabilityError("get_pubsub() requires with_pubsub()")
    return pubsub
