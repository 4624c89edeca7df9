"""Pub/sub across server instances through Redis.

:class:`RedisPubSub` implements ``wskit.pubsub``'s distributed adapter
protocol (``publish``/``subscribe``/``unsubscribe``/``subscribers`` plus
``start(deliver)``/``close()``)::

    import redis.asyncio as redis
    from wskit.pubsub import with_pubsub
    from wskit.redis import redis_pubsub

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    router.plugin(with_pubsub(adapter=redis_pubsub(client, channel_prefix="app:")))

How it works:

- Two dedicated connections per instance, made from ``client``'s connection
  settings: one **publisher** (publishes are pipelined on it: every publish
  waiting when the connection is free goes out in one write) and one
  **subscriber**. ``client``'s own pool is not used.
- Channel = ``channel_prefix + topic``; the whole envelope crosses Redis as
  JSON (:meth:`wskit.pubsub.PublishEnvelope.to_json`, ``excludeClientId``
  included, so ``exclude_self`` holds on every instance).
- The instance ``SUBSCRIBE``\\ s to a channel when the topic's first local
  subscriber arrives (and waits for Redis to confirm it) and ``UNSUBSCRIBE``\\ s
  when the last one leaves: no ``PSUBSCRIBE`` firehose.
- Every instance, the publisher included, receives each message from Redis and
  delivers it to its own subscribers: exactly once per subscriber, and a
  message is never delivered locally before Redis accepted it.
- ``publish`` returns ``ok`` (capability ``"unknown"``) once Redis accepted the
  message; any failure (Redis down, timeout, too many waiting publishes)
  returns ``ADAPTER_ERROR``/``BACKPRESSURE``, retryable, and is counted in
  :meth:`RedisPubSub.health`. Nothing is swallowed. A failed publish may still
  have reached Redis if the connection broke after the write (at most once
  is not promised across a failure; the result says "not confirmed").
- When the subscriber connection breaks, the instance reconnects with
  exponential backoff and full jitter (``min(max, initial * 2**(n-1))``) and
  re-subscribes every topic that still has local subscribers. Messages
  published while it was disconnected are not replayed (Redis pub/sub keeps
  nothing). ``health()`` and ``wait_connected()`` make this observable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wskit.core.pubsub import PublishResult
from wskit.pubsub.adapter import DeliverFn, PublishEnvelope
from wskit.pubsub.errors import BackendUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

__all__ = ["RedisPubSub", "RedisPubSubHealth", "redis_pubsub"]

_log = logging.getLogger("wskit.redis")

_EMPTY: Final[frozenset[str]] = frozenset()
_ADAPTER: Final = "redis"

State = Literal["idle", "connecting", "connected", "reconnecting", "closed"]


@dataclass(frozen=True, slots=True)
class RedisPubSubHealth:
    """A snapshot of one instance's Redis pub/sub state.

    ``connected``: the subscriber connection is up and every topic with local
    subscribers is subscribed at Redis. ``state``: ``"idle"`` (not started),
    ``"connecting"``, ``"connected"``, ``"reconnecting"`` (after a failure,
    backing off) or ``"closed"``. ``reconnects``: successful reconnections
    after a failure. ``consecutive_failures``: failed connection attempts since
    the last success. Counters: ``published``/``publish_failures`` (publish
    results), ``received`` (messages from Redis), ``decode_errors`` (messages
    that were not a valid envelope; dropped).
    """

    connected: bool
    state: State
    topics: int
    reconnects: int
    consecutive_failures: int
    last_error: str | None
    published: int
    publish_failures: int
    received: int
    decode_errors: int


class _Publish:
    __slots__ = ("channel", "data", "future")

    def __init__(self, channel: str, data: str, future: asyncio.Future[PublishResult]) -> None:
        self.channel = channel
        self.data = data
        self.future = future


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisPubSub:
    """Distributed pub/sub over Redis channels (see the module docs).

    Options (keyword-only):

    - ``channel_prefix``: prepended to every topic (default ``""``; use one per
      application sharing a Redis).
    - ``command_timeout``: seconds to wait for Redis to accept a publish batch
      or confirm a ``SUBSCRIBE`` (default 5).
    - ``max_pending_publishes``: publishes waiting for the publisher connection
      beyond which ``publish`` returns ``BACKPRESSURE`` (default 10 000).
    - ``reconnect_initial_ms`` / ``reconnect_max_ms``: subscriber reconnect
      backoff (defaults 100 ms / 5 s), with full jitter.
    """

    name = _ADAPTER

    def __init__(
        self,
        client: Redis,
        *,
        channel_prefix: str = "",
        command_timeout: float = 5.0,
        max_pending_publishes: int = 10_000,
        reconnect_initial_ms: float = 100.0,
        reconnect_max_ms: float = 5_000.0,
    ) -> None:
        if not isinstance(channel_prefix, str):
            raise TypeError("channel_prefix must be a string")
        if command_timeout <= 0 or max_pending_publishes < 1:
            raise ValueError("command_timeout and max_pending_publishes must be positive")
        if reconnect_initial_ms <= 0 or reconnect_max_ms < reconnect_initial_ms:
            raise ValueError("need 0 < reconnect_initial_ms <= reconnect_max_ms")
        self._client = client
        self.channel_prefix = channel_prefix
        self.command_timeout = command_timeout
        self.max_pending_publishes = max_pending_publishes
        self.reconnect_initial_ms = reconnect_initial_ms
        self.reconnect_max_ms = reconnect_max_ms
        # Local index: topic -> client ids (topics here are subscribed at Redis).
        self._local: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()
        self._deliver: DeliverFn | None = None
        self._state: State = "idle"
        # Subscriber side.
        self._sub: AbstractConnection | None = None
        self._sub_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._ping_waiter: asyncio.Future[None] | None = None
        # Publisher side.
        self._pub: AbstractConnection | None = None
        self._pub_task: asyncio.Task[None] | None = None
        self._queue: deque[_Publish] = deque()
        self._wakeup = asyncio.Event()
        # Health.
        self._reconnects = 0
        self._failures = 0
        self._last_error: str | None = None
        self._published = 0
        self._publish_failures = 0
        self._received = 0
        self._decode_errors = 0

    # ---------------------------------------------------------------- helpers

    def _connection(self, **overrides: Any) -> AbstractConnection:
        pool = self._client.connection_pool
        kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0), **overrides}
        if "protocol" in overrides:
            # redis-py >= 7 rejects maintenance notifications on RESP2 connections.
            kwargs.pop("maint_notifications_config", None)
        conn: AbstractConnection = pool.connection_class(**kwargs)
        return conn

    def channel(self, topic: str) -> str:
        """The Redis channel of a topic."""
        return self.channel_prefix + topic

    def health(self) -> RedisPubSubHealth:
        """A snapshot of the connection state and counters."""
        return RedisPubSubHealth(
            connected=self._state == "connected" and self._ready.is_set(),
            state=self._state,
            topics=len(self._local),
            reconnects=self._reconnects,
            consecutive_failures=self._failures,
            last_error=self._last_error,
            published=self._published,
            publish_failures=self._publish_failures,
            received=self._received,
            decode_errors=self._decode_errors,
        )

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the subscriber is connected and re-subscribed (raises
        ``TimeoutError`` after ``timeout`` seconds)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -------------------------------------------------------------- lifecycle

    async def start(self, deliver: DeliverFn) -> None:
        """Connect the subscriber and start receiving; ``deliver(envelope)`` is
        called for each message on a topic with local subscribers.

        Raises :class:`~wskit.pubsub.BackendUnavailable` if Redis cannot be
        reached now (nothing is left running then).
        """
        if self._state == "closed":
            raise RuntimeError("RedisPubSub is closed")
        if self._sub_task is not None:
            raise RuntimeError("RedisPubSub already started")
        self._deliver = deliver
        self._state = "connecting"
        try:
            conn = await self._open_subscriber()
        except Exception as exc:
            self._state = "idle"
            self._deliver = None
            raise BackendUnavailable(
                "Redis pub/sub: cannot connect the subscriber", {"cause": type(exc).__name__}
            ) from exc
        self._sub_task = asyncio.get_running_loop().create_task(
            self._subscriber_loop(conn), name="wskit-redis-subscriber"
        )
        await self._resubscribe(conn)
        await self.wait_connected(self.command_timeout)

    async def close(self) -> None:
        """Stop receiving, fail waiting publishes, close both connections (idempotent)."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._ready.clear()
        for task in (self._sub_task, self._pub_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sub_task = self._pub_task = None
        self._fail_confirmations(BackendUnavailable("Redis pub/sub closed"))
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_result(self._failure("closed"))
        for conn in (self._sub, self._pub):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.disconnect()
        self._sub = self._pub = None
        self._local.clear()

    # -------------------------------------------------------------- subscribe

    def subscribers(self, topic: str) -> Collection[str]:
        return self._local.get(topic, _EMPTY)

    def topics(self) -> list[str]:
        """Topics with local subscribers (each one subscribed at Redis)."""
        return list(self._local)

    async def subscribe(self, client_id: str, topic: str) -> None:
        """Add a local subscriber; the topic's first one subscribes at Redis
        (confirmed before this returns; before :meth:`start`, ``start``
        subscribes every indexed topic). Raises ``BackendUnavailable`` when
        Redis cannot be reached (the index is left unchanged)."""
        subs = self._local.get(topic)
        if subs is not None:
            subs.add(client_id)
            return
        async with self._lock:
            subs = self._local.get(topic)
            if subs is not None:
                subs.add(client_id)
                return
            if self._state != "idle":  # before start(), start() subscribes them all
                await self._broker_subscribe(topic)
            self._local[topic] = {client_id}

    async def unsubscribe(self, client_id: str, topic: str) -> None:
        """Remove a local subscriber; the topic's last one unsubscribes at Redis."""
        subs = self._local.get(topic)
        if subs is None or client_id not in subs:
            return
        subs.discard(client_id)
        if subs:
            return
        async with self._lock:
            if self._local.get(topic) is not subs or subs:
                return
            del self._local[topic]
            conn = self._sub
            if conn is not None and conn.is_connected and self._state == "connected":
                try:
                    await conn.send_command("UNSUBSCRIBE", self.channel(topic), check_health=False)
                except Exception as exc:  # the reader notices and reconnects without it
                    _log.debug("wskit.redis: UNSUBSCRIBE %s failed: %r", topic, exc)

    async def _broker_subscribe(self, topic: str) -> None:
        conn = self._sub
        if self._state != "connected" or conn is None or not conn.is_connected:
            raise BackendUnavailable(
                "Redis pub/sub: subscriber not connected", {"state": self._state, "topic": topic}
            )
        channel = self.channel(topic)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm[channel] = waiter
        try:
            await conn.send_command("SUBSCRIBE", channel, check_health=False)
            await asyncio.wait_for(asyncio.shield(waiter), self.command_timeout)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(
                "Redis pub/sub: SUBSCRIBE failed", {"cause": type(exc).__name__, "topic": topic}
            ) from exc
        finally:
            if self._confirm.get(channel) is waiter:
                del self._confirm[channel]
            if not waiter.done():
                waiter.cancel()

    def _fail_confirmations(self, exc: BaseException) -> None:
        confirm, self._confirm = self._confirm, {}
        for waiter in confirm.values():
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: no "never retrieved" warning
        ping, self._ping_waiter = self._ping_waiter, None
        if ping is not None and not ping.done():
            ping.cancel()

    # ------------------------------------------------------------- subscriber

    async def _open_subscriber(self) -> AbstractConnection:
        conn = self._connection(protocol=2, decode_responses=False, socket_timeout=None)
        try:
            await asyncio.wait_for(conn.connect(), self.command_timeout)  # type: ignore[no-untyped-call]
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        self._sub = conn
        return conn

    async def _resubscribe(self, conn: AbstractConnection) -> None:
        # SUBSCRIBE every wanted channel, then PING: the pong arrives after all
        # confirmations, so "ready" means every topic is live again.
        self._ready.clear()
        loop = asyncio.get_running_loop()
        self._ping_waiter = ping = loop.create_future()
        channels = [self.channel(t) for t in self._local]
        commands: list[tuple[str, ...]] = []
        if channels:
            commands.append(("SUBSCRIBE", *channels))
        commands.append(("PING",))
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        del ping  # resolved by the reader

    async def _subscriber_loop(self, conn: AbstractConnection) -> None:
        attempt = 0
        while True:
            try:
                while True:
                    reply = await conn.read_response(disconnect_on_error=True)
                    self._on_reply(reply)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._connection_lost(conn, exc)
            # Reconnect with backoff until it works (or close() cancels us).
            while True:
                attempt += 1
                delay = min(self.reconnect_max_ms, self.reconnect_initial_ms * 2 ** (attempt - 1))
                await asyncio.sleep(random.uniform(0, delay) / 1000.0)
                try:
                    conn = await self._open_subscriber()
                    async with self._lock:
                        self._state = "connected"
                        await self._resubscribe(conn)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failures += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    self._state = "reconnecting"
                    continue
                self._reconnects += 1
                self._failures = 0
                attempt = 0
                break

    def _connection_lost(self, conn: AbstractConnection, exc: BaseException) -> None:
        if self._state == "closed":
            return
        _log.warning("wskit.redis: subscriber connection lost (%r); reconnecting", exc)
        self._state = "reconnecting"
        self._ready.clear()
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._failures += 1
        if self._sub is conn:
            self._sub = None
        self._fail_confirmations(BackendUnavailable("Redis pub/sub: connection lost"))

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, (bytes, str)):  # +PONG outside subscribed mode
            self._on_pong()
            return
        if not isinstance(reply, list) or not reply:
            return
        kind = _text(reply[0])
        if kind == "message" and len(reply) >= 3:
            self._on_message(_text(reply[1]), reply[2])
        elif kind == "subscribe":
            waiter = self._confirm.get(_text(reply[1]))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == "pong":
            self._on_pong()

    def _on_pong(self) -> None:
        ping, self._ping_waiter = self._ping_waiter, None
        if ping is not None and not ping.done():
            ping.set_result(None)
        if self._state == "connecting":
            self._state = "connected"
        if self._state == "connected":
            self._ready.set()

    def _on_message(self, channel: str, data: Any) -> None:
        self._received += 1
        prefix = self.channel_prefix
        topic = channel[len(prefix) :] if channel.startswith(prefix) else None
        if topic is None or topic not in self._local:
            return
        deliver = self._deliver
        try:
            envelope = PublishEnvelope.from_json(data)
        except ValueError:
            self._decode_errors += 1
            _log.warning("wskit.redis: dropped a message on %s that is not an envelope", channel)
            return
        if envelope.topic != topic:
            self._decode_errors += 1
            _log.warning(
                "wskit.redis: dropped a message on %s for topic %r", channel, envelope.topic
            )
            return
        if deliver is None:
            return
        try:
            deliver(envelope)
        except Exception:  # deliver must not raise; never let it kill the reader
            _log.exception("wskit.redis: deliver() failed")

    # -------------------------------------------------------------- publisher

    def _failure(self, cause: str, error: str = "ADAPTER_ERROR") -> PublishResult:
        self._publish_failures += 1
        return PublishResult.failure(
            error, retryable=True, adapter=_ADAPTER, details={"cause": cause}
        )

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        """Publish to ``channel_prefix + topic``; ``ok`` once Redis accepted it.

        Never raises: failures are ``ADAPTER_ERROR`` (Redis unreachable, timeout,
        closed) or ``BACKPRESSURE`` (too many publishes waiting), both retryable.
        """
        if self._state == "closed":
            return self._failure("closed")
        if len(self._queue) >= self.max_pending_publishes:
            return self._failure("too many pending publishes", "BACKPRESSURE")
        try:
            data = envelope.to_json()
        except (TypeError, ValueError) as exc:
            self._publish_failures += 1
            return PublishResult.failure(
                "VALIDATION", adapter=_ADAPTER, details={"cause": type(exc).__name__}
            )
        future: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Publish(self.channel(envelope.topic), data, future))
        if self._pub_task is None:
            self._pub_task = asyncio.get_running_loop().create_task(
                self._publisher_loop(), name="wskit-redis-publisher"
            )
        self._wakeup.set()
        return await future

    async def _publisher_loop(self) -> None:
        queue = self._queue
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), 512))]
                try:
                    await asyncio.wait_for(self._send_batch(batch), self.command_timeout)
                except asyncio.CancelledError:
                    for item in batch:
                        if not item.future.done():
                            item.future.set_result(self._failure("closed"))
                    raise
                except Exception as exc:
                    conn, self._pub = self._pub, None
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.disconnect(nowait=True)
                    cause = type(exc).__name__
                    _log.debug("wskit.redis: publish batch of %d failed: %r", len(batch), exc)
                    for item in batch:
                        if not item.future.done():
                            item.future.set_result(self._failure(cause))

    async def _send_batch(self, batch: list[_Publish]) -> None:
        conn = self._pub
        if conn is None:
            conn = self._pub = self._connection()
        if not conn.is_connected:
            await conn.connect()  # type: ignore[no-untyped-call]
        packed = conn.pack_commands([("PUBLISH", item.channel, item.data) for item in batch])
        await conn.send_packed_command(packed, check_health=False)
        for item in batch:
            await conn.read_response()
            self._published += 1
            if not item.future.done():
                item.future.set_result(PublishResult.success("unknown"))

    def __repr__(self) -> str:
        return (
            f"<RedisPubSub prefix={self.channel_prefix!r} state={self._state}"
            f" topics={len(self._local)}>"
        )


def redis_pubsub(
    client: Redis,
    *,
    channel_prefix: str = "",
    command_timeout: float = 5.0,
    max_pending_publishes: int = 10_000,
    reconnect_initial_ms: float = 100.0,
    reconnect_max_ms: float = 5_000.0,
) -> RedisPubSub:
    """A Redis pub/sub adapter for ``wskit.pubsub.with_pubsub(adapter=...)``."""
    return RedisPubSub(
        client,
        channel_prefix=channel_prefix,
        command_timeout=command_timeout,
        max_pending_publishes=max_pending_publishes,
        reconnect_initial_ms=reconnect_initial_ms,
        reconnect_max_ms=reconnect_max_ms,
    )
