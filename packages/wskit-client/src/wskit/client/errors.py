"""Client-side exceptions, rooted in :class:`wskit.core.errors.WskitError`.

The client also raises these core errors (import them from ``wskit.core.errors``):

- :class:`~wskit.core.errors.RpcError`: the server answered a request with
  ``RPC_ERROR`` (``code``, ``message``, ``details``, ``retryable``, ``retry_after_ms``).
- :class:`~wskit.core.errors.ValidationError`: an outbound payload/meta, or an
  inbound reply, failed its schema (``issues``).
- :class:`~wskit.core.errors.ConnectionClosedError`: the connection closed before
  the reply (requests without an idempotency key, or after the one resend).
"""

from __future__ import annotations

import builtins

from wskit.core.errors import RpcError, WskitError

__all__ = [
    "ConnectError",
    "QueueOverflowError",
    "RequestTimeoutError",
    "ServerError",
    "StateError",
]


class StateError(WskitError):
    """The client cannot do this in its current state (closed, queue off, limits)."""


class QueueOverflowError(StateError):
    """The offline queue was full: a message or queued request was dropped."""

    def __init__(self, message: str, *, policy: str, max_size: int) -> None:
        self.policy = policy
        self.max_size = max_size
        super().__init__(message)


class RequestTimeoutError(WskitError, builtins.TimeoutError):
    """No reply within ``timeout_ms`` of the request being sent (``$ws:abort`` was sent)."""

    def __init__(self, timeout_ms: float) -> None:
        self.timeout_ms = timeout_ms
        super().__init__(f"Request timed out after {timeout_ms:g}ms")


class ServerError(RpcError):
    """The server sent an ``ERROR`` frame (not ``RPC_ERROR``).

    Raised by a request when the ``ERROR`` carries its correlationId; passed to
    ``on_error`` callbacks (kind ``"server"``) otherwise.
    """


class ConnectError(WskitError, builtins.ConnectionError):
    """Opening the WebSocket failed (refused, handshake rejected, timed out).

    The underlying exception is ``__cause__``; ``status`` is the HTTP status of
    a rejected handshake (e.g. 401) when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)
