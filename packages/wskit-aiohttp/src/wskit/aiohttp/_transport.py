"""The socket side of a wskit connection on aiohttp: writing frames.

Frames the core hands over with ``send_nowait`` (the common case: the connection's
FIFO is empty and writing cannot block) are built into complete WebSocket frames
here and collected per connection; every connection that collected frames during
one event-loop iteration is written out by one callback at the start of the next
iteration, one ``transport.write`` per connection. So a progress update and the
reply of an RPC, or a burst of publishes to one subscriber, leave in one system
call, in order, without waiting for anything but the current iteration to end.

Server frames are unmasked, so a frame is the same bytes for every receiver: a
pub/sub fan-out hands the same string to every subscriber and it is encoded and
framed once per publish.

Everything aiohttp writes itself (pongs, pings, close frames, frames sent through
``send_str`` on the slow path) first flushes what a connection has collected, so
the order on the wire is the order the core produced.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
from typing import Any, Final

from aiohttp import web

__all__ = ["AiohttpTransport", "WriteCoalescer"]

_log = logging.getLogger("wskit.aiohttp")

_MAX_REASON_BYTES: Final = 123
#: Frames go out directly only while the socket's buffer plus what a connection
#: collected stay under a quarter of aiohttp's 64 KiB high-water mark: such a write
#: can never reach the drain wait. Beyond it the core's FIFO and pump take over.
_FAST_SEND_BYTES: Final = 16 * 1024

_HEADER_16: Final = struct.Struct("!BBH").pack
_HEADER_64: Final = struct.Struct("!BBQ").pack
_FIN_TEXT: Final = 0x81

_last_frame: list[Any] = [None, b""]


def text_frame(frame: str) -> bytes:
    """The complete, unmasked WebSocket text frame for ``frame``, reusing the
    last result: a fan-out hands the same string object to every subscriber."""
    last = _last_frame
    if last[0] is frame:
        cached: bytes = last[1]
        return cached
    data = frame.encode("utf-8")
    n = len(data)
    if n < 126:
        out = bytes((_FIN_TEXT, n)) + data
    elif n < 65536:
        out = _HEADER_16(_FIN_TEXT, 126, n) + data
    else:
        out = _HEADER_64(_FIN_TEXT, 127, n) + data
    last[0] = frame
    last[1] = out
    return out


class WriteCoalescer:
    """Writes what connections collected during one loop iteration, once per
    connection, in a single callback that the first collected frame schedules
    (``AiohttpTransport.send_nowait`` registers itself here)."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[AiohttpTransport] = []
        self._scheduled = False

    def _flush_all(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for transport in dirty:
            if transport._pending is not None:  # (unless written since, e.g. before a close)
                transport.flush()


class AiohttpTransport:
    """:class:`wskit.core.Transport` over an ``aiohttp.web.WebSocketResponse``.

    A send that cannot complete within ``send_timeout`` seconds (the peer
    stopped reading and the socket buffers are full) aborts the TCP
    connection, so a dead reader cannot pin a connection forever.
    """

    __slots__ = (
        "_coalescer",
        "_compress",
        "_pending",
        "_pending_size",
        "_request",
        "_send_timeout",
        "_socket",
        "_ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.BaseRequest,
        *,
        send_timeout: float | None,
        compress: bool = False,
        coalescer: WriteCoalescer | None = None,
    ) -> None:
        self._ws = ws
        self._request = request
        self._send_timeout = send_timeout
        self._compress = compress
        self._coalescer = coalescer or WriteCoalescer()
        # Frames collected this iteration: one frame as is (a fan-out's usual case, no
        # list allocated for it), two or more in a list.
        self._pending: bytes | list[bytes] | None = None
        self._pending_size = 0
        self._socket: Any = None  # the asyncio transport, taken at the first direct write

    @property
    def socket(self) -> asyncio.Transport | None:
        """The underlying asyncio transport (``None`` once closed)."""
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as such:
        # no isinstance check here.)
        return self._request.transport

    @property
    def collected_bytes(self) -> int:
        """Bytes of frames collected for the write at the next loop iteration."""
        return self._pending_size

    def write_failed(self, exc: BaseException) -> None:
        """A write failed (the socket went away under a send): drop the connection,
        which also ends the adapter's read loop."""
        _log.debug("wskit: send failed: %r", exc)
        self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once (no close handshake)."""
        self._pending = None
        self._pending_size = 0
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    # ---------------------------------------------------------------- writing

    def send_nowait(self, frame: str) -> bool:
        """Collect ``frame`` for this iteration's write if that cannot block (the
        core's direct path); ``False`` sends it through the FIFO and the pump."""
        socket = self._socket
        if socket is None:
            if self._compress:
                return False  # permessage-deflate frames are built by aiohttp
            socket = self._socket = self.socket
            if socket is None:
                return False
        if self._ws.closed or socket.is_closing():
            return False  # the pump meets the closed socket and ends the connection
        size = self._pending_size
        if socket.get_write_buffer_size() + size + 4 * len(frame) >= _FAST_SEND_BYTES:
            return False  # may reach the drain wait: the pump's path
        last = _last_frame
        data: bytes = last[1] if last[0] is frame else text_frame(frame)  # fan-out: framed once
        pending = self._pending
        if pending is not None:  # a second frame this iteration (rarer: no list before it)
            if isinstance(pending, list):
                pending.append(data)
            else:
                self._pending = [pending, data]
        else:
            self._pending = data
            coalescer = self._coalescer
            coalescer._dirty.append(self)
            if not coalescer._scheduled:
                coalescer._scheduled = True
                asyncio.get_running_loop().call_soon(coalescer._flush_all)
        self._pending_size = size + len(data)
        return True

    def flush(self) -> None:
        """Write what was collected, in one ``transport.write``."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._pending_size = 0
        try:
            self._socket.write(b"".join(pending) if isinstance(pending, list) else pending)
        except Exception as exc:  # a broken socket: end the connection
            _log.debug("wskit: write failed: %r", exc)
            self._socket.abort()

    async def send(self, frame: str) -> None:
        self.flush()
        timeout = self._send_timeout
        if timeout is None or self._cannot_block(frame):
            await self._ws.send_str(frame)
            return
        watchdog = asyncio.get_running_loop().call_later(timeout, self._send_timed_out)
        try:
            await self._ws.send_str(frame)
        finally:
            watchdog.cancel()

    def _cannot_block(self, frame: str) -> bool:
        # Uncompressed sends only wait for a drain once the socket buffer passes
        # its high-water mark (64 KiB); below a quarter of it, this frame cannot
        # get there, so no watchdog timer is needed (the common, fast case).
        if self._compress:
            return False
        transport = self._request.transport
        return (
            transport is not None
            and transport.get_write_buffer_size() + 4 * len(frame) < _FAST_SEND_BYTES
        )

    def _send_timed_out(self) -> None:
        _log.info("wskit: send blocked for %ss (peer not reading): aborting", self._send_timeout)
        self.abort()

    async def ping(self) -> None:
        self.flush()
        await self._ws.ping()

    async def pong(self, data: bytes) -> None:
        self.flush()
        await self._ws.pong(data)

    async def close(self, code: int, reason: str) -> None:
        self.flush()
        message = reason.encode("utf-8")[:_MAX_REASON_BYTES]
        await self._ws.close(code=code, message=message)


# ------------------------------------------------------------------ reading


def _direct_response_class() -> type[web.WebSocketResponse] | None:
    """A ``WebSocketResponse`` subclass for the direct read path, if aiohttp's
    WebSocket queue and parser have the shape it relies on (aiohttp 3.11+), else
    ``None`` (frames are then read with ``ws.receive()``, one task wake-up each)."""
    try:
        from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
        from aiohttp.helpers import DEFAULT_CHUNK_SIZE
        from aiohttp.web_protocol import RequestHandler
    except ImportError:  # pragma: no cover - older aiohttp
        return None
    try:
        params: Any = inspect.signature(WebSocketReader).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C class without a signature
        params = {}
    shaped = (
        hasattr(web.WebSocketResponse, "_post_start")
        and hasattr(WebSocketDataQueue, "feed_data")
        and hasattr(RequestHandler, "set_parser")
        and "_message_tail" in getattr(RequestHandler, "__slots__", ("_message_tail",))
        and (not params or "decode_text" in params)
    )
    if not shaped:  # pragma: no cover - an aiohttp we do not know
        return None

    class FrameQueue(WebSocketDataQueue):
        """aiohttp's message queue, except that data frames go to the connection."""

        __slots__ = ("_wskit_conn",)
        _wskit_conn: Any

        def feed_data(self, data: Any, size: int) -> None:
            kind = data[0]
            conn = self._wskit_conn
            if (kind is _TEXT or kind is _BINARY) and not self._buffer and not conn.inbound_full:
                conn.receive(data[1])
            else:
                super().feed_data(data, size)

    class DirectResponse(web.WebSocketResponse):
        # No __slots__ of its own: aiohttp's response keeps its attributes in a
        # __dict__, and on Python 3.12+ a subclass that adds a slot loses the inline
        # attribute values (measured: 80 B more per connection on 3.13).
        _wskit_conn: Any

        def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
            handler = request.protocol
            # Bytes that came with the upgrade request go to our parser, not aiohttp's.
            tail, handler._message_tail = handler._message_tail, b""
            super()._post_start(request, protocol, writer)
            # Swap in a queue that hands data frames over at once (no await between
            # super()'s parser and ours: nothing was read in between).
            loop = asyncio.get_running_loop()
            queue = FrameQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=loop)
            queue._wskit_conn = self._wskit_conn
            parser = WebSocketReader(
                queue, self._max_msg_size, compress=bool(self._compress), decode_text=True
            )
            self._reader = queue
            self._parser = parser
            handler._payload_parser = None
            handler._message_tail = tail
            handler.set_parser(parser)

    return DirectResponse


def make_response(conn: Any, *, direct: bool = True, **options: Any) -> web.WebSocketResponse:
    """A ``WebSocketResponse`` whose TEXT/BINARY frames go straight from aiohttp's
    parser to ``conn.receive()`` (inside ``data_received``: no task wakes up per
    frame), while control frames (ping, pong, close, errors) still reach
    ``ws.receive()``.

    While the connection's inbound queue is full, data frames take aiohttp's own
    queue instead (and everything after them, so order is kept): aiohttp pauses
    the socket when that queue grows, and the adapter's read loop hands them over
    as the connection makes room. Falls back to a plain response when aiohttp's
    internals do not have the expected shape, or with ``direct=False``."""
    if not direct or _DIRECT_RESPONSE is None or options.get("compress"):
        return web.WebSocketResponse(**options)
    response = _DIRECT_RESPONSE(**options)
    response._wskit_conn = conn  # type: ignore[attr-defined]
    return response


def _msg_type(name: str) -> Any:
    from aiohttp import WSMsgType

    return getattr(WSMsgType, name)


_TEXT: Final = _msg_type("TEXT")
_BINARY: Final = _msg_type("BINARY")
_DIRECT_RESPONSE: Final = _direct_response_class()
