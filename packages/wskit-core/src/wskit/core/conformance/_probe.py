"""A minimal WebSocket client over asyncio streams, for testing servers.

It does what a test needs and a polite client library would refuse: send a
text frame that is not UTF-8, a frame over any limit, never answer a ping,
stop reading (so the server's writes back up), and hand every frame back as
it arrived, control frames included. Stdlib only; no extensions, no TLS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "Frame",
    "HandshakeRefused",
    "WebSocketProbe",
]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 1024 * 1024


class HandshakeRefused(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(f"upgrade refused: HTTP {status} {body[:200]!r}")
        self.status = status
        self.headers = dict(headers)
        self.body = body


@dataclass(frozen=True, slots=True)
class Frame:
    """One message or control frame from the server.

    ``opcode`` is :data:`TEXT`, :data:`BINARY`, :data:`PING`, :data:`PONG` or
    :data:`CLOSE`; ``data`` the payload (a fragmented message is joined);
    ``code``/``reason`` are set for CLOSE (``code`` ``1005`` when the frame
    carried none)."""

    opcode: int
    data: bytes
    code: int | None = None
    reason: str = ""

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.data)


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class WebSocketProbe:
    """One client connection. Create with :meth:`connect`.

    Nothing happens behind the test's back: pings are not answered (call
    :meth:`pong`), the socket is read only inside :meth:`recv`, and a close
    frame from the server is returned like any other frame (then answered, so
    the server sees a clean closing handshake).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        #: Response headers, names lower-cased.
        self.headers: dict[str, str] = dict(headers)
        self.close_frame: Frame | None = None
        self._close_sent = False

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server echoed (``None`` without one)."""
        return self.headers.get("sec-websocket-protocol")

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        read_limit: int = 64 * 1024,
    ) -> WebSocketProbe:
        """Open ``ws://host:port/path?query``. Raises :class:`HandshakeRefused`
        for an HTTP answer other than 101 and ``ConnectionError`` when the
        server closes the socket without one. ``headers`` may override
        ``Host``; ``read_limit`` is the stream buffer (what this client holds
        unread before the socket stops being read)."""
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise ValueError(f"expected a ws:// URL, got {url!r}")
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, limit=read_limit), timeout
        )
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            fields = {"Host": parts.netloc}
            fields.update(headers or {})
            lines = [f"GET {target} HTTP/1.1"]
            lines += [f"{name}: {value}" for name, value in fields.items()]
            lines += [
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
            ]
            if subprotocols:
                lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
            if origin is not None:
                lines.append(f"Origin: {origin}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status, response = await asyncio.wait_for(_read_head(reader), timeout)
            if status != 101:
                body = await asyncio.wait_for(_read_body(reader, response), timeout)
                raise HandshakeRefused(status, response, body)
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            if response.get("sec-websocket-accept") != accept:
                raise ConnectionError("bad Sec-WebSocket-Accept in the 101 response")
        except BaseException:
            writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            raise
        return cls(reader, writer, status, response)

    # ----------------------------------------------------------------- send

    async def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """Write one frame as given (a TEXT frame need not be UTF-8), then wait
        while the socket's write buffer is above its high-water mark."""
        self.writer.write(encode_frame(opcode, payload, fin=fin))
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        await self.send_frame(TEXT, text.encode("utf-8", "surrogatepass"))

    async def send_bytes(self, data: bytes) -> None:
        await self.send_frame(BINARY, data)

    async def send_json(self, obj: Any) -> None:
        await self.send_text(json.dumps(obj))

    async def ping(self, data: bytes = b"") -> None:
        await self.send_frame(PING, data)

    async def pong(self, data: bytes = b"") -> None:
        await self.send_frame(PONG, data)

    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel (the server stopped
        reading and the socket buffers are full when this grows)."""
        transport = self.writer.transport
        return transport.get_write_buffer_size()

    # -------------------------------------------------------------- receive

    async def recv(self, timeout: float = 5.0) -> Frame:
        """The next frame from the server (control frames included). A CLOSE
        frame is answered with a CLOSE; after it, ``ConnectionError``."""
        if self.close_frame is not None:
            raise ConnectionError("the server closed the connection")
        return await asyncio.wait_for(self._recv(), timeout)

    async def recv_json(self, timeout: float = 5.0) -> Any:
        """The next TEXT/BINARY frame as JSON, skipping pings and pongs.
        ``AssertionError`` on a close."""
        while True:
            frame = await self.recv(timeout)
            if frame.opcode in (TEXT, BINARY):
                return frame.json()
            if frame.opcode == CLOSE:
                raise AssertionError(f"closed by the server: {frame.code} {frame.reason!r}")

    async def recv_close(self, timeout: float = 5.0, *, skip_messages: bool = False) -> Frame:
        """Read until the server's CLOSE frame and return it. Pings are
        skipped; so are messages with ``skip_messages``, else one is an
        ``AssertionError``."""
        while True:
            frame = await self.recv(timeout)
            if frame.opcode == CLOSE:
                return frame
            if frame.opcode in (TEXT, BINARY) and not skip_messages:
                raise AssertionError(f"expected a close, got {frame.data[:200]!r}")

    async def _recv(self) -> Frame:
        parts: list[bytes] = []
        first_opcode: int | None = None
        while True:
            opcode, fin, payload = await self._read_frame()
            if opcode >= CLOSE:
                if opcode == CLOSE:
                    return await self._closed(payload)
                return Frame(opcode, payload)
            if opcode != CONTINUATION:
                first_opcode = opcode
            parts.append(payload)
            if fin:
                if first_opcode is None:
                    raise ConnectionError("continuation frame without a first frame")
                return Frame(first_opcode, b"".join(parts))

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        head = await self.reader.readexactly(2)
        fin = bool(head[0] & 0x80)
        opcode = head[0] & 0x0F
        if head[1] & 0x80:
            raise ConnectionError("the server sent a masked frame")
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await self.reader.readexactly(length) if length else b""
        return opcode, fin, payload

    async def _closed(self, payload: bytes) -> Frame:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        reason = payload[2:].decode("utf-8", "replace")
        frame = Frame(CLOSE, payload, code, reason)
        self.close_frame = frame
        if not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send_frame(CLOSE, payload[:2])
        return frame

    # ---------------------------------------------------------------- close

    async def close(self, code: int = 1000, reason: str = "", *, timeout: float = 5.0) -> None:
        """Start the closing handshake (unless the server did), wait for the
        server's CLOSE (bounded, discarding frames before it), then close the
        socket."""
        try:
            if not self._close_sent:
                self._close_sent = True
                payload = struct.pack("!H", code) + reason.encode("utf-8")
                await self.send_frame(CLOSE, payload)
            if self.close_frame is None:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while self.close_frame is None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    await asyncio.wait_for(self._recv(), remaining)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            pass
        finally:
            await self.dispose()

    def abort(self) -> None:
        """Drop the TCP connection (no closing handshake)."""
        self.writer.transport.abort()

    async def dispose(self) -> None:
        """Drop the TCP connection unless it is closed, and wait until it is."""
        if not self.writer.transport.is_closing():
            self.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the server has closed the TCP connection (EOF)."""

        async def _eof() -> None:
            while await self.reader.read(64 * 1024):
                pass

        await asyncio.wait_for(_eof(), timeout)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionError(
            f"the server closed the connection during the upgrade ({exc.partial[:200]!r})"
        ) from None
    if len(head) > _MAX_HEAD:
        raise ConnectionError("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"not an HTTP response: {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        return await reader.readexactly(min(int(length), _MAX_BODY))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while len(body) < _MAX_BODY:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return bytes(body)
    return await reader.read(_MAX_BODY)
