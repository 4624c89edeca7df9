"""Structured logging through the standard :mod:`logging` module.

::

    import logging
    from wskit.middleware import with_logging

    router.plugin(with_logging(level=logging.INFO))

One record per connection open and close, and one per message: the ones
handlers answered (through the middleware) and the ones the router refused
before any middleware ran (invalid, unknown type, too big). Each record's
message is ``key=value`` text, and its fields are also on the record as a dict,
``record.wskit``, for JSON formatters. Payloads are never logged unless
``log_payload=True``, and then with credential-like keys removed, as in error
details.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from wskit.core.connection import ErrorInfo
from wskit.core.context import BaseContext, CloseContext, MessageContext, OpenContext
from wskit.core.errors import sanitize_details
from wskit.core.router import Next, Router
from wskit.middleware._outcome import OK, outcome, rejected

__all__ = ["DEFAULT_FIELDS", "FIELDS", "RequestLogging", "with_logging"]

#: Every field a record can carry (``payload`` only with ``log_payload=True``).
FIELDS: Final = frozenset(
    {
        "event",  # "open" | "message" | "close"
        "client_id",
        "type",
        "rpc",
        "correlation_id",
        "outcome",  # "ok" or the error code the client got
        "duration_ms",  # handler time (middleware in, middleware out)
        "queued_ms",  # from receipt to the middleware (waiting behind earlier messages)
        "traceparent",  # the W3C trace context the client sent, if any
        "close_code",
        "close_reason",
        "connected_ms",  # how long the connection was open
        "payload",
    }
)
#: The fields of a message record, in the order they are written.
_MESSAGE_FIELDS: Final = (
    "event",
    "client_id",
    "type",
    "rpc",
    "correlation_id",
    "outcome",
    "duration_ms",
    "queued_ms",
    "traceparent",
    "payload",
)
#: The fields logged by default.
DEFAULT_FIELDS: Final = (
    "event",
    "client_id",
    "type",
    "correlation_id",
    "outcome",
    "duration_ms",
    "close_code",
    "close_reason",
    "connected_ms",
)

_Ctx = MessageContext[Any, Any]

#: Draws the number that decides whether a sampled record is written (``sample_rate``).
_random: Callable[[], float] = random.random


_PLAIN: Final = re.compile(r"[A-Za-z0-9_.:/@+\-]+")


_QUOTED: dict[str, str] = {}  # recent strings as written (types, codes, client ids repeat)
_QUOTED_MAX: Final = 4096


def _quote(value: str) -> str:
    """``value`` as written in the text (as it is if plain, else as JSON), remembered."""
    text = value if _PLAIN.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    if len(_QUOTED) >= _QUOTED_MAX:
        _QUOTED.clear()
    _QUOTED[value] = text
    return text


def _text(fields: Mapping[str, Any]) -> str:
    """``key=value`` pairs (logfmt): plain strings as they are, others as JSON."""
    quoted = _QUOTED
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            text = quoted.get(value)
            if text is None:
                text = _quote(value)
        elif kind is float:
            text = f"{value:.3f}"
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is int:
            text = str(value)
        else:
            text = json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Message:
    """Lazy ``key=value`` text: formatted only if a handler emits the record."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return _text(self.fields)


def _payload(ctx: _Ctx) -> Any:
    codec = ctx.schema.payload
    if codec is None:
        return None
    try:
        wire = codec.encode(ctx.payload, validate=False)
    except Exception:
        return "<unserializable>"
    if isinstance(wire, Mapping):
        return sanitize_details(wire) or {}
    return (sanitize_details({"value": wire}) or {}).get("value")


class RequestLogging:
    """The plugin :func:`with_logging` returns: apply it with ``router.plugin()``
    (once per router; one instance can serve several routers)."""

    def __init__(
        self,
        *,
        logger: logging.Logger | str = "wskit.middleware",
        level: int = logging.INFO,
        error_level: int = logging.WARNING,
        fields: Collection[str] = DEFAULT_FIELDS,
        log_payload: bool = False,
        connections: bool = True,
        context_fields: Callable[[BaseContext[Any]], Mapping[str, Any]] | None = None,
        sample_rate: float = 1.0,
    ) -> None:
        unknown = sorted(set(fields) - FIELDS)
        if unknown:
            raise ValueError(f"unknown log fields: {', '.join(unknown)} (known: {sorted(FIELDS)})")
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, float))
            or not 0.0 <= sample_rate <= 1.0
        ):
            raise ValueError(f"sample_rate must be a number from 0 to 1, got {sample_rate!r}")
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        self.error_level = error_level
        self.fields = frozenset(fields) | ({"payload"} if log_payload else frozenset())
        # Which fields a message record gets, looked up once instead of per message.
        self._wanted = tuple(name in self.fields for name in _MESSAGE_FIELDS)
        self.connections = connections
        self.context_fields = context_fields
        self.sample_rate = float(sample_rate)

    def __call__(self, router: Router[Any]) -> Router[Any]:
        router.use(self.middleware)
        if self.connections:
            router.on_open(self._opened)
            router.on_close(self._closed)
        router.observe(self._observed)
        return router

    # ------------------------------------------------------------- records

    def _emit(self, level: int, fields: dict[str, Any], ctx: BaseContext[Any] | None) -> None:
        wanted = self.fields
        record = {k: v for k, v in fields.items() if k in wanted and v is not None}
        self._log(level, record, ctx)

    def _log(self, level: int, record: dict[str, Any], ctx: BaseContext[Any] | None) -> None:
        if self.context_fields is not None and ctx is not None:
            try:
                record.update(self.context_fields(ctx))
            except Exception:
                self.logger.exception("wskit.middleware: context_fields() failed")
        # makeRecord + handle: logger.log() without its caller lookup (a stack walk
        # per record, and the caller would always be this function anyway).
        logger = self.logger
        logger.handle(
            logger.makeRecord(
                logger.name,
                level,
                __file__,
                0,
                _Message(record),
                (),
                None,
                "wskit",
                {"wskit": record},
            )
        )

    async def middleware(self, ctx: _Ctx, next_: Next) -> None:
        logger = self.logger
        if not logger.isEnabledFor(self.level) and not logger.isEnabledFor(self.error_level):
            await next_()
            return
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            await next_()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            result = outcome(ctx, failure)
            if result == OK:
                rate = self.sample_rate
                if logger.isEnabledFor(self.level) and (rate >= 1.0 or _random() < rate):
                    self._message(ctx, self.level, result, start)
            elif logger.isEnabledFor(self.error_level):
                self._message(ctx, self.error_level, result, start)

    def _message(self, ctx: _Ctx, level: int, result: str, start: float) -> None:
        elapsed = (time.perf_counter() - start) * 1000.0
        event, client_id, type_, rpc, cid, outcome_, duration, queued, trace, payload = self._wanted
        meta = ctx.meta
        record: dict[str, Any] = {}
        if event:
            record["event"] = "message"
        if client_id:
            record["client_id"] = ctx.client_id
        if type_:
            record["type"] = ctx.type
        if rpc:
            record["rpc"] = ctx.is_rpc
        if cid:
            correlation_id = meta.get("correlationId")
            if correlation_id is not None:
                record["correlation_id"] = correlation_id
        if outcome_:
            record["outcome"] = result
        if duration:
            record["duration_ms"] = elapsed
        if queued:
            record["queued_ms"] = max(0.0, ctx.router.clock.now() - ctx.received_at)
        if trace:
            traceparent = meta.get("traceparent")
            if traceparent is not None:
                record["traceparent"] = traceparent
        if payload and ctx.schema.payload is not None:
            record["payload"] = _payload(ctx)
        self._log(level, record, ctx)

    def _opened(self, ctx: OpenContext[Any]) -> None:
        if self.logger.isEnabledFor(self.level):
            self._emit(self.level, {"event": "open", "client_id": ctx.client_id}, ctx)

    def _closed(self, ctx: CloseContext[Any]) -> None:
        if self.logger.isEnabledFor(self.level):
            conn = ctx.connection
            fields = {
                "event": "close",
                "client_id": ctx.client_id,
                "close_code": ctx.code,
                "close_reason": ctx.reason,
                "connected_ms": max(0.0, conn.router.clock.now() - conn.connected_at),
            }
            self._emit(self.level, fields, ctx)

    def _observed(self, exc: BaseException, info: ErrorInfo) -> None:
        found = rejected(exc, info)
        if found is None or not self.logger.isEnabledFor(self.error_level):
            return
        message_type, code = found
        fields = {
            "event": "message",
            "client_id": info.client_id,
            "type": message_type,
            "outcome": code,
        }
        self._emit(self.error_level, fields, None)


def with_logging(
    *,
    logger: logging.Logger | str = "wskit.middleware",
    level: int = logging.INFO,
    error_level: int = logging.WARNING,
    fields: Collection[str] = DEFAULT_FIELDS,
    log_payload: bool = False,
    connections: bool = True,
    context_fields: Callable[[BaseContext[Any]], Mapping[str, Any]] | None = None,
    sample_rate: float = 1.0,
) -> RequestLogging:
    """Log connections and messages to ``logger`` (a logger or its name).

    - ``level``: records of connections and of messages answered without an
      error; ``error_level``: messages answered with an error (``outcome`` is
      the code: ``INVALID_ARGUMENT``, ``PERMISSION_DENIED``, ``INTERNAL``...).
    - ``fields``: which of :data:`FIELDS` to include (default
      :data:`DEFAULT_FIELDS`); fields without a value are left out.
    - ``log_payload``: add the message payload (wire form, credential-like keys
      and values over 500 characters of JSON removed). Off by default.
    - ``connections``: the open and close records (on by default).
    - ``context_fields(ctx)``: extra fields from the context, e.g.
      ``lambda ctx: {"user": ctx.data["user_id"]}``.
    - ``sample_rate``: the share of messages answered without an error that get
      a record, drawn at random per message (default 1.0: every one; 0.01: about
      one in a hundred). Errors, refusals and connections are always logged.

    Register it before other middleware so its duration covers them, and so it
    sees their answers (``require()`` refusals, rate limits).
    """
    return RequestLogging(
        logger=logger,
        level=level,
        error_level=error_level,
        fields=fields,
        log_payload=log_payload,
        connections=connections,
        context_fields=context_fields,
        sample_rate=sample_rate,
    )
