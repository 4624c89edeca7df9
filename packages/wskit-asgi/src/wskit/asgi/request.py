"""The upgrade request as ``authenticate(request)`` sees it: a read-only view of
the ASGI scope, the same under every ASGI server and framework.

The raw scope stays at hand (``request.scope``): with Starlette installed,
``starlette.requests.HTTPConnection(request.scope)`` gives its own view of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from wskit.core.handshake import offered_protocols, select_protocol, token_from_offer

__all__ = ["AsgiRequest", "Headers", "token_from_request"]

Scope = MutableMapping[str, Any]


class Headers(Mapping[str, str]):
    """Request headers by lower-case name; repeated headers joined with ``", "``
    (``getall`` keeps them apart). Values are decoded as Latin-1, as HTTP has it."""

    __slots__ = ("_items", "_joined")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._items = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
        joined: dict[str, str] = {}
        for key, value in self._items:
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        self._joined = joined

    def __getitem__(self, name: str) -> str:
        return self._joined[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received."""
        key = name.lower()
        return [v for k, v in self._items if k == key]

    def __repr__(self) -> str:
        return f"Headers({self._joined!r})"


class AsgiRequest:
    """The WebSocket upgrade request of one ASGI ``websocket`` scope."""

    __slots__ = ("_cookies", "_headers", "_query", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._headers: Headers | None = None
        self._query: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self.scope.get("headers") or ())
        return self._headers

    @property
    def path(self) -> str:
        return str(self.scope.get("path", "/"))

    @property
    def query_string(self) -> str:
        raw = self.scope.get("query_string", b"")
        return raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters (the first value of each)."""
        if self._query is None:
            query: dict[str, str] = {}
            for key, value in parse_qsl(self.query_string, keep_blank_values=True):
                query.setdefault(key, value)
            self._query = query
        return self._query

    @property
    def cookies(self) -> Mapping[str, str]:
        if self._cookies is None:
            jar = SimpleCookie()
            with contextlib.suppress(CookieError):
                jar.load(self.headers.get("cookie", ""))
            self._cookies = {name: morsel.value for name, morsel in jar.items()}
        return self._cookies

    @property
    def host(self) -> str | None:
        """The ``Host`` header, or ``None`` without one."""
        return self.headers.get("host")

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")

    @property
    def client(self) -> tuple[str, int] | None:
        """``(address, port)`` of the peer (a proxy's, behind one)."""
        client = self.scope.get("client")
        return (str(client[0]), int(client[1])) if client else None

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order."""
        offered = self.scope.get("subprotocols")
        if offered is not None:
            return [str(p) for p in offered]
        return offered_protocols(self.headers.getall("sec-websocket-protocol"))

    def __repr__(self) -> str:
        return f"<AsgiRequest {self.path}>"


def token_from_request(
    request: AsgiRequest,
    *,
    query_param: str = "access_token",
    protocol_prefix: str = "bearer.",
) -> tuple[str | None, str | None]:
    """Return ``(token, subprotocol)`` from a WebSocket upgrade request.

    The wskit client sends its token as the ``access_token`` query parameter or
    as a ``bearer.<token>`` entry of ``Sec-WebSocket-Protocol`` (browsers
    cannot set an ``Authorization`` header on a WebSocket). The subprotocol
    wins; then ``subprotocol`` is that exact entry (the one echoed in the
    response). ``(None, None)`` when the client sent no token.
    """
    return token_from_offer(
        request.subprotocols, request.query.get(query_param), protocol_prefix=protocol_prefix
    )


def _select(request: AsgiRequest, supported: Sequence[str], prefix: str) -> str | None:
    return select_protocol(request.subprotocols, supported, protocol_prefix=prefix)
