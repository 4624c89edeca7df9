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

from wskit.core import handshake

__all__ = ["offered_protocols", "select_protocol", "token_from_request"]


def offered_protocols(request: web.BaseRequest) -> list[str]:
    """The subprotocols the client offered, in its order."""
    return handshake.offered_protocols(request.headers.getall("Sec-WebSocket-Protocol", ()))


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
    return handshake.token_from_offer(
        offered_protocols(request),
        request.query.get(query_param),
        protocol_prefix=protocol_prefix,
    )


def select_protocol(
    request: web.BaseRequest,
    supported: Sequence[str],
    *,
    protocol_prefix: str = "bearer.",
) -> str | None:
    """The subprotocol to echo: the first ``supported`` one the client offered,
    else the client's ``bearer.<token>`` entry, else ``None``."""
    return handshake.select_protocol(
        offered_protocols(request), supported, protocol_prefix=protocol_prefix
    )
