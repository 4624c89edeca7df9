"""Host and Origin rules of an upgrade request: they live in
:mod:`wskit.core.handshake`, shared by every server adapter."""

from wskit.core.handshake import (
    LOOPBACK_HOSTS,
    HostRules,
    is_loopback,
    normalize_host_entry,
    normalize_origin,
    same_origin,
    split_host,
)

__all__ = [
    "LOOPBACK_HOSTS",
    "HostRules",
    "is_loopback",
    "normalize_host_entry",
    "normalize_origin",
    "same_origin",
    "split_host",
]
