"""The pub/sub provider: per-connection topics, policy, publish and fan-out."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from wskit.core.envelope import encode_envelope
from wskit.core.errors import CapabilityError, RpcError, ValidationError
from wskit.core.pubsub import (
    TOPIC_POSITION,
    TOPIC_STATUS,
    GapReason,
    PublishRecord,
    PublishResult,
    StreamPosition,
    TopicStatus,
)
from wskit.pubsub.adapter import EXCLUDE_CLIENT_ID, HistoryPage, PublishEnvelope, PubSubAdapter
from wskit.pubsub.errors import PubSubError
from wskit.pubsub.history import HistoryPolicy, HistoryRules, HistorySpec
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
#: Entries read from a topic's history per round trip while replaying.
HISTORY_READ_LIMIT: Final = 1000
# While replaying, wait for the connection's outbound buffer to drain below
# this fraction of its bound before queueing more.
_REPLAY_FILL: Final = 2
# Seconds (of the router clock) a replay waits for a client that reads nothing
# before queueing anyway.
_REPLAY_STALL: Final = 10.0
# Outbound meta keys never copied from a publisher's ``meta``.
_META_DROP: Final = frozenset(
    {"type", "correlationId", "clientId", "receivedAt", EXCLUDE_CLIENT_ID, TOPIC_POSITION}
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

    async def subscribe(self, topic: str, *, since: object = None) -> TopicStatus:
        """Subscribe to one topic (no-op when already subscribed: ``"unchanged"``).

        On a topic with history the client is sent a ``$ws:topic-status``
        frame, and with ``since`` (a position: ``{"epoch", "offset"}`` or an
        object with those attributes) every message after it, in order, before
        any newer one; when the history cannot cover ``since`` the status is
        ``"gap"`` with a reason and nothing is replayed. Returns the
        :class:`~wskit.core.pubsub.TopicStatus`. ``since`` is ignored on topics
        without history; a malformed one raises ``PubSubError("INVALID_POSITION")``.
        """
        statuses: dict[str, TopicStatus] = {}
        await self._provider._change(self._state, add=[topic], since=since, statuses=statuses)
        return next(iter(statuses.values()))

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
        history: HistorySpec | None = None,
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
        self.history: HistoryRules | None = HistoryRules(history) if history is not None else None
        if self.history is not None and not callable(getattr(self.adapter, "read_history", None)):
            name = getattr(self.adapter, "name", None) or type(self.adapter).__name__
            raise TypeError(f"with_pubsub(history=...): the {name} adapter keeps no history")
        # Topics with history and local subscribers: continuity and replay state.
        self._streams: dict[str, _Stream] = {}

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
                if self._streams:
                    self._release(topic, connection.client_id)
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
        since: object = None,
        statuses: dict[str, TopicStatus] | None = None,
    ) -> tuple[int, int]:
        conn = state.conn
        norm = self._normalize

        def normalize(items: list[Any]) -> list[Any]:
            return _dedupe([norm(t, conn) if type(t) is str else t for t in items])

        add_n = normalize(add) if add else []
        remove_n = normalize(remove) if remove else []
        target_n = normalize(target) if target is not None else None
        if statuses is not None:
            for t in add_n:  # what stays so: the topics already held
                statuses[t] = TopicStatus(t, "unchanged")

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
            plans = self._history_plans(to_add, since)
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
            client_id = conn.client_id
            for plan in plans:  # live deliveries wait until the replay is queued
                stream = self._streams.get(plan.topic)
                if stream is None:
                    stream = self._streams[plan.topic] = _Stream()
                stream.holds[client_id] = plan.hold
                plan.stream = stream
            try:
                await self._call_adapter(client_id, to_add, to_remove)
                try:
                    pages = [await self._first_page(plan) for plan in plans]
                except BaseException as exc:
                    failed = await self._undo(client_id, to_add, to_remove)
                    if not isinstance(exc, _HistoryUnavailable):
                        raise
                    raise PubSubError(
                        "ADAPTER_ERROR",
                        f"Pub/sub adapter failed to read the history of {exc.topic!r}",
                        {
                            "op": "history",
                            "topic": exc.topic,
                            "cause": type(exc.cause).__name__,
                            "rollbackFailed": bool(failed),
                            "failedRollbackTopics": failed,
                        },
                    ) from exc.cause
            except BaseException:
                for plan in plans:
                    self._release(plan.topic, client_id)
                raise
            for topic in to_remove:
                del current[topic]
                self._release(topic, client_id)
            for topic in to_add:
                current[topic] = None
            done: dict[str, TopicStatus] = {}
            for plan, page in zip(plans, pages, strict=True):
                done[plan.topic] = await self._catch_up(conn, plan, page)
        if statuses is not None:
            for topic in to_add:
                statuses[topic] = done.get(topic) or TopicStatus(topic, "subscribed")
        if self._on_unsubscribe is not None:
            for topic in to_remove:
                self._run_hook(self._on_unsubscribe, topic, conn)
        if self._on_subscribe is not None:
            for topic in to_add:
                self._run_hook(self._on_subscribe, topic, conn)
        return len(to_add), len(to_remove)

    # -------------------------------------------------------------- history

    def _history_plans(self, to_add: list[str], since: object) -> list[_Plan]:
        """The topics among ``to_add`` that keep history, with the position to
        resume from (``since`` applies to a single subscribe)."""
        history = self.history
        if history is None:
            return []
        plans: list[_Plan] = []
        for topic in to_add:
            policy = history.policy(topic)
            if policy is None:
                continue
            position: StreamPosition | None = None
            if since is not None and len(to_add) == 1:
                try:
                    position = StreamPosition.parse(since)
                except ValueError as exc:
                    raise PubSubError(
                        "INVALID_POSITION",
                        f"Invalid position to resume {topic!r} from: {exc}",
                        {"topic": topic},
                    ) from None
            plans.append(_Plan(topic, policy, position))
        return plans

    async def _first_page(self, plan: _Plan) -> HistoryPage:
        try:
            return await self._read(plan.topic, plan.since, plan.policy)
        except Exception as exc:
            raise _HistoryUnavailable(plan.topic, exc) from exc

    async def _read(
        self, topic: str, since: StreamPosition | None, policy: HistoryPolicy
    ) -> HistoryPage:
        read = self.adapter.read_history  # type: ignore[attr-defined]
        page: HistoryPage = await read(topic, since, limit=HISTORY_READ_LIMIT, policy=policy)
        return page

    async def _catch_up(self, conn: Connection[Any], plan: _Plan, page: HistoryPage) -> TopicStatus:
        """Tell the client where its stream starts, queue what it missed, then
        let live deliveries through: in offset order, none twice, none left out.

        Live messages that arrive meanwhile are held back (their offsets are
        noted) and read again from the history, which holds every one of them;
        the switch to live happens with no await after the last check.
        """
        try:
            return await self._replay(conn, plan, page)
        finally:
            if plan.hold.epoch is None:  # stopped early (closing, cancelled): never stay held
                stream = plan.stream
                if stream is not None and stream.holds.get(conn.client_id) is plan.hold:
                    del stream.holds[conn.client_id]

    async def _replay(self, conn: Connection[Any], plan: _Plan, page: HistoryPage) -> TopicStatus:
        topic, hold, stream = plan.topic, plan.hold, plan.stream
        assert stream is not None
        since = plan.since
        status, reason = _classify(since, page)
        epoch = page.epoch
        if status == "recovered":
            assert since is not None
            last = since.offset
            entries = page.entries
        else:
            last = page.top
            entries = ()
        more = len(entries) >= HISTORY_READ_LIMIT
        if stream.last is None:  # this instance's first view of the topic
            stream.last = StreamPosition(epoch, page.top)
        if _closing(conn):
            return TopicStatus(topic, status, StreamPosition(epoch, last), reason)
        _send_status(conn, topic, status, epoch, last, reason)
        replayed = 0
        # Bounded: each round queues up to a page of the history or ends.
        for _ in range(_MAX_CATCH_UP_ROUNDS):
            for envelope in entries:
                position = envelope.position
                if position is None or position.epoch != epoch or position.offset <= last:
                    continue
                frame = envelope.frame
                if not await _room(conn, len(frame)):
                    return TopicStatus(topic, status, StreamPosition(epoch, last), reason, replayed)
                conn.send_frame(frame)
                last = position.offset
                replayed += 1
            if not (more or hold.behind(epoch, last)):
                break
            try:
                page = await self._read(topic, StreamPosition(epoch, last), plan.policy)
            except Exception as exc:
                _log.warning("wskit.pubsub: reading the history of %r failed: %r", topic, exc)
                status, reason = "gap", "unavailable"
                _send_status(conn, topic, status, epoch, last, reason)
                break
            lost = _discontinuity(epoch, last, page)
            if lost is not None:
                status, reason = "gap", lost
                epoch, last, entries, more = page.epoch, page.top, (), False
                _send_status(conn, topic, status, epoch, last, reason)
            else:
                entries = page.entries
                more = len(entries) >= HISTORY_READ_LIMIT
            hold.settle(page.epoch)
        else:
            status, reason = "gap", "unavailable"
            _send_status(conn, topic, status, epoch, last, reason)
        hold.go_live(epoch, last)  # no await since the last check
        return TopicStatus(topic, status, StreamPosition(epoch, last), reason, replayed)

    def _release(self, topic: str, client_id: str) -> None:
        """``client_id`` no longer follows ``topic`` here: forget its replay
        state, and the topic's once nobody here follows it."""
        stream = self._streams.get(topic)
        if stream is None:
            return
        stream.holds.pop(client_id, None)
        if not stream.holds and not self.adapter.subscribers(topic):
            del self._streams[topic]

    def _announce_gap(
        self,
        topic: str,
        stream: _Stream,
        position: StreamPosition,
        reason: GapReason,
        subscribers: Collection[str],
    ) -> None:
        """This instance lost continuity on ``topic`` (a new epoch, or messages
        the adapter could not recover): tell every subscriber here before the
        next message."""
        holds = stream.holds
        frame = encode_envelope(
            TOPIC_STATUS,
            {},
            TopicStatus(
                topic, "gap", StreamPosition(position.epoch, position.offset - 1), reason
            ).to_payload(),
            has_payload=True,
        )
        _log.info(
            "wskit.pubsub: history of %r lost continuity (%s) before offset %d of epoch %s",
            topic,
            reason,
            position.offset,
            position.epoch,
        )
        connections = self._connections
        for client_id in subscribers:
            hold = holds.get(client_id)
            if hold is not None and hold.epoch is None:
                continue  # still replaying: it reads the history itself
            conn = connections.get(client_id)
            if conn is not None:
                conn.send_frame(frame)

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
            failed = await self._undo(client_id, added, removed)
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

    async def _undo(self, client_id: str, added: list[str], removed: list[str]) -> list[str]:
        """Undo adapter calls in reverse order; returns the topics that failed."""
        adapter = self.adapter
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
        return failed

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
            history = self.history
            try:
                envelope = PublishEnvelope(
                    topic,
                    schema.type,
                    out_meta,
                    wire,
                    has_payload,
                    sender.client_id if exclude_self and sender is not None else None,
                    partition_key,
                    history=history.policy(topic) if history is not None else None,
                )
                if not self.distributed and envelope.history is None:
                    _ = envelope.frame  # delivered here: serialize it now (once)
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
        except (TypeError, ValueError) as exc:  # the adapter could not serialize it
            return PublishResult.failure(
                "VALIDATION", details={"reason": "serialization", "cause": str(exc)}
            )
        except Exception as exc:
            _log.warning("wskit.pubsub: %s publish failed: %r", name, exc)
            return PublishResult.failure(
                "ADAPTER_ERROR",
                retryable=True,
                adapter=name,
                details={"cause": type(exc).__name__},
            )
        if result.ok and not self.distributed:
            position = result.position
            self.deliver(envelope.at(position) if position is not None else envelope)
        return result

    # ------------------------------------------------------------- delivery

    def deliver(self, envelope: PublishEnvelope) -> int:
        """Send ``envelope.frame`` to this instance's subscribers of its topic,
        skipping ``envelope.exclude_client_id``; returns how many matched.

        The frame is queued on each connection as is (serialized once per
        publish). On a topic with history (``envelope.position`` set), a
        message this instance delivered already is dropped, a break in the
        offsets (a new epoch, or messages the adapter could not recover) is
        announced to the subscribers first, and connections still being sent
        their replay get it from the history instead. Never raises.
        """
        topic = envelope.topic
        try:
            subscribers = self.adapter.subscribers(topic)
        except Exception:
            _log.exception("wskit.pubsub: adapter.subscribers() failed")
            return 0
        if not subscribers:
            return 0
        position = envelope.position
        holds: dict[str, _Hold] | None = None
        if position is not None:
            stream = self._streams.get(topic)
            if stream is not None:
                last = stream.last
                if last is not None:
                    if last.epoch == position.epoch:
                        if position.offset <= last.offset:
                            return 0  # delivered here already
                        if position.offset != last.offset + 1:
                            self._announce_gap(topic, stream, position, "trimmed", subscribers)
                    else:
                        self._announce_gap(topic, stream, position, "epoch", subscribers)
                stream.last = position
                holds = stream.holds or None
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
            if holds is not None:
                hold = holds.get(client_id)
                if hold is not None and not hold.admit(position, holds, client_id):  # type: ignore[arg-type]
                    continue
            matched += 1
            try:
                conn.send_frame(frame)
            except Exception:
                _log.exception("wskit.pubsub: delivery to %s failed", client_id)
        return matched


class _Hold:
    """One connection's live deliveries on one history topic while (and just
    after) its replay is queued.

    Catching up (``epoch is None``): live messages are not sent; the highest
    offset seen (``seen`` in ``seen_epoch``) tells the replay how far to read.
    Live (``go_live``): messages at or below ``floor`` in ``epoch`` were
    replayed already and are skipped; the first one past it ends the hold.
    """

    __slots__ = ("epoch", "floor", "seen", "seen_epoch")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.floor = 0
        self.seen_epoch: str | None = None
        self.seen = 0

    def behind(self, epoch: str, last: int) -> bool:
        """Live messages past ``last`` (or from another epoch) were held back."""
        seen_epoch = self.seen_epoch
        return seen_epoch is not None and (seen_epoch != epoch or self.seen > last)

    def settle(self, epoch: str) -> None:
        """The history's epoch is ``epoch`` now: live messages noted in another
        one (an older epoch) are not in it and need no reading."""
        if self.seen_epoch != epoch:
            self.seen_epoch = None

    def go_live(self, epoch: str, floor: int) -> None:
        self.epoch = epoch
        self.floor = floor

    def admit(self, position: StreamPosition, holds: dict[str, _Hold], client_id: str) -> bool:
        if self.epoch is None:
            if position.epoch != self.seen_epoch:
                self.seen_epoch = position.epoch
                self.seen = position.offset
            elif position.offset > self.seen:
                self.seen = position.offset
            return False
        if position.epoch == self.epoch and position.offset <= self.floor:
            return False
        del holds[client_id]
        return True


class _Stream:
    """A history topic with subscribers on this instance: the last position
    delivered here and the connections being replayed to."""

    __slots__ = ("holds", "last")

    def __init__(self) -> None:
        self.last: StreamPosition | None = None
        self.holds: dict[str, _Hold] = {}


class _Plan:
    """One history topic of a subscription change."""

    __slots__ = ("hold", "policy", "since", "stream", "topic")

    def __init__(self, topic: str, policy: HistoryPolicy, since: StreamPosition | None) -> None:
        self.topic = topic
        self.policy = policy
        self.since = since
        self.hold = _Hold()
        self.stream: _Stream | None = None


class _HistoryUnavailable(Exception):
    def __init__(self, topic: str, cause: BaseException) -> None:
        super().__init__(topic)
        self.topic = topic
        self.cause = cause


#: A catch-up reads the history at most this many times (a page each).
_MAX_CATCH_UP_ROUNDS: Final = 10_000


def _send_status(
    conn: Connection[Any],
    topic: str,
    status: Literal["subscribed", "recovered", "gap"],
    epoch: str,
    offset: int,
    reason: GapReason | None,
) -> None:
    """Queue a ``$ws:topic-status`` frame: the stream goes on after ``offset``."""
    payload = TopicStatus(topic, status, StreamPosition(epoch, offset), reason).to_payload()
    conn.send_frame(encode_envelope(TOPIC_STATUS, {}, payload, has_payload=True))


def _classify(
    since: StreamPosition | None, page: HistoryPage
) -> tuple[Literal["subscribed", "recovered", "gap"], GapReason | None]:
    """Whether the history can replay everything after ``since``."""
    if since is None:
        return "subscribed", None
    if since.epoch != page.epoch:
        return "gap", "epoch"
    if since.offset > page.top:
        return "gap", "ahead"
    if since.offset + 1 < page.first:
        return "gap", "trimmed"
    return "recovered", None


def _discontinuity(epoch: str, last: int, page: HistoryPage) -> GapReason | None:
    """Why the history no longer continues from ``last`` in ``epoch`` (if so)."""
    if page.epoch != epoch:
        return "epoch"
    if page.top < last:
        return "ahead"
    if last + 1 < page.first:
        return "trimmed"
    return None


def _closing(conn: Connection[Any]) -> bool:
    return conn.state in ("closing", "closed") or conn.close_requested is not None


async def _room(conn: Connection[Any], size: int) -> bool:
    """Wait until ``conn``'s outbound buffer can take ``size`` more bytes within
    half its bound, so a replay does not trip the overflow policy by itself.
    ``False`` once the connection is closing. A client that reads nothing for
    :data:`_REPLAY_STALL` seconds gets the frame anyway: the connection's
    overflow policy then applies, as to any slow client. The router clock times
    the stall (a fake clock drives it); reads are noticed when a stall period
    ends, and one that made progress starts another whole period."""
    # An empty buffer always takes the frame, however large.
    target = max(conn.max_buffered_bytes // _REPLAY_FILL - size, 0)
    low = conn.buffered_bytes
    waited = False
    while True:
        if _closing(conn):
            return False
        buffered = conn.buffered_bytes
        if buffered <= target:
            return True
        if buffered < low:
            low = buffered  # the client read something: the stall clock starts again
        elif waited:
            return True  # a whole stall period without progress
        # The wait ends early only with room or a close (both answered above), so
        # each wait is a whole stall period; the router clock times it.
        waited = not await conn.wait_buffered_at_most(target, _REPLAY_STALL * 1000.0)


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
