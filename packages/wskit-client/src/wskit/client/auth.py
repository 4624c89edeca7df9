"""Handshake authentication: a token in the query string or a ``bearer.<token>`` subprotocol.

Browsers cannot set headers on a WebSocket upgrade, so WS-Kit carries the token
either as a query parameter (``?access_token=...``) or as a subprotocol
(``Sec-WebSocket-Protocol: bearer.<token>``). The token provider is called once
per connection attempt (every reconnect gets a fresh token).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AuthOptions", "TokenProvider", "apply_token"]

#: Called with no arguments before each (re)connect; sync or async; ``None`` = no token.
TokenProvider = Callable[[], "Awaitable[str | None] | str | None"]

_PREFIX_RE = re.compile(r"^[^\s,]+$")


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """How the client authenticates the handshake.

    - ``get_token``: the token provider (see :data:`TokenProvider`).
    - ``attach``: ``"query"`` (default) or ``"protocol"``.
    - ``query_param``: the query parameter name (default ``"access_token"``).
    - ``protocol_prefix``: subprotocol prefix (default ``"bearer."``; no spaces or commas).
    - ``protocol_position``: put the token protocol after (``"append"``, default)
      or before (``"prepend"``) the client's own ``protocols``.
    """

    get_token: TokenProvider
    attach: Literal["query", "protocol"] = "query"
    query_param: str = "access_token"
    protocol_prefix: str = "bearer."
    protocol_position: Literal["append", "prepend"] = "append"

    def __post_init__(self) -> None:
        if self.attach not in ("query", "protocol"):
            raise ValueError(f"attach must be 'query' or 'protocol', not {self.attach!r}")
        if self.protocol_position not in ("append", "prepend"):
            raise ValueError("protocol_position must be 'append' or 'prepend'")
        if not _PREFIX_RE.match(self.protocol_prefix):
            raise ValueError(
                f"Invalid protocol_prefix: {self.protocol_prefix!r} "
                "(must not contain spaces/commas)"
            )
        if not self.query_param:
            raise ValueError("query_param must be non-empty")


def apply_token(
    url: str,
    protocols: Sequence[str] | None,
    token: str | None,
    auth: AuthOptions | None,
) -> tuple[str, list[str] | None]:
    """Return the URL and subprotocol list to connect with.

    Query mode sets (replaces) the query parameter when the token is non-empty.
    Protocol mode adds ``prefix + token``; duplicates are removed (first wins),
    empty names dropped, and an empty list becomes ``None``.
    """
    protos = list(protocols or [])
    if auth is not None and token:
        if auth.attach == "query":
            parts = urlsplit(url)
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
            query = [(k, v) for k, v in query if k != auth.query_param]
            query.append((auth.query_param, token))
            url = urlunsplit(parts._replace(query=urlencode(query)))
        else:
            bearer = auth.protocol_prefix + token
            if auth.protocol_position == "append":
                protos.append(bearer)
            else:
                protos.insert(0, bearer)
    seen: set[str] = set()
    out: list[str] = []
    for p in protos:
        if p and p not in seen:
            seen.add(p)
            out.append(p)
    return url, (out or None)
