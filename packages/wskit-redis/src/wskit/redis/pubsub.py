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
  delivers it to its own subscribers: at most once per subscriber (Redis
  pub/sub stores nothing and retries nothing), and a message is never
  delivered locally before Redis accepted it.
- ``publish`` returns ``ok`` (capability ``"unknown"``) once Redis accepted the
  message; any failure (Redis down, timeout, too many waiting publishes, this
  instance not subscribed) returns ``ADAPTER_ERROR``/``BACKPRESSURE``,
  retryable, and is counted in :meth:`RedisPubSub.health`. Nothing is
  swallowed. A failed publish may still have reached Redis if the connection
  broke after the write (the result says "not confirmed").
- When the subscriber connection breaks, the instance probes Redis at once and
  then with a short, bounded backoff (exponential from ``reconnect_initial_ms``
  up to ``reconnect_max_ms``, full jitter); the first connection that succeeds
  re-subscribes every topic that still has local subscribers. Until Redis
  confirmed that, and for ``resume_grace_ms`` more (the time peers with the
  same settings need to notice Redis is back and re-subscribe too), publishes
  are refused with ``ADAPTER_ERROR`` without being sent. Messages published
  while an instance was not subscribed are not replayed to it.
- State changes are logged on the ``wskit.redis`` logger: the subscriber
  connection lost (WARNING), restored (INFO, with the channels re-subscribed
  and the outage duration), failed publishes (WARNING, at most one record per
  ``failure_log_interval`` seconds with a count of the others). Credentials
  are never logged. ``health()``, ``wait_connected()`` and
  ``wait_publish_ready()`` make the state observable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError

from wskit.core.pubsub import PublishResult, StreamPosition
from wskit.pubsub.adapter import DeliverFn, HistoryPage, PublishEnvelope
from wskit.pubsub.errors import BackendUnavailable
from wskit.pubsub.history import HistoryPolicy
from wskit.redis._history import (
    PUBLISH_HISTORY_SHA,
    READ_HISTORY_SHA,
    SCRIPTS,
    history_keys,
    parse_positioned,
    parse_read,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

__all__ = ["RedisPubSub", "RedisPubSubHealth", "redis_pubsub"]

_log = logging.getLogger("wskit.redis")

_EMPTY: Final[frozenset[str]] = frozenset()
_ADAPTER: Final = "redis"
# Causes (details.cause) of publishes refused because this instance is not subscribed.
_SUBSCRIBER_DOWN: Final = "subscriber down"
_RESUME_GRACE: Final = "resume grace"
# The backoff exponent stops growing here (the delay is capped long before).
_MAX_EXPONENT: Final = 30
# A fill reads this many entries per round trip, at most this many times.
_FILL_LIMIT: Final = 1000
_MAX_FILL_ROUNDS: Final = 10_000
_FILL_POLICY: Final = HistoryPolicy(max_messages=1)
# "scheme://user:password@" -> "scheme://***@" in anything logged.
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]*@")

State = Literal["idle", "connecting", "connected", "reconnecting", "closed"]


def _redact(text: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", text)


def _describe(exc: BaseException) -> str:
    return _redact(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class RedisPubSubHealth:
    """A snapshot of one instance's Redis pub/sub state.

    ``connected``: the subscriber connection is up and every topic with local
    subscribers is subscribed at Redis. ``publish_ready``: ``publish()`` sends
    to Redis now (false while the subscriber is down or re-subscribing, during
    the resume grace, and once closed). ``state``: ``"idle"`` (not started),
    ``"connecting"``, ``"connected"``, ``"reconnecting"`` (after a failure,
    probing) or ``"closed"``. ``reconnects``: outages recovered from (subscriber
    lost, then re-subscribed). ``consecutive_failures``: failed connection
    attempts since the last success. ``last_outage_ms``: how long the last
    recovered outage lasted, from the connection lost to the re-subscription
    confirmed. Counters: ``published``/``publish_failures`` (publish results),
    ``received`` (messages from Redis), ``decode_errors`` (messages that were
    not a valid envelope; dropped), ``history_fills`` (history topics read
    from their stream to fill a gap: after a reconnect, or offsets skipped).
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
    publish_ready: bool = False
    last_outage_ms: float | None = None
    history_fills: int = 0


# What a queued command is: a plain PUBLISH, a history append (the publish
# script), a history read (the read script).
_PUBLISH: Final = 0
_APPEND: Final = 1
_READ: Final = 2


class _Command:
    """One command for the publisher connection and the future it answers."""

    __slots__ = ("args", "future", "kind", "retried")

    def __init__(self, kind: int, args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.args = args
        self.future = future
        self.retried = False


class _Seq:
    """This instance's place in one history topic: the last offset delivered
    here, and whether a gap is being filled from the stream (live messages
    are then noted, not delivered: the fill reads them)."""

    __slots__ = ("epoch", "filling", "last", "seen", "seen_epoch")

    def __init__(self, epoch: str, last: int) -> None:
        self.epoch = epoch
        self.last = last
        self.filling = False
        self.seen_epoch: str | None = None
        self.seen = 0

    def note(self, position: StreamPosition) -> None:
        if position.epoch != self.seen_epoch:
            self.seen_epoch, self.seen = position.epoch, position.offset
        elif position.offset > self.seen:
            self.seen = position.offset

    def behind(self) -> bool:
        """Messages were seen past what was delivered (or in another epoch)."""
        seen_epoch = self.seen_epoch
        return seen_epoch is not None and (seen_epoch != self.epoch or self.seen > self.last)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pack(commands: list[tuple[Any, ...]]) -> bytes:
    """RESP for a pipeline of commands whose arguments are str, int or bytes
    (what this adapter sends): one buffer, no per-argument chunking."""
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            if type(arg) is str:
                data = arg.encode("utf-8", "surrogatepass")
            elif type(arg) is bytes:
                data = arg
            else:
                data = str(int(arg)).encode("ascii")
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(out)


class RedisPubSub:
    """Distributed pub/sub over Redis channels (see the module docs).

    Options (keyword-only):

    - ``channel_prefix``: prepended to every topic (default ``""``; use one per
      application sharing a Redis).
    - ``command_timeout``: seconds to wait for Redis to accept a publish batch,
      confirm a ``SUBSCRIBE`` or accept a connection (default 5).
    - ``max_pending_publishes``: publishes waiting for the publisher connection
      beyond which ``publish`` returns ``BACKPRESSURE`` (default 10 000).
    - ``reconnect_initial_ms`` / ``reconnect_max_ms``: how often the subscriber
      probes Redis while it is unreachable: at once, then after
      ``min(max, initial * 2**(n-1))`` ms with full jitter (defaults 10 ms /
      100 ms, so Redis coming back is noticed within about 100 ms).
    - ``resume_grace_ms``: after an outage, publishes keep failing this long
      once this instance re-subscribed, so that peers probing at the same pace
      are subscribed again before anything is reported ``ok`` (default: twice
      ``reconnect_max_ms``, a peer's next probe plus as long again to connect
      and confirm its ``SUBSCRIBE``; 0 turns it off).
    - ``failure_log_interval``: seconds between two WARNING records about
      failed publishes (default 10; the failures in between are counted in the
      next record).
    """

    name = _ADAPTER

    def __init__(
        self,
        client: Redis,
        *,
        channel_prefix: str = "",
        command_timeout: float = 5.0,
        max_pending_publishes: int = 10_000,
        reconnect_initial_ms: float = 10.0,
        reconnect_max_ms: float = 100.0,
        resume_grace_ms: float | None = None,
        failure_log_interval: float = 10.0,
    ) -> None:
        if not isinstance(channel_prefix, str):
            raise TypeError("channel_prefix must be a string")
        if command_timeout <= 0 or max_pending_publishes < 1:
            raise ValueError("command_timeout and max_pending_publishes must be positive")
        if reconnect_initial_ms <= 0 or reconnect_max_ms < reconnect_initial_ms:
            raise ValueError("need 0 < reconnect_initial_ms <= reconnect_max_ms")
        if resume_grace_ms is None:
            resume_grace_ms = 2 * reconnect_max_ms
        if resume_grace_ms < 0 or failure_log_interval < 0:
            raise ValueError("resume_grace_ms and failure_log_interval must not be negative")
        self._client = client
        self.channel_prefix = channel_prefix
        self.command_timeout = command_timeout
        self.max_pending_publishes = max_pending_publishes
        self.reconnect_initial_ms = reconnect_initial_ms
        self.reconnect_max_ms = reconnect_max_ms
        self.resume_grace_ms = resume_grace_ms
        self.failure_log_interval = failure_log_interval
        # Local index: topic -> client ids (topics here are subscribed at Redis).
        self._local: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()
        self._deliver: DeliverFn | None = None
        self._state: State = "idle"
        self._where = self._endpoint()
        # Subscriber side.
        self._sub: AbstractConnection | None = None
        self._sub_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # connected and every local topic subscribed
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._resubscribing = 0  # channels in the last re-subscription
        self._down_since: float | None = None  # monotonic time the subscriber was lost
        # Publishing is refused from the subscriber loss until the resume grace ended.
        self._publishing = asyncio.Event()
        self._grace: asyncio.TimerHandle | None = None
        # Publisher side.
        self._pub: AbstractConnection | None = None
        self._pub_task: asyncio.Task[None] | None = None
        self._pub_stale = False  # replace the publisher connection before the next batch
        self._queue: deque[_Command] = deque()
        self._wakeup = asyncio.Event()
        self._pub_scripts = False  # the history scripts are loaded on the publisher connection
        # History: this instance's place in each history topic with local subscribers.
        self._seq: dict[str, _Seq] = {}
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._history_fills = 0
        self._epoch_seed = secrets.token_hex(6)
        self._epochs = itertools.count(1)
        # Failed-publish log throttle.
        self._fail_logged_at = -float("inf")
        self._fail_unlogged = 0
        self._fail_last_cause = ""
        # Health.
        self._reconnects = 0
        self._failures = 0
        self._last_error: str | None = None
        self._last_outage_ms: float | None = None
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

    def _endpoint(self) -> str:
        # Where Redis is, for log records: host:port/db or the socket path,
        # never the username or password.
        kw = self._client.connection_pool.connection_kwargs
        if kw.get("path"):
            where = str(kw["path"])
        else:
            where = f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        return _redact(f"{where}/{kw.get('db', 0)}")

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
            publish_ready=self._state != "closed" and self._refusal() is None,
            last_outage_ms=self._last_outage_ms,
            history_fills=self._history_fills,
        )

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the subscriber is connected and re-subscribed (raises
        ``TimeoutError`` after ``timeout`` seconds)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_publish_ready(self, timeout: float | None = None) -> None:
        """Wait until ``publish()`` sends to Redis again: re-subscribed and the
        resume grace over (raises ``TimeoutError`` after ``timeout`` seconds)."""
        if self._state == "closed":
            raise RuntimeError("RedisPubSub is closed")
        if self._refusal() is not None:
            await asyncio.wait_for(self._publishing.wait(), timeout)

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
        self._stop_publishing()
        for task in (self._sub_task, self._pub_task, *self._fills.values()):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sub_task = self._pub_task = None
        self._fills.clear()
        self._seq.clear()
        self._fail_confirmations(BackendUnavailable("Redis pub/sub closed"))
        while self._queue:
            self._fail_command(self._queue.popleft(), "closed")
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
            self._seq.pop(topic, None)
            fill = self._fills.pop(topic, None)
            if fill is not None:
                fill.cancel()
            conn = self._sub
            if conn is not None and conn.is_connected and self._state == "connected":
                try:
                    await conn.send_command("UNSUBSCRIBE", self.channel(topic), check_health=False)
                except Exception as exc:  # the reader notices and reconnects without it
                    _log.debug("wskit.redis: UNSUBSCRIBE %s failed: %s", topic, _describe(exc))

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
        channels = [self.channel(t) for t in self._local]
        self._resubscribing = len(channels)
        commands: list[tuple[str, ...]] = []
        if channels:
            commands.append(("SUBSCRIBE", *channels))
        commands.append(("PING",))
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)

    async def _subscriber_loop(self, conn: AbstractConnection) -> None:
        while True:
            try:
                while True:
                    reply = await conn.read_response(disconnect_on_error=True)
                    self._on_reply(reply)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._connection_lost(conn, exc)
            conn = await self._reconnect()

    async def _reconnect(self) -> AbstractConnection:
        # Probe at once, then with a short bounded backoff; the first connection
        # that succeeds re-subscribes (the reader confirms it with the pong).
        attempt = 0
        while True:
            if attempt:
                exponent = min(attempt - 1, _MAX_EXPONENT)
                delay = min(self.reconnect_max_ms, self.reconnect_initial_ms * 2**exponent)
                await asyncio.sleep(random.uniform(0, delay) / 1000.0)
            attempt += 1
            conn: AbstractConnection | None = None
            try:
                conn = await self._open_subscriber()
                async with self._lock:
                    self._state = "connected"
                    await self._resubscribe(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                self._last_error = _describe(exc)
                self._state = "reconnecting"
                _log.debug("wskit.redis: reconnect %d failed: %s", attempt, self._last_error)
                if conn is not None:
                    if self._sub is conn:
                        self._sub = None
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
                continue
            return conn

    def _connection_lost(self, conn: AbstractConnection, exc: BaseException) -> None:
        if self._state == "closed":
            return
        self._state = "reconnecting"
        self._ready.clear()
        self._stop_publishing()
        self._pub_stale = True  # it very likely broke too: reconnect it before the next batch
        self._last_error = _describe(exc)
        self._failures += 1
        if self._sub is conn:
            self._sub = None
        self._fail_confirmations(BackendUnavailable("Redis pub/sub: connection lost"))
        if self._down_since is None:
            self._down_since = time.monotonic()
            _log.warning(
                "wskit.redis: subscriber connection to %s lost (%s); publishes fail until "
                "it is back and re-subscribed",
                self._where,
                self._last_error,
            )
        else:  # lost again while re-subscribing: the same outage
            _log.debug("wskit.redis: subscriber connection lost again: %s", self._last_error)

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
        # The only PING is the one after (re-)subscribing: every channel is confirmed.
        if self._state == "connecting":
            self._state = "connected"
        if self._state != "connected" or self._ready.is_set():
            return
        self._ready.set()
        self._failures = 0
        down, self._down_since = self._down_since, None
        if down is None:  # the first connection (start)
            self._start_publishing()
            return
        self._reconnects += 1
        self._last_outage_ms = (time.monotonic() - down) * 1000.0
        # What was published to history topics while this instance was not
        # subscribed is in their streams: read it before newer messages.
        for topic in list(self._seq):
            if topic in self._local:
                self._fill(topic)
        grace = self.resume_grace_ms
        _log.info(
            "wskit.redis: subscriber connection to %s restored after %.3f s: re-subscribed "
            "%d channel(s); publishing resumes in %.0f ms",
            self._where,
            self._last_outage_ms / 1000.0,
            self._resubscribing,
            grace,
        )
        if grace > 0:
            self._grace = asyncio.get_running_loop().call_later(
                grace / 1000.0, self._start_publishing
            )
        else:
            self._start_publishing()

    def _start_publishing(self) -> None:
        self._grace = None
        if self._state != "connected" or not self._ready.is_set():
            return
        self._publishing.set()
        if self._fail_unlogged:  # the rest of the outage's failures, in one record
            self._log_failures(None)

    def _stop_publishing(self) -> None:
        self._publishing.clear()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _refusal(self) -> str | None:
        # Why publish() must not send now (None: it may). Before start() it may.
        if self._state == "idle" or self._publishing.is_set():
            return None
        return _RESUME_GRACE if self._ready.is_set() else _SUBSCRIBER_DOWN

    def _on_message(self, channel: str, data: Any) -> None:
        self._received += 1
        prefix = self.channel_prefix
        topic = channel[len(prefix) :] if channel.startswith(prefix) else None
        if topic is None or topic not in self._local:
            return
        deliver = self._deliver
        if data[:1] in (b"#", "#"):  # a history topic's positioned message
            try:
                envelope = parse_positioned(data)
            except (ValueError, UnicodeDecodeError):
                envelope = None
            if envelope is None or envelope.topic != topic:
                self._decode_errors += 1
                _log.warning("wskit.redis: dropped a history message on %s", channel)
                return
            self._on_positioned(topic, envelope)
            return
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
        self._note_failure(f"{error}: {cause}")
        return PublishResult.failure(
            error, retryable=True, adapter=_ADAPTER, details={"cause": cause}
        )

    def _note_failure(self, what: str) -> None:
        # At most one WARNING per failure_log_interval; the others are counted
        # and reported with the next record (or when publishing resumes).
        self._fail_last_cause = what
        if time.monotonic() - self._fail_logged_at < self.failure_log_interval:
            self._fail_unlogged += 1
            return
        self._log_failures(what)

    def _log_failures(self, what: str | None) -> None:
        self._fail_logged_at = time.monotonic()
        unlogged, self._fail_unlogged = self._fail_unlogged, 0
        if what is None:
            _log.warning(
                "wskit.redis: %d more publish(es) to %s failed since the previous record "
                "(last: %s)",
                unlogged,
                self._where,
                self._fail_last_cause,
            )
        elif unlogged:
            _log.warning(
                "wskit.redis: publish to %s failed (%s); %d more failed since the previous record",
                self._where,
                what,
                unlogged,
            )
        else:
            _log.warning("wskit.redis: publish to %s failed (%s)", self._where, what)

    async def publish(self, envelope: PublishEnvelope) -> PublishResult:
        """Publish to ``channel_prefix + topic``; ``ok`` once Redis accepted it.

        With ``envelope.history`` set, the message is appended to the topic's
        stream and published in one script; the result carries its position.
        Such publishes are not held back by the resume grace (peers fill what
        they missed from the stream), only while this instance is not
        subscribed.

        Never raises: failures are ``ADAPTER_ERROR`` (Redis unreachable, timeout,
        closed, or this instance not subscribed yet after an outage: not sent)
        or ``BACKPRESSURE`` (too many publishes waiting), both retryable.
        """
        if self._state == "closed":
            return self._failure("closed")
        refusal = self._refusal()
        # A history topic needs no resume grace: peers that re-subscribe later
        # read what they missed from its stream.
        if refusal is not None and (refusal != _RESUME_GRACE or envelope.history is None):
            return self._failure(refusal)
        if len(self._queue) >= self.max_pending_publishes:
            return self._failure("too many pending publishes", "BACKPRESSURE")
        try:
            data = envelope.to_json()
        except (TypeError, ValueError) as exc:
            self._publish_failures += 1
            return PublishResult.failure(
                "VALIDATION", adapter=_ADAPTER, details={"cause": type(exc).__name__}
            )
        topic = envelope.topic
        policy = envelope.history
        if policy is None:
            result: PublishResult = await self._command(
                _PUBLISH, ("PUBLISH", self.channel(topic), data)
            )
            return result
        stream, position = history_keys(self.channel_prefix, topic)
        result = await self._command(
            _APPEND,
            (
                "EVALSHA",
                PUBLISH_HISTORY_SHA,
                2,
                stream,
                position,
                self.channel(topic),
                self._epoch_candidate(),
                policy.max_messages or 0,
                policy.max_age_ms or 0,
                data,
            ),
        )
        return result

    async def read_history(
        self,
        topic: str,
        since: StreamPosition | None,
        *,
        limit: int,
        policy: HistoryPolicy,
    ) -> HistoryPage:
        """The topic's epoch, newest and oldest kept offsets, and up to ``limit``
        entries after ``since`` (when in the current epoch), in one script.
        Raises :class:`~wskit.pubsub.BackendUnavailable` when Redis cannot answer."""
        if self._state == "closed":
            raise BackendUnavailable("Redis pub/sub closed", {"topic": topic})
        stream, position = history_keys(self.channel_prefix, topic)
        reply = await self._command(
            _READ,
            (
                "EVALSHA",
                READ_HISTORY_SHA,
                2,
                stream,
                position,
                self._epoch_candidate(),
                since.epoch if since is not None else "",
                since.offset if since is not None else 0,
                limit,
                policy.max_age_ms or 0,
            ),
        )
        try:
            page = parse_read(topic, reply)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise BackendUnavailable(
                "Redis pub/sub: unreadable history", {"topic": topic, "cause": repr(exc)}
            ) from exc
        if topic in self._local and topic not in self._seq:
            self._seq[topic] = _Seq(page.epoch, page.top)
        return page

    def _epoch_candidate(self) -> str:
        # Used only when a topic has no epoch yet: unique per adapter and call.
        return f"{self._epoch_seed}{next(self._epochs):x}"

    async def _command(self, kind: int, args: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Command(kind, args, future))
        if self._pub_task is None:
            self._pub_task = asyncio.get_running_loop().create_task(
                self._publisher_loop(), name="wskit-redis-publisher"
            )
        self._wakeup.set()
        return await future

    def _fail_command(self, item: _Command, cause: str) -> None:
        if item.future.done():
            return
        if item.kind == _READ:
            item.future.set_exception(
                BackendUnavailable("Redis pub/sub: history read failed", {"cause": cause})
            )
            item.future.exception()  # retrieved even if the caller is gone
        else:
            item.future.set_result(self._failure(cause))

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
                        self._fail_command(item, "closed")
                    raise
                except Exception as exc:
                    conn, self._pub = self._pub, None
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.disconnect(nowait=True)
                    cause = type(exc).__name__
                    _log.debug(
                        "wskit.redis: publish batch of %d failed: %s", len(batch), _describe(exc)
                    )
                    for item in batch:
                        self._fail_command(item, cause)

    async def _send_batch(self, batch: list[_Command]) -> None:
        conn = self._pub
        if conn is not None and self._pub_stale:
            self._pub = None
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            conn = None
        self._pub_stale = False
        if conn is None:
            conn = self._pub = self._connection()
            self._pub_scripts = False
        if not conn.is_connected:
            await conn.connect()  # type: ignore[no-untyped-call]
            self._pub_scripts = False
        commands = [item.args for item in batch]
        load = not self._pub_scripts and any(item.kind != _PUBLISH for item in batch)
        if load:  # the scripts go first on a new connection (and after a SCRIPT FLUSH)
            commands[:0] = [("SCRIPT", "LOAD", source) for source in SCRIPTS]
        await conn.send_packed_command(_pack(commands), check_health=False)
        if load:
            for _ in SCRIPTS:
                await conn.read_response()
            self._pub_scripts = True
        retry: list[_Command] = []
        for item in batch:
            try:
                reply = await conn.read_response()
            except ResponseError as exc:
                if isinstance(exc, NoScriptError) and not item.retried:
                    item.retried = True  # flushed behind our back: load again, send again
                    self._pub_scripts = False
                    retry.append(item)
                else:
                    self._fail_command(item, type(exc).__name__)
                continue
            if item.future.done():
                continue
            if item.kind == _PUBLISH:
                self._published += 1
                item.future.set_result(PublishResult.success("unknown"))
            elif item.kind == _APPEND:
                self._published += 1
                epoch, _, offset = _text(reply).rpartition(":")
                item.future.set_result(
                    PublishResult.success("unknown", position=StreamPosition(epoch, int(offset)))
                )
            else:
                item.future.set_result(reply)
        if retry:
            self._queue.extendleft(reversed(retry))
            self._wakeup.set()

    # ---------------------------------------------------------------- history

    def _on_positioned(self, topic: str, envelope: PublishEnvelope) -> None:
        """A history topic's message from Redis: deliver it in offset order,
        once; a skipped offset or another epoch starts a fill from the stream."""
        position = envelope.position
        assert position is not None
        seq = self._seq.get(topic)
        if seq is None:
            self._seq[topic] = _Seq(position.epoch, position.offset)
            self._hand_over(envelope)
            return
        if seq.filling:
            seq.note(position)
            return
        if position.epoch == seq.epoch:
            if position.offset <= seq.last:
                return  # read from the stream already
            if position.offset == seq.last + 1:
                seq.last = position.offset
                self._hand_over(envelope)
                return
        seq.note(position)
        self._fill(topic)

    def _hand_over(self, envelope: PublishEnvelope) -> None:
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(envelope)
        except Exception:  # deliver must not raise; never let it kill the reader
            _log.exception("wskit.redis: deliver() failed")

    def _fill(self, topic: str) -> None:
        """Read ``topic``'s stream from the last offset delivered here (once at a time)."""
        task = self._fills.get(topic)
        seq = self._seq.get(topic)
        if seq is None or (task is not None and not task.done()):
            return
        seq.filling = True
        self._history_fills += 1
        self._fills[topic] = asyncio.get_running_loop().create_task(
            self._run_fill(topic, seq), name=f"wskit-redis-fill:{topic}"
        )

    async def _run_fill(self, topic: str, seq: _Seq) -> None:
        # Any policy will do: the bounds are enforced on publish; the age bound
        # only makes a read trim, which publishes do as well.
        policy = _FILL_POLICY
        try:
            for _ in range(_MAX_FILL_ROUNDS):
                page = await self.read_history(
                    topic, StreamPosition(seq.epoch, seq.last), limit=_FILL_LIMIT, policy=policy
                )
                if self._seq.get(topic) is not seq:
                    return  # unsubscribed meanwhile
                if page.epoch != seq.epoch:
                    # The history was lost (a restart without persistence): what
                    # the new epoch holds comes next; the plugin announces the gap.
                    _log.info(
                        "wskit.redis: history of %r restarted in a new epoch (%s -> %s)",
                        topic,
                        seq.epoch,
                        page.epoch,
                    )
                    seq.epoch, seq.last = page.epoch, 0
                    continue
                for envelope in page.entries:
                    position = envelope.position
                    assert position is not None
                    if position.offset > seq.last:
                        seq.last = position.offset
                        self._hand_over(envelope)
                if seq.seen_epoch != seq.epoch:  # noted in an older epoch: not in this one
                    seq.seen_epoch = None
                if len(page.entries) >= _FILL_LIMIT or seq.behind():
                    continue
                return
            _log.warning("wskit.redis: filling the history of %r did not catch up", topic)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Redis went away again: the next reconnect (or the next skipped
            # offset) starts another fill from the same place.
            _log.debug("wskit.redis: filling the history of %r failed: %s", topic, exc)
        finally:
            seq.filling = False
            seq.seen_epoch = None
            if self._fills.get(topic) is asyncio.current_task():
                del self._fills[topic]

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
    reconnect_initial_ms: float = 10.0,
    reconnect_max_ms: float = 100.0,
    resume_grace_ms: float | None = None,
    failure_log_interval: float = 10.0,
) -> RedisPubSub:
    """A Redis pub/sub adapter for ``wskit.pubsub.with_pubsub(adapter=...)``."""
    return RedisPubSub(
        client,
        channel_prefix=channel_prefix,
        command_timeout=command_timeout,
        max_pending_publishes=max_pending_publishes,
        reconnect_initial_ms=reconnect_initial_ms,
        reconnect_max_ms=reconnect_max_ms,
        resume_grace_ms=resume_grace_ms,
        failure_log_interval=failure_log_interval,
    )
