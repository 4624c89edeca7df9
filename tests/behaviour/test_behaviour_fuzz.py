"""Property-based fuzzing of the real router through the harness.

Hypothesis generates frames (valid envelopes mutated, random JSON, deep nesting,
lone surrogates, huge numbers, long strings, binary) and checks, for every frame:

- the answer the protocol gives for it, decided here by an independent oracle
  (its own JSON parsing, depth and range checks);
- every frame on the wire is valid UTF-8 JSON, error frames stay small;
- nothing is reported that the protocol does not answer with a code (no
  ``INTERNAL``, no crashed task: the harness fails the test otherwise);
- every RPC gets exactly one terminal frame, and the connection still answers
  a PING afterwards.

The CI profile is derandomized with a fixed budget; set ``WSKIT_FUZZ_PROFILE=long``
for a long local run (``WSKIT_FUZZ_EXAMPLES`` overrides the example count; the
number of frames checked is printed at the end)::

    WSKIT_FUZZ_PROFILE=long hatch test -- -s -o timeout=0 tests/behaviour/test_behaviour_fuzz.py
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wskit.core import MAX_CORRELATION_ID_LENGTH, MAX_JSON_DEPTH, MAX_TIMEOUT_MS
from wskit.core.testing import Harness

pytestmark = pytest.mark.asyncio

_LONG = os.environ.get("WSKIT_FUZZ_PROFILE") == "long"
_EXAMPLES = int(os.environ.get("WSKIT_FUZZ_EXAMPLES", "40000" if _LONG else "150"))
FUZZ = settings(
    max_examples=_EXAMPLES,
    derandomize=not _LONG,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

#: Frames sent per example (each answered and checked on its own).
FRAMES_PER_EXAMPLE = 4
#: Frames checked so far (printed at exit in the long profile).
CHECKED = [0]
if _LONG:
    atexit.register(lambda: print(f"\nwskit fuzz: {CHECKED[0]} frames checked", file=sys.stderr))

# ------------------------------------------------------------------ strategies

# Text with everything Unicode has, lone surrogates (category Cs) included, and
# the strings most likely to break an encoder, often.
odd_strings = st.sampled_from(
    ["\ud800", "a\udfffb", "\udc00\ud800", "\ud83d\ude00", "\x00", "\u2028", "é", "", '"\\']
)
any_text = st.one_of(
    st.text(max_size=20),
    odd_strings,
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(odd_strings | st.text(max_size=3), max_size=4).map("".join),
)
long_text = st.integers(1_000, 60_000).map(lambda n: "x" * n)
huge_ints = st.integers(300, 400).map(lambda n: int("9" * n))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

TYPES = ["PING", "NOTICE", "BARE", "ECHO", "MEASURE", "GET_USER", "SLOW"]


def _payload_for(message_type: str) -> st.SearchStrategy[Any]:
    return {
        "PING": st.fixed_dictionaries({"text": any_text}),
        "NOTICE": st.fixed_dictionaries({"userId": any_text, "count": st.integers()}),
        "BARE": st.just(None),
        "ECHO": st.fixed_dictionaries({"data": json_values}),
        "MEASURE": st.fixed_dictionaries(
            {"ratio": st.floats(allow_nan=False, allow_infinity=False)}
        ),
        "GET_USER": st.fixed_dictionaries({"userId": any_text}),
        "SLOW": st.fixed_dictionaries({"n": st.integers(0, 10)}),
    }[message_type]


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    message_type = draw(st.sampled_from(TYPES))
    frame: dict[str, Any] = {"type": message_type}
    meta: dict[str, Any] = {}
    if message_type in ("GET_USER", "SLOW") or draw(st.booleans()):
        meta["correlationId"] = draw(st.text(max_size=8) | any_text | long_text)
    if draw(st.booleans()):
        meta["timestamp"] = draw(st.integers(0, 2**45))
    if draw(st.integers(0, 5)) == 0:
        meta["timeoutMs"] = draw(st.integers(1, MAX_TIMEOUT_MS) | st.integers() | huge_ints)
    if meta or draw(st.booleans()):
        frame["meta"] = meta
    payload = draw(_payload_for(message_type))
    if payload is not None:
        frame["payload"] = payload
    return frame


def _deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any] | Any:
    frame = draw(envelopes())
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(
            st.sampled_from(
                ["drop", "extra", "replace", "deep", "surrogate", "huge", "long", "type", "meta"]
            )
        )
        target: Any = frame
        if kind != "type" and isinstance(frame.get("payload"), dict) and draw(st.booleans()):
            target = frame["payload"]
        keys = sorted(target) if isinstance(target, dict) else []
        if kind == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        elif kind == "extra":
            target[draw(any_text)] = draw(json_values)
        elif kind == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_values)
        elif kind == "deep" and keys:
            target[draw(st.sampled_from(keys))] = _deep(draw(st.integers(100, 300)))
        elif kind == "surrogate" and keys:
            target[draw(st.sampled_from(keys))] = draw(st.sampled_from(["\ud800", "a\udfffb"]))
        elif kind == "huge" and keys:
            big = draw(huge_ints | st.sampled_from([1e308, -1e308, 5e-324]))
            target[draw(st.sampled_from(keys))] = big
        elif kind == "long" and keys:
            target[draw(st.sampled_from(keys))] = draw(long_text)
        elif kind == "type":
            frame["type"] = draw(
                st.sampled_from(["$ws:abort", "__heartbeat", "__x", "$ws:nope", "ERROR", ""])
                | any_text
                | json_values
            )
        elif kind == "meta":
            frame["meta"] = draw(json_values)
    return frame


def _dump(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))


@st.composite
def frames(draw: st.DrawFn) -> str | bytes:
    choice = draw(st.integers(0, 9))
    if choice <= 4:
        text = _dump(draw(mutated()), draw(st.booleans()))
    elif choice == 5:  # numbers at and past the edges, where a number is expected
        number = draw(
            huge_ints
            | st.sampled_from(["1e308", "1e400", "-1e400", "1" + "0" * 308, "5e-324", "-0", "1E+2"])
        )
        message_type, key = draw(st.sampled_from([("MEASURE", "ratio"), ("NOTICE", "count")]))
        extra = ',"userId":"u"' if message_type == "NOTICE" else ""
        text = f'{{"type":"{message_type}","payload":{{"{key}":{number}{extra}}}}}'

    elif choice == 6:
        text = _dump(draw(json_values), draw(st.booleans()))
    elif choice == 7:
        text = draw(
            any_text
            | st.sampled_from(
                [
                    '{"type":"PING","payload":{"text":1e400}}',
                    '{"type":"PING","payload":{"text":-1e999}}',
                    '{"type":"PING","payload":{"text":NaN}}',
                    '{"type":"PING","payload":{"text":"x"}} trailing',
                    ' {"type":"PING","payload":{"text":"x"}} ',
                    '{"type":"PING","payload":{"text":"\\ud800"}}',
                ]
            )
        )
    elif choice == 8:
        depth = draw(st.integers(MAX_JSON_DEPTH - 3, 3_000))
        text = '{"type":"ECHO","payload":{"data":' + "[" * depth + "]" * depth + "}}"
    else:
        raw = draw(st.binary(max_size=64))
        return raw if draw(st.booleans()) else _dump(draw(mutated()), True).encode() + raw
    if draw(st.integers(0, 4)) == 0:
        return text.encode("utf-8", "surrogatepass")  # binary frame (maybe invalid UTF-8)
    return text


# ---------------------------------------------------------------------- oracle


@dataclass
class Expect:
    """What the answer to one frame may be."""

    answers: list[list[str]] = field(default_factory=list)  # allowed frame-type sequences
    error_code: str | None = None  # the code of an error answer
    correlation_id: str | None = None
    invalid_ok: bool = False  # a route: the answer may also be INVALID_ARGUMENT


class _OutOfRange(ValueError):
    pass


def _strict_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(text)
    return value


def _reject(name: str) -> Any:
    raise ValueError(name)


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(v for v in item.values() if isinstance(v, (dict, list)))
            elif isinstance(item, list):
                below.extend(v for v in item if isinstance(v, (dict, list)))
        level = below
    return depth


RESPONSES = {
    "PING": ["PONG"],
    "NOTICE": ["PONG"],
    "BARE": ["PONG"],
    "ECHO": ["ECHO"],
    "MEASURE": ["MEASURE"],
    "GET_USER": ["$ws:rpc-progress", "USER_DATA"],
}


def oracle(frame: str | bytes) -> Expect:
    invalid = Expect(answers=[["ERROR"]], error_code="INVALID_ARGUMENT")
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            return invalid
    try:
        obj = json.loads(frame, parse_constant=_reject, parse_float=_strict_float)
    except (ValueError, RecursionError):
        return invalid
    if not isinstance(obj, dict) or _depth(obj) > MAX_JSON_DEPTH:
        return invalid
    message_type = obj.get("type")
    if not isinstance(message_type, str) or not message_type:
        return invalid
    meta = obj.get("meta")
    cid = meta.get("correlationId") if isinstance(meta, dict) else None
    cid = cid if isinstance(cid, str) and len(cid) <= MAX_CORRELATION_ID_LENGTH else None
    if message_type == "__heartbeat":
        return Expect(answers=[["__heartbeat_ack"]])
    if message_type == "$ws:abort":
        if cid is None:
            return invalid
        return Expect(answers=[[]])  # nothing is running: nothing to say
    if message_type.startswith(("$ws:", "__")):
        return Expect(answers=[["ERROR"]], error_code="INVALID_ARGUMENT", correlation_id=cid)
    if message_type not in TYPES:
        kind = "RPC_ERROR" if cid is not None else "ERROR"
        return Expect(answers=[[kind]], error_code="UNIMPLEMENTED", correlation_id=cid)
    rpc = message_type in ("GET_USER", "SLOW")
    error_kind = "RPC_ERROR" if rpc and cid is not None else "ERROR"
    if message_type == "SLOW":
        success = [["SLOW_DONE"], ["RPC_ERROR"]]
    else:
        success = [RESPONSES[message_type]]
    return Expect(
        answers=[*success, [error_kind]],
        error_code="INVALID_ARGUMENT",
        correlation_id=cid if rpc else None,
        invalid_ok=True,
    )


# -------------------------------------------------------------------------- app


def fuzz_app(app: Any) -> Any:
    v, router = app.v, app.router
    Echo = v.message("ECHO", data=Any)
    Measure = v.message("MEASURE", ratio=float)

    @router.on(app.Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": ctx.payload.text})

    @router.on(app.Notice)
    async def notice(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": f"{ctx.payload.user_id}:{ctx.payload.count}"})

    @router.on(app.Bare)
    async def bare(ctx: Any) -> None:
        ctx.send(app.Pong, {"reply": "bare"})

    @router.on(Echo)
    async def echo(ctx: Any) -> None:
        ctx.send(Echo, {"data": ctx.payload.data})

    @router.on(Measure)
    async def measure(ctx: Any) -> None:
        ctx.send(Measure, {"ratio": ctx.payload.ratio})

    @router.rpc(app.GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.progress({"name": ctx.payload.user_id})
        ctx.reply({"name": ctx.payload.user_id})

    @router.rpc(app.Slow)
    async def slow(ctx: Any) -> None:
        if ctx.payload.n % 2:
            ctx.error("NOT_FOUND", "odd", {"n": ctx.payload.n})
        else:
            ctx.reply({"n": ctx.payload.n})

    return router


def check_answer(frame: str | bytes, got: list[dict[str, Any]], raw: list[str]) -> None:
    expect = oracle(frame)
    types = [f.get("type") for f in got]
    assert types in expect.answers, (frame[:300], got)
    for text in raw:
        text.encode("utf-8")  # valid UTF-8 on the wire (lone surrogates escaped)
    slow = ["SLOW_DONE"] in expect.answers
    for f, text in zip(got, raw, strict=True):
        if f["type"] in ("ERROR", "RPC_ERROR"):
            assert len(text) <= 16 * 1024, text[:300]  # error frames are bounded
            code = f["payload"]["code"]
            if f["type"] == "RPC_ERROR" and slow:
                assert code in ("NOT_FOUND", expect.error_code), f
            else:
                assert code == expect.error_code, (frame[:300], f)
            if code == "INVALID_ARGUMENT" and expect.invalid_ok:
                issues = f["payload"]["details"]["issues"]
                assert issues, f
        if expect.correlation_id is not None:
            # Surrogate code points that form a pair come back as the one character
            # they encode (as every UTF-16 peer, JavaScript included, reads them).
            paired = expect.correlation_id.encode("utf-16", "surrogatepass").decode(
                "utf-16", "surrogatepass"
            )
            assert f["meta"].get("correlationId") == paired, (frame[:300], f)


@FUZZ
@given(batch=st.lists(frames(), min_size=1, max_size=FRAMES_PER_EXAMPLE))
async def test_every_frame_is_answered_and_nothing_breaks(
    app_factory: Any, batch: list[str | bytes]
) -> None:
    app = app_factory()
    router = fuzz_app(app)
    async with Harness(router) as h:
        conn = await h.connect()
        for frame in batch:
            conn.clear()
            reported = len(h.reported)
            conn.send_raw(frame)
            await h.flush()
            check_answer(frame, conn.frames, conn.raw_frames)
            CHECKED[0] += 1
            for r in h.reported[reported:]:
                assert r.expected, r  # answered with its own code, never a failure
            assert not conn.closed and conn.connection.close_requested is None
        conn.clear()
        conn.send(app.Ping, {"text": "alive"})
        await h.flush()
        assert conn.payloads(app.Pong) == [{"reply": "alive"}]


# ------------------------------------------------------------ over real sockets

SOCKET_FUZZ = settings(FUZZ, max_examples=max(10, _EXAMPLES // 5))


@SOCKET_FUZZ
@given(batch=st.lists(frames(), min_size=1, max_size=FRAMES_PER_EXAMPLE))
async def test_every_frame_is_answered_over_a_socket(
    app_factory: Any, batch: list[str | bytes]
) -> None:
    import aiohttp

    from wskit.aiohttp import create_app
    from wskit.aiohttp.testing import loopback_server

    app = app_factory()
    router = fuzz_app(app)
    failures: list[BaseException] = []
    router.observe(lambda exc, info: None if _expected(exc) else failures.append(exc))
    async with (
        loopback_server(create_app(router, path="/ws"), path="/ws") as server,
        aiohttp.ClientSession() as session,
        session.ws_connect(server.url) as ws,
    ):
        for n, frame in enumerate(batch):
            if isinstance(frame, str) and not _utf8(frame):
                # A str with lone surrogates cannot be a text frame: send its bytes.
                frame = frame.encode("utf-8", "surrogatepass")
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            marker = f"marker-{n}"
            await ws.send_str(json.dumps({"type": "PING", "payload": {"text": marker}}))
            got: list[dict[str, Any]] = []
            raw: list[str] = []
            while True:  # the answer to the frame is everything before the marker's PONG
                msg = await asyncio.wait_for(ws.receive(), 10.0)
                assert msg.type is aiohttp.WSMsgType.TEXT, (frame[:200], msg)
                parsed = json.loads(msg.data)
                if parsed == {"type": "PONG", "meta": {}, "payload": {"reply": marker}}:
                    break
                got.append(parsed)
                raw.append(msg.data)
            check_answer(frame, got, raw)
    assert failures == []


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _expected(exc: BaseException) -> bool:
    from wskit.core import RpcError

    return isinstance(exc, RpcError) and exc.code != "INTERNAL"
