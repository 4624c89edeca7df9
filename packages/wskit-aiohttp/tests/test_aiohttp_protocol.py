"""Over real sockets: every kind of inbound frame gets its answer on the wire, odd but
legal input included, and the connection stays usable."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

INTERNAL = {"code": "INTERNAL", "message": "Internal server error", "retryAfterMs": 200}

TABLE: list[tuple[str, str | bytes, list[dict[str, Any]]]] = [
    (
        "not json",
        "not json",
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message: not valid JSON",
                },
            }
        ],
    ),
    (
        "not an object",
        "[1, 2]",
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message: expected a JSON object",
                },
            }
        ],
    ),
    (
        "missing type",
        '{"payload": {}}',
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message envelope: missing or invalid type field",
                },
            }
        ],
    ),
    (
        "binary not utf-8",
        b"\xff\xfe",
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message: binary frame is not UTF-8",
                },
            }
        ],
    ),
    (
        "reserved type",
        '{"type": "$ws:anything"}',
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Reserved type cannot be handled by user code: '$ws:anything'",
                },
            }
        ],
    ),
    (
        "unknown type",
        '{"type": "NOPE"}',
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "UNIMPLEMENTED",
                    "message": "No handler registered for message type: 'NOPE'",
                },
            }
        ],
    ),
    (
        "unknown type with correlationId",
        '{"type": "NOPE", "meta": {"correlationId": "c1"}}',
        [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "c1"},
                "payload": {
                    "code": "UNIMPLEMENTED",
                    "message": "No handler registered for message type: 'NOPE'",
                },
            }
        ],
    ),
    (
        "validation failure",
        '{"type": "PING", "payload": {"text": 5}}',
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid PING message",
                    "details": {
                        "issues": [
                            {
                                "path": ["payload", "text"],
                                "message": "Input should be a valid string",
                            }
                        ]
                    },
                },
            }
        ],
    ),
    (
        "handler raises",
        '{"type": "BOOM"}',
        [{"type": "ERROR", "meta": {}, "payload": INTERNAL}],
    ),
    (
        "rpc without reply",
        '{"type": "NO_REPLY", "meta": {"correlationId": "c2"}, "payload": {"x": 1}}',
        [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "c2"},
                "payload": {
                    "code": "INTERNAL",
                    "message": "handler completed without a reply",
                    "retryAfterMs": 200,
                },
            }
        ],
    ),
    (
        "rpc with progress",
        '{"type": "GET_USER", "meta": {"correlationId": "c3"}, "payload": {"userId": "7"}}',
        [
            {
                "type": "$ws:rpc-progress",
                "meta": {"correlationId": "c3"},
                "payload": {"name": "partial"},
            },
            {"type": "USER_DATA", "meta": {"correlationId": "c3"}, "payload": {"name": "user 7"}},
        ],
    ),
    (
        "deadline",
        '{"type": "SLOW", "meta": {"correlationId": "c4", "timeoutMs": 30}, "payload": {"x": 1}}',
        [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "c4"},
                "payload": {
                    "code": "DEADLINE_EXCEEDED",
                    "message": "Deadline exceeded",
                    "retryAfterMs": 50,
                },
            }
        ],
    ),
    (
        "binary frame",
        b'{"type": "PING", "payload": {"text": "bin"}}',
        [{"type": "PONG", "meta": {}, "payload": {"reply": "bin"}}],
    ),
    (
        "nested 1,000 deep",
        '{"type": "PING", "payload": {"text": ' + "[" * 998 + "]" * 998 + "}}",
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message: nesting too deep (at most 128 levels)",
                },
            }
        ],
    ),
    (
        "nested 100,000 deep",
        '{"type": "PING", "payload": {"text": ' + "[" * 100_000 + "]" * 100_000 + "}}",
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message: nesting too deep (at most 128 levels)",
                },
            }
        ],
    ),
    (
        "lone surrogate echoed",
        '{"type": "PING", "payload": {"text": "a\\ud800"}}',
        [{"type": "PONG", "meta": {}, "payload": {"reply": "a\ud800"}}],
    ),
    (
        "lone surrogate in an RPC",
        '{"type": "GET_USER", "meta": {"correlationId": "s1"}, "payload": {"userId": "\\udfff"}}',
        [
            {
                "type": "$ws:rpc-progress",
                "meta": {"correlationId": "s1"},
                "payload": {"name": "partial"},
            },
            {
                "type": "USER_DATA",
                "meta": {"correlationId": "s1"},
                "payload": {"name": "user \udfff"},
            },
        ],
    ),
    (
        "lone surrogate in an unknown key",
        '{"type": "PING", "payload": {"text": "x", "\\ud800": 1}}',
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid PING message",
                    "details": {
                        "issues": [{"path": ["payload", "\ud800"], "message": "Unrecognized key"}]
                    },
                },
            }
        ],
    ),
    (
        "number out of range",
        '{"type": "PING", "payload": {"text": 1e400}}',
        [
            {
                "type": "ERROR",
                "meta": {},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid message: a number is out of range",
                },
            }
        ],
    ),
    (
        "timeoutMs with 310 digits",
        '{"type": "GET_USER", "meta": {"correlationId": "t1", "timeoutMs": '
        + "9" * 310
        + '}, "payload": {"userId": "u"}}',
        [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "t1"},
                "payload": {
                    "code": "INVALID_ARGUMENT",
                    "message": "Invalid GET_USER message",
                    "details": {
                        "issues": [
                            {
                                "path": ["meta", "timeoutMs"],
                                "message": (
                                    "Expected a positive integer of milliseconds, "
                                    "at most 2147483647"
                                ),
                            }
                        ]
                    },
                },
            }
        ],
    ),
]

PONG = {"type": "PONG", "meta": {}, "payload": {"reply": "still here"}}


@pytest.mark.parametrize(
    ("frame", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
async def test_spec_table_over_the_network(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any, frame: Any, expected: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        got = [await recv(ws) for _ in expected]
        assert got == expected
        # The connection stays usable, and the row was reported.
        await ws.send_str('{"type": "PING", "payload": {"text": "still here"}}')
        assert await recv(ws) == PONG
    if expected[0]["type"] in ("ERROR", "RPC_ERROR"):
        assert len(app.errors) == 1


async def test_error_text_never_reaches_the_wire(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "BOOM"}')
        frame = await recv(ws)
    assert "secret" not in json.dumps(frame)
    [(exc, info)] = app.errors
    assert str(exc) == "secret internal detail"
    assert info.message_type == "BOOM"


async def test_heartbeat_frame_is_answered(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "__heartbeat"}')
        frame = await recv(ws)
    assert frame["type"] == "__heartbeat_ack"
    assert set(frame["meta"]) == {"ts"}
    assert isinstance(frame["meta"]["ts"], int)


async def test_frames_of_one_connection_are_handled_in_order(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        for i in range(200):
            await ws.send_str(json.dumps({"type": "PING", "payload": {"text": str(i)}}))
        replies = [(await recv(ws))["payload"]["reply"] for _ in range(200)]
    assert replies == [str(i) for i in range(200)]


async def test_abort_cancels_the_running_rpc(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any, wait_for: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "SLOW", "meta": {"correlationId": "s1"}, "payload": {"x": 1}}')
        await wait_for(app.slow_started.wait())
        await ws.send_str('{"type": "$ws:abort", "meta": {"correlationId": "s1"}}')
        await wait_for(app.cancelled.wait())
        # Nothing was sent for the aborted RPC: the next frame is the PONG.
        await ws.send_str('{"type": "PING", "payload": {"text": "still here"}}')
        assert await recv(ws) == PONG


async def test_frame_over_the_limit_closes_with_1009(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router, max_message_bytes=1000)
    async with session.ws_connect(server.url) as ws:
        # Exactly the limit (in UTF-8 bytes) is fine.
        text = "é" * 400
        frame = json.dumps({"type": "PING", "payload": {"text": text}}, ensure_ascii=False)
        frame += " " * (1000 - len(frame.encode()))
        assert len(frame.encode()) == 1000 and len(frame) < 700  # bytes, not characters
        await ws.send_str(frame)
        assert (await recv(ws))["payload"] == {"reply": text}
        await ws.send_str(frame + " ")
        msg = await recv(ws)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1009
    assert ws.close_code == 1009
    await server.stop()  # waits for the server side to finish closing
    [(_, code, _reason)] = app.closed
    assert code == 1009
    [(exc, _info)] = app.errors
    assert getattr(exc, "code", None) == "RESOURCE_EXHAUSTED"


async def test_one_failing_connection_does_not_affect_another(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any
) -> None:
    server = await start(app.router)
    async with session.ws_connect(server.url) as a, session.ws_connect(server.url) as b:
        await a.send_str('{"type": "BOOM"}')
        assert (await recv(a))["payload"] == INTERNAL
        await a.send_str("x" * (2 << 20))  # over the default 1 MiB: a is closed
        assert (await recv(a)).data == 1009
        await b.send_str('{"type": "PING", "payload": {"text": "still here"}}')
        assert await recv(b) == PONG
    await server.stop()
    assert sorted(code for _, code, _ in app.closed) == [1000, 1009]
