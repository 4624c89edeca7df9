"""The router: routes, middleware, lifecycle hooks, plugins.

The router never touches a socket; adapters create connections with
:meth:`Router.connect` and move frames (see :mod:`wskit.core.connection`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from wskit.core.clock import Clock, SystemClock
from wskit.core.connection import Connection, ErrorInfo, HeartbeatOptions, OverflowPolicy
from wskit.core.context import CloseContext, MessageContext, OpenContext, RpcContext
from wskit.core.errors import (
    CapabilityError,
    ErrorCode,
    ProtocolError,
    RouteConflictError,
    RpcError,
)
from wskit.core.schema import MessageSchema, RpcSchema

if TYPE_CHECKING:
    from wskit.core.pubsub import PublishRecord, PublishResult, PubSubProvider

__all__ = [
    "ErrorHook",
    "EventHandler",
    "Middleware",
    "Next",
    "Plugin",
    "PublishHook",
    "Route",
    "Router",
    "RpcHandler",
    "ValidatorPlugin",
    "create_router",
]

D = TypeVar("D")
P = TypeVar("P")
R = TypeVar("R")
Q = TypeVar("Q")

_log = logging.getLogger("wskit.core")

Next = Callable[[], Awaitable[None]]
EventHandler = Callable[[MessageContext[P, D]], Awaitable[None]]
RpcHandler = Callable[[RpcContext[P, R, D]], Awaitable[None]]
Middleware = Callable[[MessageContext[Any, D], Next], Awaitable[None]]
OpenHook = Callable[[OpenContext[D]], Awaitable[None] | None]
CloseHook = Callable[[CloseContext[D]], Awaitable[None] | None]
ErrorHook = Callable[[BaseException, ErrorInfo], Awaitable[None] | None]
Plugin = Callable[["Router[Any]"], "Router[Any] | None"]
#: ``hook(topic, schema, meta) -> meta``: see :meth:`Router.add_publish_hook`.
PublishHook = Callable[
    [str, MessageSchema[Any], "Mapping[str, Any] | None"], "Mapping[str, Any] | None"
]

OnConflict = Literal["error", "skip", "replace"]

_F = TypeVar("_F", bound=Callable[..., Any])


class Route(Generic[D]):
    """A registered handler with its schema and route-level middleware."""

    __slots__ = ("chain", "handler", "is_rpc", "middleware", "schema")

    def __init__(
        self,
        schema: MessageSchema[Any],
        handler: Callable[[Any], Awaitable[None]],
        middleware: tuple[Middleware[D], ...],
    ) -> None:
        self.schema = schema
        self.handler = handler
        self.middleware = middleware
        self.is_rpc = isinstance(schema, RpcSchema)
        self.chain: Callable[[Any], Awaitable[None]] | None = None


def _as_async(fn: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def call(*args: Any) -> None:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result

    call.__name__ = getattr(fn, "__name__", "handler")
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def _compose(
    middleware: tuple[Middleware[Any], ...], handler: Callable[[Any], Awaitable[None]]
) -> Callable[[Any], Awaitable[None]]:
    chain = handler
    for mw in reversed(middleware):
        chain = _wrap(mw, chain)
    return chain


def _wrap(
    mw: Middleware[Any], inner: Callable[[Any], Awaitable[None]]
) -> Callable[[Any], Awaitable[None]]:
    # Plain functions handing the awaitables on (no coroutine frame of their own): the
    # middleware awaits what next() returns, which is the inner step's coroutine.
    def step(ctx: Any) -> Awaitable[None]:
        called = False

        def next_() -> Awaitable[None]:
            nonlocal called
            if called:
                raise RuntimeError("next() called multiple times")
            called = True
            return inner(ctx)

        return mw(ctx, next_)

    return step


class Router(Generic[D]):
    """Routes messages of every connection to handlers.

    ``D`` is the connection-data type (what ``authenticate()`` returns and
    handlers see as ``ctx.data``). Options (all keyword-only):

    - ``clock``: time and timers (default :class:`SystemClock`).
    - ``on_unknown``: ``"error"`` (default) answers unknown types with
      ``UNIMPLEMENTED``; ``"ignore"`` only reports them to ``on_error``.
    - ``debug``: put exception text in ``INTERNAL`` errors (never in production).
    - ``max_concurrency``: handlers running at once per connection (default 1:
      strictly in arrival order).
    - ``max_message_bytes`` (default 1 MiB; larger frames close the connection
      with 1009), ``max_buffered_bytes`` (default 1 MiB of outbound frames),
      ``overflow`` (``"close"`` with 1013, or ``"drop"``), ``heartbeat``:
      per-connection defaults (see :meth:`connect`).
    - ``max_inbound_messages`` (default 1,024) and ``max_inbound_bytes`` (default
      1 MiB): the bound of each connection's queue of frames waiting for their
      handlers; at the bound the adapter stops reading from that socket until
      the queue has drained to half, so TCP slows the sender down.
    - ``eager_start`` (default ``True``; has an effect on Python 3.12+): start a
      connection's handler task inside ``receive()``, so a handler that does not wait
      for anything answers without an event-loop round trip. The handler runs in the
      connection's own task either way (``asyncio.current_task()``, cancellation and
      ``asyncio.timeout()`` behave alike). ``False`` starts the task at the event
      loop's next iteration, as on Python 3.10 and 3.11.

    Every option is checked here; a bad value raises ``ValueError`` (or
    ``TypeError``) naming it.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        on_unknown: Literal["error", "ignore"] = "error",
        debug: bool = False,
        max_concurrency: int = 1,
        max_message_bytes: int = 1 << 20,
        max_buffered_bytes: int = 1 << 20,
        overflow: OverflowPolicy = "close",
        heartbeat: HeartbeatOptions | None = None,
        max_inbound_messages: int = 1024,
        max_inbound_bytes: int = 1 << 20,
        eager_start: bool = True,
    ) -> None:
        if on_unknown not in ("error", "ignore"):
            raise ValueError(f"on_unknown must be 'error' or 'ignore', not {on_unknown!r}")
        if overflow not in ("close", "drop"):
            raise ValueError(f"overflow must be 'close' or 'drop', not {overflow!r}")
        for name, value in (
            ("max_concurrency", max_concurrency),
            ("max_message_bytes", max_message_bytes),
            ("max_buffered_bytes", max_buffered_bytes),
            ("max_inbound_messages", max_inbound_messages),
            ("max_inbound_bytes", max_inbound_bytes),
        ):
            check_positive_int(name, value)
        if heartbeat is not None and not isinstance(heartbeat, HeartbeatOptions):
            raise TypeError(f"heartbeat must be a HeartbeatOptions or None, not {heartbeat!r}")
        self.clock: Clock = clock or SystemClock()
        self.on_unknown = on_unknown
        self.debug = debug
        self.max_concurrency = max_concurrency
        self.max_message_bytes = max_message_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.overflow: OverflowPolicy = overflow
        self.heartbeat = heartbeat
        self.max_inbound_messages = max_inbound_messages
        self.max_inbound_bytes = max_inbound_bytes
        self.eager_start = eager_start
        #: Validate outbound payloads by default (validator plugins may change it).
        self.validate_outgoing = True
        self.pubsub: PubSubProvider | None = None
        self._routes: dict[str, Route[D]] = {}
        self._middleware: tuple[Middleware[D], ...] = ()
        self._open_hooks: list[OpenHook[D]] = []
        self._close_hooks: list[CloseHook[D]] = []
        self._error_hooks: list[ErrorHook] = []
        self._observers: list[Callable[[BaseException, ErrorInfo], None]] = []
        self._publish_observers: list[Callable[[PublishRecord], None]] = []
        self._plugins: set[object] = set()
        self._capabilities: set[str] = set()
        self._validators: set[str] = set()
        self._connections: dict[str, Connection[D]] = {}

    # ----------------------------------------------------------- registration

    def use(self, middleware: Middleware[D]) -> Middleware[D]:
        """Add global middleware (``async def mw(ctx, next)``); runs for every
        route, in registration order, before route middleware (onion order)."""
        self._middleware = (*self._middleware, middleware)
        self._invalidate()
        return middleware

    @overload
    def on(  # type: ignore[overload-overlap]
        self,
        schema: RpcSchema[P, R],
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> Callable[[RpcHandler[P, R, D]], RpcHandler[P, R, D]]: ...

    @overload
    def on(
        self,
        schema: MessageSchema[P],
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> Callable[[EventHandler[P, D]], EventHandler[P, D]]: ...

    @overload
    def on(  # type: ignore[overload-overlap]
        self,
        schema: RpcSchema[P, R],
        handler: RpcHandler[P, R, D],
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> RpcHandler[P, R, D]: ...

    @overload
    def on(
        self,
        schema: MessageSchema[P],
        handler: EventHandler[P, D],
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> EventHandler[P, D]: ...

    def on(
        self,
        schema: MessageSchema[Any],
        handler: Callable[[Any], Awaitable[None]] | None = None,
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> Any:
        """Register a handler for a message type (decorator or call form).

        ``middleware`` runs after the global middleware, for this route only.
        An RPC schema registered with ``on`` behaves as with :meth:`rpc`.
        """
        if handler is None:

            def decorator(fn: _F) -> _F:
                self._add(schema, fn, tuple(middleware), "on")
                return fn

            return decorator
        self._add(schema, handler, tuple(middleware), "on")
        return handler

    @overload
    def rpc(
        self,
        schema: RpcSchema[P, R],
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> Callable[[RpcHandler[P, R, D]], RpcHandler[P, R, D]]: ...

    @overload
    def rpc(
        self,
        schema: RpcSchema[P, R],
        handler: RpcHandler[P, R, D],
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> RpcHandler[P, R, D]: ...

    def rpc(
        self,
        schema: RpcSchema[Any, Any],
        handler: Callable[[Any], Awaitable[None]] | None = None,
        *,
        middleware: tuple[Middleware[D], ...] | list[Middleware[D]] = (),
    ) -> Any:
        """Register an RPC handler: ``ctx.reply``/``ctx.progress``/``ctx.error``."""
        if not isinstance(schema, RpcSchema):
            raise TypeError(
                f"Schema kind mismatch for {getattr(schema, 'type', schema)!r}: "
                f"rpc() needs a schema made with rpc(), got an event schema"
            )
        if handler is None:

            def decorator(fn: _F) -> _F:
                self._add(schema, fn, tuple(middleware), "rpc")
                return fn

            return decorator
        self._add(schema, handler, tuple(middleware), "rpc")
        return handler

    def _add(
        self,
        schema: MessageSchema[Any],
        handler: Callable[[Any], Any],
        middleware: tuple[Middleware[D], ...],
        how: str,
    ) -> None:
        if not isinstance(schema, MessageSchema):
            raise TypeError(f"router.{how}() needs a message schema, got {schema!r}")
        if not callable(handler):
            raise TypeError(f"router.{how}({schema.type!r}): handler must be callable")
        self._check_validators(schema, f"router.{how}({schema.type!r})")
        if schema.type in self._routes:
            existing = self._routes[schema.type].handler
            existing = getattr(existing, "__wrapped__", existing)
            name = getattr(existing, "__qualname__", None) or repr(existing)
            raise RouteConflictError(
                f"router.{how}({schema.type!r}): a handler ({name}) is already registered for "
                f"type {schema.type!r}, and a type has one handler per router. Remove one of "
                f"the two registrations, or give the second its own message type."
            )
        self._routes[schema.type] = Route(
            schema, _as_async(handler), tuple(_as_async(m) for m in middleware)
        )

    def _check_validators(self, schema: MessageSchema[Any], where: str) -> None:
        missing = schema.validators - self._validators
        if missing:
            name = sorted(missing)[0]
            raise CapabilityError(
                f"{where}: the schema is validated by {name}, but the router has no "
                f"{name} validator. Install it first: create_router().plugin(with_{name}())"
            )

    def on_open(self, hook: OpenHook[D]) -> OpenHook[D]:
        """Run ``hook(ctx)`` when a connection opens; raise ``CloseError`` to refuse."""
        self._open_hooks.append(hook)
        return hook

    def on_close(self, hook: CloseHook[D]) -> CloseHook[D]:
        """Run ``hook(ctx)`` once when an opened connection closes."""
        self._close_hooks.append(hook)
        return hook

    def on_error(self, hook: ErrorHook) -> ErrorHook:
        """Run ``hook(error, info)`` for every error: protocol failures, handler
        exceptions, timeouts. Hooks run in order; one failing does not stop the rest."""
        self._error_hooks.append(hook)
        return hook

    def observe(self, observer: Callable[[BaseException, ErrorInfo], None]) -> Callable[[], None]:
        """Register a synchronous error observer (tests, metrics); returns an
        unsubscribe function. Observers do not count as ``on_error`` hooks."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def observe_publish(self, observer: Callable[[PublishRecord], None]) -> Callable[[], None]:
        """Register a synchronous observer of every publish (pub/sub plugins call
        :meth:`notify_publish`); returns an unsubscribe function."""
        self._publish_observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._publish_observers:
                self._publish_observers.remove(observer)

        return unsubscribe

    def notify_publish(self, record: PublishRecord) -> None:
        """Tell publish observers about one publish (for pub/sub plugins)."""
        for observer in tuple(self._publish_observers):
            try:
                observer(record)
            except Exception:
                _log.exception("wskit: publish observer failed")

    def merge(self, other: Router[Any], *, on_conflict: OnConflict = "error") -> Router[D]:
        """Copy another router's routes and hooks into this one.

        The other router's global middleware becomes route middleware of the
        routes copied from it (so it applies to those routes only);
        ``on_open``/``on_close``/``on_error`` hooks are appended. Conflicting
        types: ``"error"`` raises, ``"skip"`` keeps ours, ``"replace"`` takes theirs.
        """
        if on_conflict not in ("error", "skip", "replace"):
            raise ValueError("on_conflict must be 'error', 'skip' or 'replace'")
        if other is self:
            return self
        for message_type, route in other._routes.items():
            self._check_validators(route.schema, f"merge({message_type!r})")
            if message_type in self._routes:
                if on_conflict == "error":
                    raise RouteConflictError(
                        f"merge() conflict: handler for type {message_type!r} already exists "
                        f"(policy: 'error')."
                    )
                if on_conflict == "skip":
                    continue
            self._routes[message_type] = Route(
                route.schema, route.handler, (*other._middleware, *route.middleware)
            )
        self._open_hooks.extend(h for h in other._open_hooks if h not in self._open_hooks)
        self._close_hooks.extend(h for h in other._close_hooks if h not in self._close_hooks)
        self._error_hooks.extend(h for h in other._error_hooks if h not in self._error_hooks)
        self._invalidate()
        return self

    def plugin(self, plugin: Plugin) -> Router[D]:
        """Apply a plugin once (idempotent by identity, and by ``plugin_key``
        when the plugin has one); returns the router for chaining."""
        key: object = getattr(plugin, "plugin_key", None) or plugin
        if key in self._plugins:
            return self
        self._plugins.add(key)
        plugin(self)
        return self

    # ------------------------------------------------------ plugin interface

    def add_capability(self, name: str) -> None:
        self._capabilities.add(name)

    def add_validator(self, name: str) -> None:
        """Declare that schemas validated by ``name`` may be registered."""
        self._validators.add(name)
        self._capabilities.add("validation")

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(self._capabilities)

    def set_pubsub(self, provider: PubSubProvider) -> None:
        self.pubsub = provider
        self._capabilities.add("pubsub")

    def require_pubsub(self, what: str) -> PubSubProvider:
        pubsub = self.pubsub
        if pubsub is None:
            raise CapabilityError(f"{what} requires with_pubsub()")
        return pubsub

    @property
    def routes(self) -> Mapping[str, Route[D]]:
        """Registered routes by message type (read-only view)."""
        return dict(self._routes)

    # ------------------------------------------------------------ connections

    def connect(
        self,
        data: D | None = None,
        *,
        client_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int | None = None,
        max_buffered_bytes: int | None = None,
        overflow: OverflowPolicy | None = None,
        heartbeat: HeartbeatOptions | None = None,
        max_inbound_messages: int | None = None,
        max_inbound_bytes: int | None = None,
    ) -> Connection[D]:
        """Create the router side of a new connection (adapters call this).

        ``data`` becomes ``ctx.data`` (default ``{}``). Limits default to the
        router's options.
        """
        for name, value in (
            ("max_message_bytes", max_message_bytes),
            ("max_buffered_bytes", max_buffered_bytes),
            ("max_inbound_messages", max_inbound_messages),
            ("max_inbound_bytes", max_inbound_bytes),
        ):
            if value is not None:
                check_positive_int(name, value)
        return Connection(
            self,
            data if data is not None else {},  # type: ignore[arg-type]
            client_id=client_id,
            headers=headers,
            max_message_bytes=max_message_bytes or self.max_message_bytes,
            max_buffered_bytes=max_buffered_bytes or self.max_buffered_bytes,
            overflow=overflow or self.overflow,
            heartbeat=heartbeat if heartbeat is not None else self.heartbeat,
            max_inbound_messages=max_inbound_messages or self.max_inbound_messages,
            max_inbound_bytes=max_inbound_bytes or self.max_inbound_bytes,
        )

    @property
    def connections(self) -> Mapping[str, Connection[D]]:
        """Open connections by client id (read-only view)."""
        return dict(self._connections)

    async def publish(
        self,
        topic: str,
        schema: MessageSchema[Q],
        payload: Q | Mapping[str, Any] | None = None,
        *,
        partition_key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Publish from outside a handler (lifecycle hooks, background tasks).
        Requires ``with_pubsub()``; returns a PublishResult, never raises for
        runtime conditions."""
        pubsub = self.require_pubsub("publish()")
        meta = self.publish_meta(topic, schema, meta)
        return await pubsub.publish(
            topic, schema, payload, sender=None, partition_key=partition_key, meta=meta
        )

    # ---------------------------------------------------------------- internals

    def _invalidate(self) -> None:
        for route in self._routes.values():
            route.chain = None

    def _build_chain(self, route: Route[D]) -> Callable[[Any], Awaitable[None]]:
        middleware = (*self._middleware, *route.middleware)
        chain = _compose(middleware, route.handler) if middleware else route.handler
        route.chain = chain
        return chain

    def _notify_observers(self, exc: BaseException, info: ErrorInfo) -> None:
        for observer in tuple(self._observers):
            try:
                observer(exc, info)
            except Exception:
                _log.exception("wskit: error observer failed")

    async def _report(self, exc: BaseException, info: ErrorInfo) -> None:
        self._notify_observers(exc, info)
        hooks = self._error_hooks
        if not hooks:
            code = getattr(exc, "code", None)
            if isinstance(exc, ProtocolError) and code == ErrorCode.INTERNAL:
                # The one INTERNAL protocol error: an RPC handler that returned without
                # replying. A bug in the handler, not a crash: say what to fix.
                _log.warning(
                    "wskit: the RPC handler for %r returned without ctx.reply() or "
                    "ctx.error() (client %s); the client got RPC_ERROR INTERNAL. Reply, "
                    "answer with ctx.error(), or raise RpcError on every path.",
                    info.message_type,
                    info.client_id,
                )
            elif isinstance(exc, RpcError) and code != ErrorCode.INTERNAL:
                # Answered to the client with its own code (bad input, or an error a
                # handler raised on purpose): not a server fault.
                _log.debug(
                    "wskit: %s answered %s: %s (client %s)",
                    info.message_type,
                    code,
                    exc.message,
                    info.client_id,
                )
            else:
                _log.error(
                    "wskit: error in %s (client %s); no on_error hook is registered",
                    info.message_type,
                    info.client_id,
                    exc_info=exc,
                )
            return
        for hook in tuple(hooks):
            try:
                result = hook(exc, info)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _log.exception("wskit: on_error hook failed")

    # ---------------------------------------------------------- publish hooks

    _publish_hooks: tuple[PublishHook, ...] = ()

    def add_publish_hook(self, hook: PublishHook) -> Callable[[], None]:
        """Run ``hook(topic, schema, meta)`` for every ``ctx.publish()`` and
        ``router.publish()`` before the pub/sub plugin sees it; a mapping it
        returns becomes the publish's meta (``None`` keeps it). For plugins
        that put context into published messages (tracing adds
        ``meta.traceparent``). Hooks run in order; one that raises is logged and
        skipped. Returns a function that removes the hook."""
        self._publish_hooks = (*self._publish_hooks, hook)

        def remove() -> None:
            self._publish_hooks = tuple(h for h in self._publish_hooks if h is not hook)

        return remove

    def publish_meta(
        self, topic: str, schema: MessageSchema[Any], meta: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """``meta`` as the publish hooks leave it (what a publish goes out with)."""
        for hook in self._publish_hooks:
            try:
                changed = hook(topic, schema, meta)
            except Exception:
                _log.exception("wskit: publish hook failed")
                continue
            if changed is not None:
                meta = changed
        return meta


def check_positive_int(name: str, value: Any) -> None:
    """Raise a clear error unless ``value`` is a positive ``int`` (options checks)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, not {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, not {value!r}")


class ValidatorPlugin:
    """The plugin a validator package returns from ``with_<name>()``.

    Applying it lets the router accept schemas validated by ``name`` and sets
    the router's outbound-validation default. Idempotent per validator
    (``plugin_key`` is ``"wskit.<name>"``).
    """

    def __init__(self, name: str, *, validate_outgoing: bool = True) -> None:
        self.name = name
        self.plugin_key = f"wskit.{name}"
        self.validate_outgoing = validate_outgoing

    def __call__(self, router: Router[Any]) -> Router[Any]:
        router.add_validator(self.name)
        router.validate_outgoing = self.validate_outgoing
        return router

    def __repr__(self) -> str:
        return f"ValidatorPlugin({self.name!r}, validate_outgoing={self.validate_outgoing})"


@overload
def create_router(
    data_type: None = None,
    *,
    clock: Clock | None = None,
    on_unknown: Literal["error", "ignore"] = "error",
    debug: bool = False,
    max_concurrency: int = 1,
    max_message_bytes: int = 1 << 20,
    max_buffered_bytes: int = 1 << 20,
    overflow: OverflowPolicy = "close",
    heartbeat: HeartbeatOptions | None = None,
    max_inbound_messages: int = 1024,
    max_inbound_bytes: int = 1 << 20,
    eager_start: bool = True,
) -> Router[dict[str, Any]]: ...


@overload
def create_router(
    data_type: type[D],
    *,
    clock: Clock | None = None,
    on_unknown: Literal["error", "ignore"] = "error",
    debug: bool = False,
    max_concurrency: int = 1,
    max_message_bytes: int = 1 << 20,
    max_buffered_bytes: int = 1 << 20,
    overflow: OverflowPolicy = "close",
    heartbeat: HeartbeatOptions | None = None,
    max_inbound_messages: int = 1024,
    max_inbound_bytes: int = 1 << 20,
    eager_start: bool = True,
) -> Router[D]: ...


def create_router(
    data_type: type[Any] | None = None,
    *,
    clock: Clock | None = None,
    on_unknown: Literal["error", "ignore"] = "error",
    debug: bool = False,
    max_concurrency: int = 1,
    max_message_bytes: int = 1 << 20,
    max_buffered_bytes: int = 1 << 20,
    overflow: OverflowPolicy = "close",
    heartbeat: HeartbeatOptions | None = None,
    max_inbound_messages: int = 1024,
    max_inbound_bytes: int = 1 << 20,
    eager_start: bool = True,
) -> Router[Any]:
    """Create a router. ``data_type`` only types ``ctx.data`` (e.g. a TypedDict);
    it is not checked at run time. See :class:`Router` for the options."""
    return Router(
        clock=clock,
        on_unknown=on_unknown,
        debug=debug,
        max_concurrency=max_concurrency,
        max_message_bytes=max_message_bytes,
        max_buffered_bytes=max_buffered_bytes,
        overflow=overflow,
        heartbeat=heartbeat,
        max_inbound_messages=max_inbound_messages,
        max_inbound_bytes=max_inbound_bytes,
        eager_start=eager_start,
    )
