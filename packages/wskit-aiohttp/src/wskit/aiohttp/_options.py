"""Validation of the handler's options at construction: shared by every
server adapter, in :mod:`wskit.core.handshake`."""

from wskit.core.handshake import (
    check_optional_timeout,
    check_origins,
    check_overflow,
    check_sequence,
    check_size,
    check_timeout,
)

__all__ = [
    "check_optional_timeout",
    "check_origins",
    "check_overflow",
    "check_sequence",
    "check_size",
    "check_timeout",
]
