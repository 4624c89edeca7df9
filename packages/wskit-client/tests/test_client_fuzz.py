"""Property-based fuzzing of the client's inbound path over real sockets.

A raw ``websockets`` server on loopback pushes generated frames (valid envelopes mutated,
random JSON, deep nesting, lone surrogates, huge and non-finite numbers, long strings,
binary) to one real client; after each batch the client sends a request. For every batch:

- every frame reached exactly one place: a handler, ``on_unhandled``, or ``on_error``
  (heartbeat acks alone may be dropped quietly): nothing unreported;
- nothing crashed: no error logged, no exception left to the event loop, the same
  connection is still open and the request gets its reply.

Runs a fixed, derandomized budget in the normal suite (300 batches, about a second). A long,
random run (40,000 batches, over 100,000 frames; ``WSKIT_FUZZ_EXAMPLES=N`` sets the number of
batches; ``-s`` prints the counts; a failure prints a ``@reproduce_failure`` blob)::

    WSKIT_FUZZ_PROFILE=long hatch test packages/wskit-client/tests/test_client_fuzz.py -- -s

The profiles are registered in this directory's ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.client import Client, ClientErrorInfo, Message

T = 10.0  # safety net per batch

# -- strategies --------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
CHARS = st.one_of(st.characters(), SURROGATES)
TEXT = st.text(CHARS, max_size=12)
HUGE_INTS = st.integers(min_value=300, max_value=450).map(lambda n: int("9" * n))
INTS = st.one_of(st.integers(), HUGE_INTS, HUGE_INTS.map(lambda i: -i))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
TYPES = st.one_of(
    st.sampled_from(
        [
            "PUSH",
            "NOTE",
            "HOLD_REPLY",
            "ECHO_REPLY",
            "RPC_ERROR",
            "ERROR",
            "$ws:rpc-progress",
            "__heartbeat_ack",
            "MYSTERY",
            "",
        ]
    ),
    TEXT,
)
CORRELATION_IDS = st.one_of(st.sampled_from(["c1", "nobody", ""]), TEXT, JSON_VALUES)
META = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "timestamp": st.one_of(INTS, FLOATS),
            "correlationId": CORRELATION_IDS,
            "timeoutMs": INTS,
            "idempotencyKey": TEXT,
            "clientId": TEXT,
        },
    ),
    st.dictionaries(TEXT, JSON_VALUES, max_size=3),
    JSON_VALUES,
)
PAYLOADS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "seq": st.one_of(INTS, JSON_VALUES),
            "text": st.one_of(TEXT, JSON_VALUES),
            "n": INTS,
            "code": st.one_of(st.sampled_from(["INTERNAL", "NOT_FOUND"]), JSON_VALUES),
            "message": JSON_VALUES,
            "retryAfterMs": st.one_of(INTS, FLOATS),
            "details": JSON_VALUES,
        },
    ),
    JSON_VALUES,
)
ENVELOPES = st.fixed_dictionaries(
    {"type": TYPES},
    optional={"meta": META, "payload": PAYLOADS, "extra": JSON_VALUES},
)
# A "mutated" envelope: a valid-looking one with its root re-typed, keys dropped or added.
MUTATED = st.one_of(
    ENVELOPES,
    st.builds(lambda env, t: {**env, "type": t}, ENVELOPES, JSON_VALUES),
    st.builds(lambda env: {k: v for k, v in env.items() if k != "type"}, ENVELOPES),
    JSON_VALUES,
)


def _serialize(value: Any, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)  # NaN: not JSON
    if not ascii_only:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate can only travel escaped
            return json.dumps(value, allow_nan=True)
    return text


VALID = st.one_of(
    st.builds(
        lambda seq, ts: {"type": "PUSH", "meta": {"timestamp": ts}, "payload": {"seq": seq}},
        st.integers(),
        st.integers(min_value=0),
    ),
    st.builds(lambda text: {"type": "NOTE", "meta": {}, "payload": {"text": text}}, TEXT),
    st.builds(
        lambda t, cid: {"type": t, "meta": {"correlationId": cid}, "payload": {"n": 1}},
        st.sampled_from(["HOLD_REPLY", "RPC_ERROR", "$ws:rpc-progress", "ERROR"]),
        st.sampled_from(["c1", "nobody"]),
    ),
)


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope with one thing changed: a value replaced, a key added or dropped."""
    env: dict[str, Any] = draw(VALID)
    part = draw(st.sampled_from(["root", "meta", "payload"]))
    target = env if part == "root" else env[part]
    action = draw(st.sampled_from(["replace", "add", "drop"]))
    keys = sorted(target)
    if action == "add" or not keys:
        target[draw(st.one_of(TEXT, st.sampled_from(["x", "clientId", "timeoutMs"])))] = draw(
            JSON_VALUES
        )
    elif action == "drop":
        del target[draw(st.sampled_from(keys))]
    else:
        target[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
    return env


STRUCTURED = st.builds(_serialize, st.one_of(VALID, near_valid(), MUTATED), st.booleans())

DEPTHS = st.one_of(
    st.sampled_from([254, 255, 256, 300, 990, 1000, 1001, 5000, 100_000]),
    st.integers(min_value=1, max_value=3000),
)


@st.composite
def deep_frames(draw: st.DrawFn) -> str:
    depth = draw(DEPTHS)
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    leaf = draw(st.sampled_from(["1", '"\\ud800"', "1e400", "null", "{}"]))
    nested = opener * depth + leaf + closer * depth
    where = draw(st.sampled_from(["top", "payload", "field", "meta"]))
    if where == "top":
        return nested
    if where == "meta":
        return '{"type":"PUSH","meta":' + nested + ',"payload":{"seq":1}}'
    if where == "field":
        return '{"type":"PUSH","meta":{},"payload":{"seq":' + nested + "}}"
    return '{"type":"MYSTERY","meta":{},"payload":' + nested + "}"


NUMBER_TOKENS = st.one_of(
    st.sampled_from(["1e400", "-1e400", "1e-400", "1E+999", "-0", "NaN", "Infinity", "-Infinity"]),
    st.integers(min_value=17, max_value=5000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=400).map(lambda n: "0." + "0" * n + "1"),
)


@st.composite
def number_frames(draw: st.DrawFn) -> str:
    token = draw(NUMBER_TOKENS)
    template = draw(
        st.sampled_from(
            [
                '{"type":"PUSH","meta":{},"payload":{"seq":%s}}',
                '{"type":"PUSH","meta":{"timestamp":%s},"payload":{"seq":1}}',
                '{"type":"RPC_ERROR","meta":{"correlationId":"c1"},"payload":{"code":"X","retryAfterMs":%s}}',
                '{"type":"ERROR","meta":{},"payload":{"code":"X","retryAfterMs":%s}}',
                '{"type":"MYSTERY","meta":{"timestamp":%s},"payload":[%s]}',
                "%s",
            ]
        )
    )
    return template.replace("%s", token)


@st.composite
def long_frames(draw: st.DrawFn) -> str:
    unit = draw(st.text(CHARS, min_size=1, max_size=4))
    size = draw(st.integers(min_value=1_000, max_value=50_000))
    text = (unit * (size // len(unit) + 1))[:size]
    message_type = draw(st.sampled_from(["NOTE", "PUSH", "MYSTERY", "ERROR"]))
    return json.dumps({"type": message_type, "meta": {}, "payload": {"text": text}})


BINARY = st.one_of(
    st.binary(max_size=64),
    STRUCTURED.map(lambda s: s.encode("utf-8")),
    st.builds(lambda s, junk: s.encode("utf-8") + junk, STRUCTURED, st.binary(min_size=1)),
)

FRAMES = st.one_of(
    STRUCTURED, STRUCTURED, STRUCTURED, deep_frames(), number_frames(), long_frames(), BINARY
)
BATCHES = st.lists(FRAMES, min_size=1, max_size=4)


def _is_heartbeat_ack(frame: str | bytes) -> bool:
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return False
    return type(obj) is dict and obj.get("type") == "__heartbeat_ack"


# -- the property ---------------------------------------------------------------------------


class _Env:
    """One raw server and one client for the whole run, on this test's own loop."""

    def __init__(self, raw: Any, client: Client) -> None:
        self.raw = raw
        self.client = client
        self.outcomes: list[tuple[str, Any]] = []
        self.loop_errors: list[dict[str, Any]] = []
        self.frames = 0
        self.batches = 0


async def _start(raw_server_class: Any, schemas: Any) -> _Env:
    raw = raw_server_class()
    await raw.start()
    client = Client(raw.url, reconnect=False)
    env = _Env(raw, client)

    def on_error(exc: BaseException, info: ClientErrorInfo) -> None:
        env.outcomes.append((f"error:{info.kind}", exc))

    def on_message(msg: Message[Any]) -> None:
        env.outcomes.append(("delivered", msg))

    client.on_error(on_error)
    client.on(schemas.Push, on_message)
    client.on(schemas.Note, on_message)
    client.on_unhandled(lambda raw_msg: env.outcomes.append(("unhandled", raw_msg)))
    await client.connect()
    return env


async def _check_batch(env: _Env, schemas: Any, frames: list[str | bytes]) -> None:
    env.outcomes.clear()
    await env.raw.push(*frames)
    reply = await env.client.request(schemas.Echo, payload={"text": f"b{env.batches}"})
    assert reply.text == f"b{env.batches}"
    env.batches += 1
    env.frames += len(frames)
    acks = sum(1 for f in frames if _is_heartbeat_ack(f))
    assert len(frames) - acks <= len(env.outcomes) <= len(frames), (frames, env.outcomes)
    assert env.client.state == "open" and env.raw.connections == 1
    assert env.loop_errors == []


def test_client_survives_generated_frames(
    raw_server_class: Any,
    schemas: Any,
    fuzz_settings: settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    caplog.set_level(logging.WARNING)
    env = loop.run_until_complete(_start(raw_server_class, schemas))
    loop.set_exception_handler(lambda _loop, context: env.loop_errors.append(context))
    try:

        @fuzz_settings
        @given(frames=BATCHES)
        def batch(frames: list[str | bytes]) -> None:
            loop.run_until_complete(asyncio.wait_for(_check_batch(env, schemas, frames), T))
            problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert problems == [], [r.getMessage() for r in problems]

        batch()
        assert env.frames >= fuzz_settings.max_examples  # the budget really ran
        print(f"client fuzz: {env.batches} batches, {env.frames} frames, nothing unreported")
    finally:
        loop.run_until_complete(env.client.close())
        loop.run_until_complete(env.raw.stop())
        loop.close()
