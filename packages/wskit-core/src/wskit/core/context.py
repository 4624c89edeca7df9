"""Handler contexts: what a handler, middleware or lifecycle hook receives.

``ctx.send``/``reply``/``progress``/``error`` are synchronous and never block:
they append one frame to the connection's outbound FIFO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from wskit.core.envelope import ERROR, RPC_ERROR, RPC_PROGRESS
from wskit.core.errors import _UNSET

if TYPE_CHECKING:
    from wskit.core.connection import Connection
    from wskit.core.pubsub import PublishResult, ReadonlyTopics, Topics
    from wskit.core.router import Router
    from wskit.core.schema import MessageSchema, RpcSchema

__all__ = [
    "BaseContext",
    "CloseContext",
    "MessageContext",
    "OpenContext",
    "RpcContext",
]

P = TypeVar("P")
Q = TypeVar("Q")
R = TypeVar("R")
D = TypeVar("D")

_log = logging.getLogger("wskit.core")


class BaseContext(Generic[D]):
    """What every context has: the connection's identity and data, publishing."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection[D]) -> None:
        self.connection = connection

    @property
    def client_id(self) -> str:
        """Server-assigned connection id (never taken from the client)."""
        return self.connection.client_id

    @property
    def data(self) -> D:
        """The connection data (``authenticate()``'s result, then ``assign_data``)."""
        return self.connection.data

    @property
    def router(self) -> Router[D]:
        return self.connection.router

    @property
    def extensions(self) -> dict[str, Any]:
        """Per-connection storage for plugins."""
        return self.connection.extensions

    def assign_data(self, changes: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Shallow-merge changes into the connection data (dict keys or attributes)."""
        self.connection.assign_data(changes, **more)

    async def publish(
        self,
        topic: str,
        schema: MessageSchema[Q],
        payload: Q | Mapping[str, Any] | None = None,
        *,
        exclude_self: bool = False,
        partition_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Publish to a topic's subscribers; returns a PublishResult, never raises
        for runtime conditions. Requires ``with_pubsub()``."""
        router = self.connection.router
        pubsub = router.require_pubsub("ctx.publish()")
        meta = router.publish_meta(topic, schema, meta)
        return await pubsub.publish(
            topic,
            schema,
            payload,
            sender=self.connection,
            exclude_self=exclude_self,
            partition_key=partition_key,
            meta=meta,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} client_id={self.client_id!r}>"


class _SendingContext(BaseContext[D]):
    __slots__ = ()

    @property
    def topics(self) -> Topics:
        """This connection's subscriptions. Requires ``with_pubsub()``."""
        return self.connection.router.require_pubsub("ctx.topics").topics(self.connection)

    def send(
        self,
        schema: MessageSchema[Q],
        payload: Q | Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Send a message to this connection (validated unless switched off)."""
        self.connection.send(schema, payload, meta=meta)


class OpenContext(_SendingContext[D]):
    """Context of ``on_open`` hooks: identity, data, send, publish, topics."""

    __slots__ = ()


class CloseContext(BaseContext[D]):
    """Context of ``on_close`` hooks: no send; topics are read-only."""

    __slots__ = ("code", "reason")

    def __init__(self, connection: Connection[D], code: int | None, reason: str) -> None:
        super().__init__(connection)
        self.code = code
        self.reason = reason

    @property
    def topics(self) -> ReadonlyTopics:
        """The subscriptions the connection had, read-only."""
        return self.connection.router.require_pubsub("ctx.topics").readonly_topics(self.connection)


class MessageContext(_SendingContext[D], Generic[P, D]):
    """Context of an event handler (and of middleware on any route)."""

    __slots__ = ("error_code", "meta", "payload", "received_at", "schema", "type")

    def __init__(
        self,
        connection: Connection[D],
        schema: MessageSchema[P],
        payload: P,
        meta: dict[str, Any],
        received_at: float,
    ) -> None:
        self.connection = connection
        self.schema = schema
        self.type: str = schema.type
        self.payload: P = payload
        self.meta: dict[str, Any] = meta
        self.received_at: float = received_at
        #: The code of the last error this handler answered with ``error()``
        #: (``None``: none); middleware reads it to learn a message's outcome.
        self.error_code: str | None = None

    @property
    def is_rpc(self) -> bool:
        return False

    def send(
        self,
        schema: MessageSchema[Q],
        payload: Q | Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        inherit_correlation_id: bool = False,
    ) -> None:
        """Send a message to this connection.

        With ``inherit_correlation_id`` the inbound ``meta.correlationId`` (if
        any) is copied to the outbound frame.
        """
        cid = self.meta.get("correlationId") if inherit_correlation_id else None
        conn = self.connection
        conn.send_frame(conn.encode(schema, payload, meta=meta, correlation_id=cid))

    def error(
        self,
        code: str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = _UNSET,
    ) -> None:
        """Send an ``ERROR`` frame (``RPC_ERROR`` on RPC routes) to this client.

        ``message`` defaults to the code's description; ``details`` are
        sanitized (credential-like keys dropped). ``retry_after_ms`` defaults to
        the code's suggested backoff; pass ``None`` to send ``null`` ("do not
        retry"). It is never sent with terminal codes. The code is kept in
        ``ctx.error_code``.
        """
        self.error_code = code
        self.connection.send_error(
            ERROR,
            code,
            message,
            details,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            correlation_id=self.meta.get("correlationId"),
            sanitize=True,
        )


class RpcContext(MessageContext[P, D], Generic[P, R, D]):
    """Context of an RPC handler: one terminal ``reply``/``error``, any number
    of ``progress`` updates before it, cancellation and deadlines."""

    __slots__ = (
        "_cancel_callbacks",
        "_cancel_reason",
        "_last_progress_at",
        "_task",
        "_task_cancelled",
        "_timer",
        "correlation_id",
        "deadline",
        "terminal",
    )

    schema: RpcSchema[P, R]

    def __init__(
        self,
        connection: Connection[D],
        schema: RpcSchema[P, R],
        payload: P,
        meta: dict[str, Any],
        received_at: float,
        correlation_id: str,
    ) -> None:
        super().__init__(connection, schema, payload, meta, received_at)
        self.correlation_id = correlation_id
        self.terminal = False
        timeout = meta.get("timeoutMs")
        self.deadline: float | None = received_at + timeout if timeout is not None else None
        self._cancel_reason: str | None = None
        self._cancel_callbacks: list[Callable[[], Any]] | None = None
        self._last_progress_at: float | None = None
        self._task: Any = None
        self._task_cancelled = False
        self._timer: Any = None

    @property
    def is_rpc(self) -> bool:
        return True

    @property
    def cancelled(self) -> bool:
        """True once the RPC was aborted by the client, timed out or disconnected."""
        return self._cancel_reason is not None

    @property
    def cancel_reason(self) -> str | None:
        """``"client-abort"``, ``"deadline"``, ``"disconnect"`` or ``None``."""
        return self._cancel_reason

    def on_cancel(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the RPC is cancelled (at once if it already is)."""
        if self._cancel_reason is not None:
            self.connection.run_callback(callback)
            return
        if self._cancel_callbacks is None:
            self._cancel_callbacks = []
        self._cancel_callbacks.append(callback)

    def time_remaining(self) -> float | None:
        """Milliseconds left before ``deadline`` (never negative), or ``None``."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.connection.router.clock.now())

    def reply(
        self, payload: R | Mapping[str, Any] | None = None, *, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Send the terminal response (validated against the response schema).

        Later ``reply``/``error``/``progress`` calls are ignored.
        """
        if self.terminal:
            _log.debug("wskit: suppressed a second terminal send for RPC %s", self.correlation_id)
            return
        frame = self.connection.encode(
            self.schema.response, payload, meta=meta, correlation_id=self.correlation_id
        )
        self.terminal = True
        self.connection.send_frame(frame, terminal=True)

    def progress(
        self,
        payload: R | Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        throttle_ms: float | None = None,
    ) -> bool:
        """Send a non-terminal update (``$ws:rpc-progress``); returns whether it went out.

        With ``throttle_ms`` an update is dropped when fewer than ``throttle_ms``
        ms passed since the last update this RPC sent.
        """
        if self.terminal:
            return False
        now: float | None = None
        if throttle_ms is not None:
            now = self.connection.router.clock.now()
            last = self._last_progress_at
            if last is not None and now - last < throttle_ms:
                return False
        frame = self.connection.encode(
            self.schema.response,
            payload,
            meta=meta,
            correlation_id=self.correlation_id,
            message_type=RPC_PROGRESS,
        )
        if self.connection.send_frame(frame):
            self._last_progress_at = now if now is not None else self.connection.router.clock.now()
            return True
        return False

    def error(
        self,
        code: str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = _UNSET,
    ) -> None:
        """Send the terminal ``RPC_ERROR`` for this request (see ``MessageContext.error``)."""
        if self.terminal:
            return
        self.terminal = True
        self.error_code = code
        self.connection.send_error(
            RPC_ERROR,
            code,
            message,
            details,
            retryable=retryable,
            retry_after_ms=retry_after_ms,
            correlation_id=self.correlation_id,
            sanitize=True,
        )

    def _cancel(self, reason: str) -> None:
        if self._cancel_reason is not None:
            return
        self._cancel_reason = reason
        self.terminal = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        callbacks, self._cancel_callbacks = self._cancel_callbacks, None
        for cb in callbacks or ():
            self.connection.run_callback(cb)
        task = self._task
        if task is not None and not task.done():
            self._task_cancelled = True
            task.cancel()

    def _detach(self, registry: dict[str, Any]) -> None:
        """The handler is done: forget the task and stop the deadline timer."""
        if registry.get(self.correlation_id) is self:
            del registry[self.correlation_id]
        self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
