"""Server-side interop: the same frames go to the original WS-Kit TypeScript server and to a
wskit-aiohttp server running the equivalent router; the answers are compared frame by frame.

Each exchange runs on a fresh connection and ends with an ``ECHO`` sentinel request, so "no
answer" is observed (the sentinel's reply came first), never waited for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

ABSENT = "<absent>"


def shape(frame: dict[str, Any]) -> dict[str, Any]:
    """A frame with server-clock values (``meta.ts``) replaced by their type."""
    meta = dict(frame.get("meta", ABSENT)) if isinstance(frame.get("meta"), dict) else ABSENT
    if isinstance(meta, dict) and isinstance(meta.get("ts"), int):
        meta["ts"] = "<int>"
    return {
        "type": frame.get("type"),
        "meta": meta,
        "payload": frame.get("payload", ABSENT),
        "keys": sorted(frame),
    }


def frames(*expected: dict[str, Any]) -> list[dict[str, Any]]:
    return [shape(f) for f in expected]


# (id, frame sent, expected answer, error codes the TS router reports for it)
ACCEPTED: list[tuple[str, Any, list[dict[str, Any]], list[str | None]]] = [
    (
        "event without meta",
        {"type": "NOTE", "payload": {"text": "a"}},
        frames({"type": "NOTE_ACK", "meta": {}, "payload": {"text": "a"}}),
        [],
    ),
    (
        "event with empty meta",
        {"type": "NOTE", "meta": {}, "payload": {"text": "b"}},
        frames({"type": "NOTE_ACK", "meta": {}, "payload": {"text": "b"}}),
        [],
    ),
    (
        "event with timestamp",
        {"type": "NOTE", "meta": {"timestamp": 1_700_000_000_000}, "payload": {"text": "c"}},
        frames({"type": "NOTE_ACK", "meta": {}, "payload": {"text": "c"}}),
        [],
    ),
    (
        "event with correlationId",
        {"type": "NOTE", "meta": {"correlationId": "e1"}, "payload": {"text": "d"}},
        frames({"type": "NOTE_ACK", "meta": {}, "payload": {"text": "d"}}),
        [],
    ),
    (
        "event with non-ASCII text",
        {"type": "NOTE", "payload": {"text": "h\u00e9llo \u2713 \U0001f600 \u4e2d"}},
        frames(
            {
                "type": "NOTE_ACK",
                "meta": {},
                "payload": {"text": "h\u00e9llo \u2713 \U0001f600 \u4e2d"},
            }
        ),
        [],
    ),
    (
        "event with extended meta",
        {"type": "TAGGED", "meta": {"room": "r1", "timestamp": 5}, "payload": {"text": "t"}},
        frames({"type": "TAGGED_ACK", "meta": {"room": "r1"}, "payload": {"text": "t"}}),
        [],
    ),
    (
        "event with optional extended meta left out",
        {"type": "TAGGED", "payload": {"text": "u"}},
        frames({"type": "TAGGED_ACK", "meta": {}, "payload": {"text": "u"}}),
        [],
    ),
    (
        "event without payload",
        {"type": "PING"},
        frames({"type": "PONG", "meta": {}}),
        [],
    ),
    (
        "binary event",
        json.dumps({"type": "NOTE", "payload": {"text": "bin"}}).encode(),
        frames({"type": "NOTE_ACK", "meta": {}, "payload": {"text": "bin"}}),
        [],
    ),
    (
        "rpc",
        {
            "type": "ECHO",
            "meta": {"correlationId": "c1", "timestamp": 1},
            "payload": {"text": "hi"},
        },
        frames({"type": "ECHO_REPLY", "meta": {"correlationId": "c1"}, "payload": {"text": "hi"}}),
        [],
    ),
    (
        "binary rpc",
        json.dumps(
            {"type": "ECHO", "meta": {"correlationId": "c2"}, "payload": {"text": "b"}}
        ).encode(),
        frames({"type": "ECHO_REPLY", "meta": {"correlationId": "c2"}, "payload": {"text": "b"}}),
        [],
    ),
    (
        "rpc with one progress update",
        {"type": "COUNT", "meta": {"correlationId": "p1"}, "payload": {"n": 1}},
        frames(
            {"type": "$ws:rpc-progress", "meta": {"correlationId": "p1"}, "payload": {"value": 0}},
            {"type": "COUNT_DONE", "meta": {"correlationId": "p1"}, "payload": {"value": 1}},
        ),
        [],
    ),
    (
        "rpc with three progress updates",
        {"type": "COUNT", "meta": {"correlationId": "p3"}, "payload": {"n": 3}},
        frames(
            *[
                {
                    "type": "$ws:rpc-progress",
                    "meta": {"correlationId": "p3"},
                    "payload": {"value": i},
                }
                for i in range(3)
            ],
            {"type": "COUNT_DONE", "meta": {"correlationId": "p3"}, "payload": {"value": 3}},
        ),
        [],
    ),
    (
        "rpc without progress",
        {"type": "COUNT", "meta": {"correlationId": "p0"}, "payload": {"n": 0}},
        frames({"type": "COUNT_DONE", "meta": {"correlationId": "p0"}, "payload": {"value": 0}}),
        [],
    ),
    (
        "rpc error, terminal code",
        {"type": "FAIL", "meta": {"correlationId": "f1"}, "payload": {"code": "NOT_FOUND"}},
        frames(
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "f1"},
                "payload": {"code": "NOT_FOUND", "message": "boom", "details": {"attempt": 1}},
            }
        ),
        ["NOT_FOUND"],
    ),
    (
        "rpc error, transient code with its suggested backoff",
        {"type": "FAIL", "meta": {"correlationId": "f2"}, "payload": {"code": "UNAVAILABLE"}},
        frames(
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "f2"},
                "payload": {
                    "code": "UNAVAILABLE",
                    "message": "boom",
                    "details": {"attempt": 1},
                    "retryAfterMs": 100,
                },
            }
        ),
        ["UNAVAILABLE"],
    ),
    (
        "rpc error, custom code",
        {"type": "FAIL", "meta": {"correlationId": "f3"}, "payload": {"code": "OUT_OF_STOCK"}},
        frames(
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "f3"},
                "payload": {"code": "OUT_OF_STOCK", "message": "boom", "details": {"attempt": 1}},
            }
        ),
        ["OUT_OF_STOCK"],
    ),
    (
        "heartbeat",
        {"type": "__heartbeat"},
        frames({"type": "__heartbeat_ack", "meta": {"ts": 0}}),
        [],
    ),
    (
        "heartbeat with meta and payload",
        {"type": "__heartbeat", "meta": {"timestamp": 1}, "payload": {"x": 1}},
        frames({"type": "__heartbeat_ack", "meta": {"ts": 0}}),
        [],
    ),
]


def _wire(frame: Any) -> str | bytes:
    return frame if isinstance(frame, (str, bytes)) else json.dumps(frame)


@pytest.mark.parametrize(
    ("frame", "expected", "ts_error_codes"),
    [pytest.param(f, e, c, id=i) for i, f, e, c in ACCEPTED],
)
async def test_accepted_frame_gets_the_same_answer(
    frame: Any,
    expected: list[dict[str, Any]],
    ts_error_codes: list[str | None],
    ts_server: Any,
    wskit_server: Any,
    exchange: Callable[..., Any],
) -> None:
    ts = await exchange(ts_server.url, _wire(frame))
    ours = await exchange(wskit_server.url, _wire(frame))

    assert [shape(f) for f in ts.frames] == expected, "the TS server's answer changed"
    assert [shape(f) for f in ours.frames] == expected
    assert ts.close_code is ours.close_code is None
    # The TS router reports every ctx.error() to onError; nothing else went wrong there.
    assert [e["code"] for e in await ts_server.take_errors()] == ts_error_codes


async def test_heartbeat_ack_carries_the_server_clock(
    ts_server: Any, wskit_server: Any, exchange: Callable[..., Any]
) -> None:
    ts = await exchange(ts_server.url, json.dumps({"type": "__heartbeat"}))
    ours = await exchange(wskit_server.url, json.dumps({"type": "__heartbeat"}))
    # Both stamp wall-clock milliseconds: within a minute of each other.
    assert abs(ts.frames[0]["meta"]["ts"] - ours.frames[0]["meta"]["ts"]) < 60_000


async def test_server_side_close_reaches_the_peer_with_its_code(
    ts_server: Any, wskit_server: Any, exchange: Callable[..., Any]
) -> None:
    frame = json.dumps({"type": "DROP", "payload": {"code": 4001}})
    ts = await exchange(ts_server.url, frame)
    ours = await exchange(wskit_server.url, frame)
    assert (ts.frames, ts.close_code) == ([], 4001)
    assert (ours.frames, ours.close_code) == ([], 4001)


# Frames where wskit deliberately answers differently (docs/differences.md): the TS server's
# exact answer (usually none, with an error reported to its onError) and wskit's documented
# one. (id, frame, TS answer, TS error code reported, wskit answer)
VALIDATION = "VALIDATION_ERROR"
DIFFERENT: list[tuple[str, Any, list[dict[str, Any]], list[str | None], list[dict[str, Any]]]] = [
    (
        "invalid payload (event)",
        {"type": "NOTE", "payload": {"text": 5}},
        [],
        [VALIDATION],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": [["payload", "text"]]}],
    ),
    (
        "invalid payload (rpc)",
        {"type": "ECHO", "meta": {"correlationId": "v1"}, "payload": {"text": 5}},
        [],
        [VALIDATION],
        [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "v1"},
                "code": "INVALID_ARGUMENT",
                "paths": [["payload", "text"]],
            }
        ],
    ),
    (
        "unknown payload key",
        {"type": "NOTE", "payload": {"text": "x", "extra": 1}},
        [],
        [VALIDATION],
        [
            {
                "type": "ERROR",
                "meta": {},
                "code": "INVALID_ARGUMENT",
                "paths": [["payload", "extra"]],
            }
        ],
    ),
    (
        "payload on a message without one",
        {"type": "PING", "payload": {}},
        [],
        [VALIDATION],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": [["payload"]]}],
    ),
    (
        "unknown meta key",
        {"type": "NOTE", "meta": {"other": 1}, "payload": {"text": "x"}},
        [],
        [VALIDATION],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": [["meta", "other"]]}],
    ),
    (
        "non-object meta",
        {"type": "NOTE", "meta": 5, "payload": {"text": "x"}},
        [],
        [VALIDATION],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": [["meta"]]}],
    ),
    (
        "unknown type",
        {"type": "NOPE", "payload": {}},
        [],
        [None],
        [{"type": "ERROR", "meta": {}, "code": "UNIMPLEMENTED", "paths": None}],
    ),
    (
        "unknown type with a correlationId",
        {"type": "NOPE", "meta": {"correlationId": "u1"}},
        [],
        [None],
        [
            {
                "type": "RPC_ERROR",
                "meta": {"correlationId": "u1"},
                "code": "UNIMPLEMENTED",
                "paths": None,
            }
        ],
    ),
    (
        "invalid JSON",
        "not json",
        [],
        [None],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": None}],
    ),
    (
        "reserved type",
        {"type": "$ws:custom"},
        [],
        [None],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": None}],
    ),
    (
        "meta.timeoutMs",
        {
            "type": "ECHO",
            "meta": {"correlationId": "t1", "timeoutMs": 5000},
            "payload": {"text": "x"},
        },
        [],
        [VALIDATION],
        [{"type": "ECHO_REPLY", "meta": {"correlationId": "t1"}, "payload": {"text": "x"}}],
    ),
    (
        "meta.idempotencyKey",
        {
            "type": "ECHO",
            "meta": {"correlationId": "i1", "idempotencyKey": "k"},
            "payload": {"text": "y"},
        },
        [],
        [VALIDATION],
        [{"type": "ECHO_REPLY", "meta": {"correlationId": "i1"}, "payload": {"text": "y"}}],
    ),
    (
        "meta.clientId from the client",
        {"type": "NOTE", "meta": {"clientId": "me"}, "payload": {"text": "z"}},
        [],
        [VALIDATION],
        [{"type": "NOTE_ACK", "meta": {}, "payload": {"text": "z"}}],
    ),
    (
        "unknown root key",
        {"type": "NOTE", "x": 1, "payload": {"text": "r"}},
        [{"type": "NOTE_ACK", "meta": {}, "payload": {"text": "r"}}],
        [],
        [{"type": "ERROR", "meta": {}, "code": "INVALID_ARGUMENT", "paths": [["x"]]}],
    ),
    (
        "rpc without correlationId",
        {"type": "ECHO", "payload": {"text": "n"}},
        [{"type": "ECHO_REPLY", "meta": {}, "payload": {"text": "n"}}],
        [],
        [
            {
                "type": "ERROR",
                "meta": {},
                "code": "INVALID_ARGUMENT",
                "paths": [["meta", "correlationId"]],
            }
        ],
    ),
    (
        "$ws:abort for no running request",
        {"type": "$ws:abort", "meta": {"correlationId": "zz"}},
        [],
        [None],
        [],
    ),
]


def summary(frame: dict[str, Any]) -> dict[str, Any]:
    """An answer reduced to what the docs promise: error frames to type, meta, code and the
    paths of ``details.issues``; other frames as they are."""
    if frame.get("type") in ("ERROR", "RPC_ERROR"):
        payload = frame["payload"]
        issues = (payload.get("details") or {}).get("issues")
        return {
            "type": frame["type"],
            "meta": frame["meta"],
            "code": payload["code"],
            "paths": None if issues is None else [i["path"] for i in issues],
        }
    return frame


@pytest.mark.parametrize(
    ("frame", "ts_expected", "ts_error_codes", "wskit_expected"),
    [pytest.param(f, t, c, w, id=i) for i, f, t, c, w in DIFFERENT],
)
async def test_documented_difference(
    frame: Any,
    ts_expected: list[dict[str, Any]],
    ts_error_codes: list[str | None],
    wskit_expected: list[dict[str, Any]],
    ts_server: Any,
    wskit_server: Any,
    exchange: Callable[..., Any],
) -> None:
    ts = await exchange(ts_server.url, _wire(frame))
    ours = await exchange(wskit_server.url, _wire(frame))

    assert ts.frames == ts_expected, "the TS server's answer changed"
    assert [e["code"] for e in await ts_server.take_errors()] == ts_error_codes
    assert [summary(f) for f in ours.frames] == wskit_expected
    assert ts.close_code is ours.close_code is None
