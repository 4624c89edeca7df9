"""Handshake authentication helpers: where clients put their token.

The wskit client (like WS-Kit's) sends a token either as the ``access_token``
query parameter or as a ``bearer.<token>`` entry of ``Sec-WebSocket-Protocol``
(browsers cannot set an ``Authorization`` header on a WebSocket). Read it with
:func:`token_from_request` inside ``authenticate(request)``; the handler
echoes the chosen subprotocol in the upgrade response, as browsers require.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

__all__ = ["offered_protocols", "select_protocol", "token_from_request"]


def offered_protocols(request: web.BaseRequest) -> list[str]:
    """The subprotocols the client offered, in its order."""
    offered: list[str] = []
    for header in request.headers.getall("Sec-WebSocket-Protocol", ()):
        offered.extend(p.strip() for p in header.split(",") if p.strip())
    return offered


def token_from_request(
    request: web.BaseRequest,
    *,
    query_param: str = "access_token",
    protocol_prefix: str = "bearer.",
) -> tuple[str | None, str | None]:
    """Return ``(token, subprotocol)`` from a WebSocket upgrade request.

    The ``bearer.<token>`` subprotocol wins over the query parameter; then
    ``subprotocol`` is that exact entry (the one to echo in the response).
    ``(None, None)`` when the client sent no token.
    """
    for protocol in offered_protocols(request):
        if protocol.startswith(protocol_prefix) and len(protocol) > len(protocol_prefix):
            return protocol[len(protocol_prefix) :], protocol
    token = request.query.get(query_param)
    if token:
        return token, None
    return None, None


def select_protocol(
    request: web.BaseRequest,
    supported: Sequence[str],
    *,
    protocol_prefix: str = "bearer.",
) -> str | None:
    """The subprotocol to echo: the first ``supported`` one the client offered,
    else the client's ``bearer.<token>`` entry, else ``None``."""
    offered = offered_protocols(request)
    for protocol in supported:
        if protocol in offered:
            return protocol
    for protocol in offered:
        if protocol.startswith(protocol_prefix) and len(protocol) > len(protocol_prefix):
            return protocol
    return None
