"""Authentication and authorization helpers.

::

    from wskit.middleware import bearer_auth, has_role, require

    async def verify(token: str) -> dict | None:       # your token check
        return {"user_id": "u1", "roles": ["admin"]} if token == "secret" else None

    serve(router, authenticate=bearer_auth(verify))    # no/bad token → HTTP 401

    @router.on(DeleteRoom, middleware=[require(has_role("admin"))])
    async def delete_room(ctx): ...                    # others get PERMISSION_DENIED

:func:`bearer_auth` builds the ``authenticate(request)`` an adapter calls
before the upgrade; it reads the token the way the wskit client (and WS-Kit's)
sends it: a ``bearer.<token>`` WebSocket subprotocol, the ``access_token``
query parameter, or an ``Authorization: Bearer`` header (non-browser clients).
:func:`require` is per-route middleware.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from wskit.core.context import MessageContext
from wskit.core.errors import ErrorCode
from wskit.core.router import Middleware, Next

__all__ = [
    "Check",
    "Verify",
    "bearer_auth",
    "bearer_token",
    "data_field",
    "has_role",
    "has_scope",
    "require",
]

_Ctx = MessageContext[Any, Any]
#: ``verify(token)`` (sync or async): the connection data, or ``None`` to refuse.
Verify = Callable[[str], Any]
#: ``check(ctx)`` (sync or async): truthy to let the message through.
Check = Callable[[_Ctx], "bool | Awaitable[bool]"]

_MISSING: Final = object()


def _header_values(headers: Any, name: str) -> list[str]:
    for method in ("getall", "getlist", "get_all"):
        getter = getattr(headers, method, None)
        if callable(getter):
            try:
                return [str(v) for v in getter(name, [])]
            except TypeError:
                return [str(v) for v in getter(name)]
    value = headers.get(name) if headers is not None else None
    return [str(value)] if value is not None else []


def _query_value(request: Any, name: str) -> str | None:
    for attr in ("query", "query_params"):
        query = getattr(request, attr, None)
        if query is not None and hasattr(query, "get"):
            value = query.get(name)
            return str(value) if value is not None else None
    return None


def bearer_token(
    request: Any,
    *,
    query_param: str | None = "access_token",
    protocol_prefix: str | None = "bearer.",
    header: str | None = "Authorization",
) -> str | None:
    """The bearer token of a WebSocket upgrade request, or ``None``.

    Looks, in order, at the ``Sec-WebSocket-Protocol`` offer (an entry
    ``<protocol_prefix><token>``), the ``header`` (``Bearer <token>``) and the
    ``query_param``; pass ``None`` to skip a place. ``request`` is the
    adapter's request object: anything with ``headers`` (a case-insensitive
    mapping) and ``query`` or ``query_params`` (aiohttp's and Starlette's both fit).
    """
    headers = getattr(request, "headers", None)
    if protocol_prefix and headers is not None:
        for header_value in _header_values(headers, "Sec-WebSocket-Protocol"):
            for protocol in header_value.split(","):
                protocol = protocol.strip()
                if protocol.startswith(protocol_prefix) and len(protocol) > len(protocol_prefix):
                    return protocol[len(protocol_prefix) :]
    if header and headers is not None:
        for value in _header_values(headers, header):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    if query_param:
        return _query_value(request, query_param) or None
    return None


def bearer_auth(
    verify: Verify,
    *,
    query_param: str | None = "access_token",
    protocol_prefix: str | None = "bearer.",
    header: str | None = "Authorization",
) -> Callable[[Any], Awaitable[Any]]:
    """An ``authenticate(request)`` for the server adapters: finds the token
    (see :func:`bearer_token`) and returns ``await verify(token)``, the
    connection data (``ctx.data``).

    No token, or ``verify`` returning ``None`` or ``False``, returns ``None``:
    the adapter refuses the upgrade with HTTP 401 before any WebSocket exists.
    An exception from ``verify`` is the adapter's to handle (HTTP 500, logged);
    the token itself is never logged.
    """

    async def authenticate(request: Any) -> Any:
        token = bearer_token(
            request, query_param=query_param, protocol_prefix=protocol_prefix, header=header
        )
        if token is None:
            return None
        data = verify(token)
        if inspect.isawaitable(data):
            data = await data
        if data is None or data is False:
            return None
        return data

    return authenticate


def data_field(data: Any, name: str, default: Any = None) -> Any:
    """``data[name]`` for a mapping, else ``getattr(data, name)``; ``default``
    when missing."""
    if data is None:
        return default
    if isinstance(data, dict):
        return data.get(name, default)
    value = getattr(data, name, _MISSING)
    return default if value is _MISSING else value


def _names(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, Iterable):
        return {str(v) for v in value}
    return set()


def has_role(*roles: str, field: str = "roles") -> Check:
    """A check for :func:`require`: the connection data's ``roles`` (a list, a
    set or a space-separated string) holds at least one of ``roles``."""
    if not roles:
        raise TypeError("has_role() needs at least one role")
    wanted = frozenset(roles)

    def check(ctx: _Ctx) -> bool:
        return not wanted.isdisjoint(_names(data_field(ctx.data, field)))

    check.__name__ = f"has_role({', '.join(roles)})"
    return check


def has_scope(*scopes: str, field: str = "scopes") -> Check:
    """A check for :func:`require`: the connection data's ``scopes`` (a list, a
    set or an OAuth-style space-separated string) holds every one of ``scopes``."""
    if not scopes:
        raise TypeError("has_scope() needs at least one scope")
    wanted = frozenset(scopes)

    def check(ctx: _Ctx) -> bool:
        return wanted <= _names(data_field(ctx.data, field))

    check.__name__ = f"has_scope({', '.join(scopes)})"
    return check


def require(
    *checks: Check,
    code: str = ErrorCode.PERMISSION_DENIED,
    message: str = "Permission denied",
) -> Middleware[Any]:
    """Middleware that lets a message through only if every check passes.

    Otherwise the client gets ``code`` (``PERMISSION_DENIED`` by default; use
    ``UNAUTHENTICATED`` for "who are you?") with ``message``, as ``ERROR``, or
    ``RPC_ERROR`` on RPC routes, and the handler does not run. Checks run in
    order and stop at the first that fails; each is ``check(ctx)``, sync or
    async. An exception in a check is a server error (``INTERNAL``)::

        router.on(Ban, ban, middleware=[require(has_role("admin", "moderator"))])
        router.use(require(lambda ctx: ctx.data.get("user_id") is not None,
                           code="UNAUTHENTICATED", message="Sign in first"))
    """
    if not checks:
        raise TypeError("require() needs at least one check")
    for check in checks:
        if not callable(check):
            raise TypeError(f"require() takes callables, got {check!r}")

    async def require_middleware(ctx: _Ctx, next_: Next) -> None:
        for check in checks:
            allowed = check(ctx)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                ctx.error(code, message)
                return
        await next_()

    return require_middleware
