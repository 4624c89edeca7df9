"""The upgrade request, transport-neutral: Host and Origin checks, the token
and subprotocol a client offers, and the checks of a server adapter's options.

Every server adapter (``wskit.aiohttp``, ``wskit.asgi``, third-party ones)
refuses the same requests for the same reasons, so the rules live here, pure:
strings in, normalized values out, no I/O. :class:`AdapterSettings` adds what
adapters share beyond the rules: the checked options, the connection slots,
``authenticate`` and hook calls, and the graceful shutdown of the connections.

Two checks use the Host and Origin values. The Host check (``allowed_hosts``)
defeats DNS rebinding: a page on ``http://attacker.example:3000`` whose name the
attacker re-points at 127.0.0.1 reaches a local server with
``Host: attacker.example:3000`` and a matching ``Origin``, so only a list of the
server's own names tells it apart. The Origin check (``allowed_origins``,
same-origin pages) refuses pages of other sites.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

from wskit.core.connection import CLOSE_GOING_AWAY
from wskit.core.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from wskit.core.connection import Connection, HeartbeatOptions, OverflowPolicy
    from wskit.core.router import Router

D = TypeVar("D")

__all__ = [
    "LOOPBACK_HOSTS",
    "AdapterSettings",
    "HostRules",
    "check_optional_timeout",
    "check_origins",
    "check_overflow",
    "check_sequence",
    "check_size",
    "check_timeout",
    "is_loopback",
    "normalize_host_entry",
    "normalize_origin",
    "offered_protocols",
    "origin_allowed",
    "same_origin",
    "select_protocol",
    "split_host",
    "token_from_offer",
]

#: The names a browser on this machine uses for a loopback server.
LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")

_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_LABELS: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_SCHEME: Final = re.compile(r"[a-z][a-z0-9+.-]*")
_DEFAULT_PORTS: Final = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _name(value: str) -> str | None:
    """A host name or IPv4 address, lower-cased, without a trailing dot; ``None``
    if ``value`` is neither (IPv6 is handled by the callers, bracketed)."""
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return name if _LABELS.fullmatch(name) else None


def _ipv6(value: str) -> str | None:
    try:
        return ipaddress.IPv6Address(value).compressed
    except ValueError:
        return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a Host header value (``name``, ``name:port``,
    ``1.2.3.4:port``, ``[::1]:port``), the host normalized (lower case, no
    trailing dot, IPv6 compressed and without brackets); ``None`` if malformed."""
    port_text: str | None = None
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        host = _ipv6(inside) if bracket else None
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    else:
        name, colon, after = value.rpartition(":")
        if not colon:
            name = value
        else:
            port_text = after
        host = _name(name) if ":" not in name else None
    if host is None:
        return None
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        return None
    number = int(port_text)
    return (host, number) if number <= 65535 else None


def normalize_host_entry(entry: object) -> str:
    """One ``allowed_hosts`` entry in the form :class:`HostRules` compares:
    ``"*"``, a name, a ``.domain`` (the domain and its subdomains), an IPv4
    address or an IPv6 address (with or without brackets). Ports are not part
    of an entry: any port matches."""
    if not isinstance(entry, str):
        raise ValueError(f"allowed_hosts: each entry must be a str, got {entry!r}")
    if entry == "*":
        return entry
    problem = ""
    if entry.startswith("*."):
        problem = f"use {entry[1:]!r} to allow a domain and its subdomains"
    elif "/" in entry or "://" in entry:
        problem = "expected a host name (like 'app.example.com'), not a URL"
    elif entry.startswith("[") and entry.endswith("]"):
        v6 = _ipv6(entry[1:-1])
        if v6 is not None:
            return v6
        problem = "not an IPv6 address"
    elif ":" in entry:
        v6 = _ipv6(entry)
        if v6 is not None:
            return v6
        problem = "ports are not part of an entry (any port matches): remove it"
    elif entry.startswith("."):
        name = _name(entry[1:])
        if name is not None and not _is_ip(name):
            return "." + name
        problem = "expected '.' followed by a domain name"
    else:
        name = _name(entry)
        if name is not None:
            return name
        problem = "not a host name or IP address"
    raise ValueError(f"allowed_hosts: invalid entry {entry!r}: {problem}")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostRules:
    """The normalized ``allowed_hosts`` and the match of one Host header."""

    __slots__ = ("any", "entries", "exact", "suffixes")

    def __init__(self, entries: Iterable[object]) -> None:
        normalized = tuple(dict.fromkeys(normalize_host_entry(e) for e in entries))
        if not normalized:
            raise ValueError(
                "allowed_hosts: empty list: no request could connect "
                "(use None for no Host check, ['*'] for any host)"
            )
        self.entries = normalized
        self.any = "*" in normalized
        self.exact = frozenset(e for e in normalized if not e.startswith("."))
        self.suffixes = tuple(e for e in normalized if e.startswith("."))

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header value may be served."""
        if self.any:
            return True
        if host_header is None:
            return False
        parsed = split_host(host_header)
        if parsed is None:
            return False
        host = parsed[0]
        if host in self.exact:
            return True
        return any(host.endswith(s) or host == s[1:] for s in self.suffixes)


def is_loopback(host: str | None) -> bool:
    """Whether a bind address reaches this machine only: ``localhost``,
    127.0.0.0/8 or ``::1`` (``None``/``""`` means every interface)."""
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _origin_parts(origin: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an origin (``scheme://host[:port]``, a
    trailing ``/`` tolerated); the port is ``None`` when it is the scheme's
    default or unknown. ``None`` if ``origin`` is not of that form."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        not _SCHEME.fullmatch(scheme)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or not parts.netloc
    ):
        return None
    hostport = split_host(parts.netloc)
    if hostport is None:
        return None
    host, port = hostport
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, host, port


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in one spelling (lower case, default port
    dropped, IPv6 bracketed), or ``None`` if ``origin`` is not an origin."""
    parts = _origin_parts(origin)
    if parts is None:
        return None
    scheme, host, port = parts
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``origin`` names the host (and port) the request was sent to.

    A Host without a port matches an origin on its scheme's default port (the
    scheme the browser used is not known here: a proxy may have ended TLS)."""
    parts = _origin_parts(origin)
    hostport = split_host(host_header) if host_header is not None else None
    if parts is None or hostport is None:
        return False
    scheme, host, port = parts
    request_host, request_port = hostport
    if host != request_host:
        return False
    if request_port is None or request_port == _DEFAULT_PORTS.get(scheme):
        return port is None
    return port == request_port


def origin_allowed(
    origin: str | None, host_header: str | None, allowed_origins: frozenset[str]
) -> bool:
    """The Origin check of an upgrade: requests without ``Origin`` (not a
    browser) pass, as do listed origins (``"*"``: any) and same-origin pages.

    Call it after the Host check: the Host a same-origin page is compared with
    must be one the server serves, or a DNS-rebinding page (the attacker's name
    in both headers) would pass as same-origin."""
    if origin is None:
        return True
    if "*" in allowed_origins or normalize_origin(origin) in allowed_origins:
        return True
    return same_origin(origin, host_header)


# ------------------------------------------------------- token and subprotocol


def offered_protocols(header_values: Iterable[str]) -> list[str]:
    """The subprotocols a client offered, in its order, from the values of its
    ``Sec-WebSocket-Protocol`` header(s)."""
    offered: list[str] = []
    for header in header_values:
        offered.extend(p.strip() for p in header.split(",") if p.strip())
    return offered


def token_from_offer(
    offered: Sequence[str], query_token: str | None, *, protocol_prefix: str = "bearer."
) -> tuple[str | None, str | None]:
    """``(token, subprotocol)`` of an upgrade: a ``bearer.<token>`` subprotocol
    wins over the query parameter's value (``subprotocol`` is then that exact
    entry, the one to echo). ``(None, None)`` without a token."""
    bearer = _bearer_entry(offered, protocol_prefix)
    if bearer is not None:
        return bearer[len(protocol_prefix) :], bearer
    if query_token:
        return query_token, None
    return None, None


def select_protocol(
    offered: Sequence[str], supported: Sequence[str], *, protocol_prefix: str = "bearer."
) -> str | None:
    """The subprotocol to echo: the first ``supported`` one the client offered,
    else the client's ``bearer.<token>`` entry, else ``None``."""
    for protocol in supported:
        if protocol in offered:
            return protocol
    return _bearer_entry(offered, protocol_prefix)


def _bearer_entry(offered: Sequence[str], protocol_prefix: str) -> str | None:
    """The first offered ``<prefix><token>`` entry with a non-empty token."""
    for protocol in offered:
        if protocol.startswith(protocol_prefix) and len(protocol) > len(protocol_prefix):
            return protocol
    return None


# ----------------------------------------------------------- adapter options
#
# Checked when a handler is built: a bad value fails at once, with the option's
# name and the value, not later inside a connection.


def check_size(name: str, value: Any) -> int | None:
    """A positive ``int`` (a count or a byte size) or ``None``."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def check_timeout(name: str, value: Any) -> float:
    """A positive, finite number of seconds."""
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        return float(value)
    raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def check_optional_timeout(name: str, value: Any) -> float | None:
    """A positive, finite number of seconds, or ``None`` (no limit)."""
    if value is None:
        return None
    try:
        return check_timeout(name, value)
    except ValueError:
        raise ValueError(
            f"{name} must be a positive number of seconds or None, got {value!r}"
        ) from None


def check_overflow(value: Any) -> Any:
    """``"close"``, ``"drop"`` or ``None`` (the router's policy)."""
    if value is None or value in ("close", "drop"):
        return value
    raise ValueError(f"overflow must be 'close', 'drop' or None, got {value!r}")


def check_sequence(name: str, value: Any) -> Sequence[Any]:
    """A list/tuple of entries (a lone string would be taken letter by letter)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


def check_origins(value: Sequence[str] | None) -> frozenset[str]:
    """``allowed_origins`` as normalized origins (``scheme://host[:port]``) or ``"*"``."""
    if value is None:
        return frozenset()
    origins: set[str] = set()
    for entry in check_sequence("allowed_origins", value):
        if entry == "*":
            origins.add(entry)
            continue
        normalized = normalize_origin(entry) if isinstance(entry, str) else None
        if normalized is None:
            hint = "expected scheme://host[:port], like 'https://app.example.com'"
            if isinstance(entry, str) and entry.strip().lower() == "null":
                hint = (
                    "browsers send 'null' from sandboxed frames and local files of any site; "
                    "use '*' to accept every origin"
                )
            raise ValueError(f"allowed_origins: invalid entry {entry!r}: {hint}")
        origins.add(normalized)
    return frozenset(origins)


class AdapterSettings(Generic[D]):
    """What every server adapter keeps and does alike: its router, the options
    common to all adapters (checked once, a ``ValueError`` naming a bad one), the
    connection slots, the ``Host`` check, ``authenticate`` and hook calls, and
    :meth:`shutdown`. wskit-aiohttp's ``WebSocketHandler`` and wskit-asgi's
    ``WebSocketApp`` build on it. An adapter keeps its sessions in ``_sessions``
    (each with its ``conn``, the ``task`` serving it and an ``abort()`` that drops
    the connection now) and names its logger in ``_log``."""

    router: Router[D]
    _sessions: Mapping[str, Any]
    #: Where the adapter logs (each adapter names its own).
    _log: logging.Logger = logging.getLogger("wskit")

    def _init_settings(
        self,
        router: Router[D],
        *,
        authenticate: Any,
        on_open: Any,
        on_close: Any,
        heartbeat: HeartbeatOptions | None,
        max_message_bytes: int | None,
        max_buffered_bytes: int | None,
        overflow: OverflowPolicy | None,
        allowed_origins: Sequence[str] | None,
        allowed_hosts: Sequence[str] | None,
        max_connections: int | None,
        protocols: Sequence[str],
        protocol_prefix: str,
        close_timeout: float,
        send_timeout: float | None,
        shutdown_timeout: float,
        client_id_header: str | None,
    ) -> None:
        max_message_bytes = check_size("max_message_bytes", max_message_bytes)
        self.router = router
        self.authenticate = authenticate
        self.on_open = on_open
        self.on_close = on_close
        self.heartbeat = heartbeat
        self.max_message_bytes: int = (
            router.max_message_bytes if max_message_bytes is None else max_message_bytes
        )
        self.max_buffered_bytes = check_size("max_buffered_bytes", max_buffered_bytes)
        self.overflow: OverflowPolicy | None = check_overflow(overflow)
        self.allowed_origins = check_origins(allowed_origins)
        self._hosts: HostRules | None = None
        if allowed_hosts is not None:
            self._hosts = HostRules(check_sequence("allowed_hosts", allowed_hosts))
        self.max_connections = check_size("max_connections", max_connections)
        self.protocols = tuple(check_sequence("protocols", protocols))
        self.protocol_prefix = protocol_prefix
        self.close_timeout = check_timeout("close_timeout", close_timeout)
        self.send_timeout = check_optional_timeout("send_timeout", send_timeout)
        self.shutdown_timeout = check_timeout("shutdown_timeout", shutdown_timeout)
        self.client_id_header = client_id_header
        self._reserved = 0
        self._host_refusals = 0
        self._shutting_down = False
        self._shutdown_task: asyncio.Task[None] | None = None

    @property
    def connections(self) -> list[Connection[D]]:
        """Connections this adapter currently serves."""
        return [s.conn for s in self._sessions.values()]

    @property
    def reserved_connections(self) -> int:
        """Requests counted against ``max_connections``: open connections plus
        upgrades still authenticating (a slot is taken before ``authenticate``
        runs and freed when the request is refused or the connection ends)."""
        return self._reserved

    @property
    def allowed_hosts(self) -> tuple[str, ...] | None:
        """The ``Host`` names served, normalized (``None``: no Host check)."""
        return self._hosts.entries if self._hosts is not None else None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def _default_hosts(self, hosts: Sequence[str]) -> None:
        """Check ``Host`` against ``hosts`` unless ``allowed_hosts`` was given
        (``serve()`` on a loopback address passes the loopback names)."""
        if self._hosts is None:
            self._hosts = HostRules(hosts)

    async def shutdown(self) -> None:
        """Refuse new upgrades (503), close every connection with 1001 after its
        queued frames, and wait (at most ``shutdown_timeout``) for each to end
        (``on_close`` runs once for each; the rest are aborted). Idempotent."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        self._shutting_down = True
        sessions = list(self._sessions.values())
        if not sessions:
            return
        self._log.info("wskit: closing %d connection(s) (1001)", len(sessions))
        for session in sessions:
            session.conn.request_close(CLOSE_GOING_AWAY, "Server shutting down")
        tasks = {s.task for s in sessions if s.task is not None and not s.task.done()}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
            if pending:
                self._log.warning(
                    "wskit: %d connection(s) did not close in %ss: aborting them",
                    len(pending),
                    self.shutdown_timeout,
                )
                for session in sessions:
                    if session.task in pending:
                        session.abort()
                await asyncio.wait(pending, timeout=max(self.close_timeout, 1.0))

    async def _authenticate(self, request: Any) -> Any:
        """``authenticate(request)``'s connection data, awaited if async
        (``{}`` without ``authenticate``); exceptions propagate."""
        if self.authenticate is None:
            return {}
        result = self.authenticate(request)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _check_host(self, host: str | None, shown: str | None) -> bool:
        """Whether ``host`` passes ``allowed_hosts``; a refusal is logged with
        ``shown`` (the request's Host header) once at WARNING (a misconfigured
        proxy shows up at once), then at DEBUG, so refused requests cannot flood
        the log."""
        hosts = self._hosts
        if hosts is None or hosts.allows(host):
            return True
        self._host_refusals += 1
        level = logging.WARNING if self._host_refusals == 1 else logging.DEBUG
        self._log.log(
            level,
            "wskit: refused Host %r (400): not in allowed_hosts %s; behind a proxy, "
            "forward the public Host header and list it in allowed_hosts",
            shown,
            list(hosts.entries),
        )
        return False

    async def _call_hook(
        self, hook: Callable[[Connection[Any]], Any], conn: Connection[Any], name: str
    ) -> None:
        """Run the adapter's ``on_open``/``on_close`` hook (sync or async); a
        failure is logged, never raised into the connection's life cycle."""
        try:
            result = hook(conn)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._log.exception("wskit: %s hook failed (client %s)", name, conn.client_id)

    def _report_too_big(self, conn: Connection[Any]) -> None:
        """Report to the router's ``on_error`` hooks that the server refused a
        frame above ``max_message_bytes`` itself (through the public
        ``run_callback``, which reports what its callback raises)."""
        limit = self.max_message_bytes
        exc = ProtocolError(
            ErrorCode.RESOURCE_EXHAUSTED, f"Message exceeds max size: {limit} bytes"
        )

        def fail() -> None:
            raise exc

        conn.run_callback(fail)
