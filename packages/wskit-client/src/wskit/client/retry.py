"""Opt-in request retries driven by the error code's retry metadata.

A request is retried only when the server said it may be: the error's explicit
``retryable`` flag wins, otherwise the standard code table decides
(``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``, ``UNAVAILABLE``, ``ABORTED`` are
transient; ``INTERNAL`` is "maybe" and retried only with ``retry_internal=True``;
custom codes are not retried). The wait is the server's ``retryAfterMs`` when it
sent one, else the policy's own backoff. An explicit ``"retryAfterMs": null``
means "do not retry" and is honoured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wskit.client.backoff import Jitter, backoff_delay
from wskit.core.errors import ERROR_CODE_META, RpcError

__all__ = ["RetryPolicy", "is_retryable"]


def is_retryable(error: BaseException, *, retry_internal: bool = False) -> bool:
    """Whether ``error`` (an :class:`RpcError`) may be retried."""
    if not isinstance(error, RpcError):
        return False
    if error.retryable is not None:
        return error.retryable
    meta = ERROR_CODE_META.get(error.code)
    if meta is None:
        return False
    if meta.retryable == "maybe":
        return retry_internal
    return meta.retryable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry failed requests whose error is retryable.

    - ``max_attempts``: total attempts including the first (default 3).
    - ``initial_delay_ms`` / ``max_delay_ms`` / ``jitter``: backoff used when the
      server gave no ``retryAfterMs`` (same formula as reconnects).
    - ``max_retry_after_ms``: give up instead of waiting longer than this for a
      server-requested ``retryAfterMs`` (``None``: no limit).
    - ``retry_internal``: also retry ``INTERNAL`` errors (off by default).

    Each attempt is a fresh request with a new correlationId; the idempotency
    key (if any) is kept, so servers can deduplicate.
    """

    max_attempts: int = 3
    initial_delay_ms: float = 100
    max_delay_ms: float = 5_000
    jitter: Jitter = "full"
    max_retry_after_ms: float | None = 60_000
    retry_internal: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def next_delay_ms(
        self, error: BaseException, attempt: int, random: Callable[[], float]
    ) -> float | None:
        """The wait before attempt ``attempt + 1`` after ``error``, or ``None`` to give up.

        ``attempt`` is the 1-based number of the attempt that just failed.
        """
        if attempt >= self.max_attempts or not is_retryable(
            error, retry_internal=self.retry_internal
        ):
            return None
        assert isinstance(error, RpcError)
        after = error.retry_after_ms
        if after is not None:
            if self.max_retry_after_ms is not None and after > self.max_retry_after_ms:
                return None
            return float(max(0, after))
        return backoff_delay(
            attempt,
            initial_delay_ms=self.initial_delay_ms,
            max_delay_ms=self.max_delay_ms,
            jitter=self.jitter,
            random=random,
        )
