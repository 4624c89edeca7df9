"""The pydantic codec's JSON fast path (``encode_json``): pydantic-core writes the
payload's JSON text, and every frame it writes says what the general path
(``encode(validate=True)`` and wskit's own encoder) would say: the same JSON
value, the same refusals."""

from __future__ import annotations

import enum
import json
import math
import os
import warnings
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_serializer,
    field_validator,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from wskit.core import MessageContext, OutboundValidationError, RpcContext, ValidationError
from wskit.core.envelope import dumps
from wskit.core.testing import Harness
from wskit.pydantic import PydanticCodec, create_router, message, rpc, with_pydantic


class Mood(enum.Enum):
    HAPPY = "happy"
    NULL = "null"


class Inner(BaseModel):
    label: str
    weight: float | None = None


class Everything(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, strict=False)

    user_name: str
    count: int
    ratio: float
    maybe: str | None = None
    tags: list[str] = Field(default_factory=list)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    inner: Inner | None = None
    when: datetime | None = None
    mood: Mood = Mood.HAPPY


class InfAsConstants(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    value: float


class InfAsStrings(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")
    value: float


def _general(codec: PydanticCodec[Any], value: Any) -> Any:
    """What the general path writes: the Python form through wskit's encoder."""
    return dumps(codec.encode(value, validate=True))


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", json.loads(fn(*args))
    except ValidationError as exc:
        return "invalid", exc.issues
    except ValueError as exc:
        return "refused", type(exc).__name__


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_payloads = st.fixed_dictionaries(
    {
        "userName": st.text(max_size=20),  # lone surrogates, "null", "NaN" and all
        "count": st.integers(min_value=-(2**64), max_value=2**64),
        "ratio": st.floats(allow_nan=True, allow_infinity=True),
    },
    optional={
        "maybe": st.none() | st.text(max_size=8),
        "tags": st.lists(st.text(max_size=5), max_size=3),
        "extraData": st.dictionaries(st.text(max_size=6), _json_values, max_size=3),
        "inner": st.none()
        | st.fixed_dictionaries(
            {"label": st.text(max_size=5)}, optional={"weight": st.none() | st.floats()}
        ),
        "when": st.none() | st.datetimes(timezones=st.just(timezone.utc)),
        "mood": st.sampled_from(["happy", "null", "sad"]),
        "bogus": st.integers(),
    },
)


# WSKIT_FUZZ_EXAMPLES raises the count for a long run (as in the behaviour fuzz suite).
_EXAMPLES = int(os.environ.get("WSKIT_FUZZ_EXAMPLES", "300"))


@settings(max_examples=_EXAMPLES, deadline=None, database=None, derandomize=_EXAMPLES <= 300)
@given(payload=_payloads)
def test_the_fast_path_writes_what_the_general_path_writes(payload: dict[str, Any]) -> None:
    codec = PydanticCodec(Everything)
    fast, general = _outcome(codec.encode_json, payload), _outcome(_general, codec, payload)
    assert fast == general
    if fast[0] == "ok":  # the same value, and the model instance gives it too
        obj = Everything.model_validate(payload)
        assert _outcome(codec.encode_json, obj) == fast


@pytest.mark.parametrize("model", [Everything, InfAsConstants, InfAsStrings])
@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_whatever_the_model_config(
    model: type[BaseModel], number: float
) -> None:
    codec = PydanticCodec(model)
    payload = (
        {"value": number}
        if model is not Everything
        else {
            "userName": "a",
            "count": 1,
            "ratio": number,
        }
    )
    with pytest.raises(ValueError, match="not JSON compliant"):
        codec.encode_json(payload)


def test_text_with_null_nan_or_a_lone_surrogate_is_written_correctly() -> None:
    codec = PydanticCodec(Everything)
    for name in ("null", "NaN", "-Infinity", "x\ud800y", "\udfff"):
        text = codec.encode_json({"userName": name, "count": 1, "ratio": 0.5})
        assert text.encode("utf-8")  # always writable as UTF-8 (surrogates escaped)
        assert json.loads(text)["userName"] == name


Ping = message("PING", text=str)
Pong = message("PONG", text=str, when=datetime)
Ask = rpc("ASK", {"n": int}, "ANSWER", {"n": int, "ratio": float})


def _router(validate_outgoing: bool = True) -> Any:
    router = create_router().plugin(with_pydantic(validate_outgoing=validate_outgoing))

    @router.on(Ping)
    async def ping(ctx: MessageContext[Any, Any]) -> None:
        when = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
        ctx.send(Pong, {"text": ctx.payload.text, "when": when}, meta={"hop": 'a"b'})

    @router.rpc(Ask)
    async def ask(ctx: RpcContext[Any, Any, Any]) -> None:
        n = ctx.payload.n
        ctx.progress({"n": n, "ratio": 0.25})
        ctx.reply({"n": n + 1, "ratio": math.nan if n < 0 else 1e-7})

    return router


async def test_frames_on_the_wire_from_the_fast_path() -> None:
    async with Harness(_router()) as h:
        conn = await h.connect()
        conn.send(Ping, {"text": "é\u2028"})
        conn.send_raw('{"type":"ASK","meta":{"correlationId":"c\\"1"},"payload":{"n":1}}')
        await h.flush()
        assert conn.raw_frames[0] == (
            '{"type":"PONG","meta":{"hop":"a\\"b"},'
            '"payload":{"text":"é\u2028","when":"2026-11-30T12:00:00Z"}}'
        )
        assert conn.raw_frames[1:] == [
            '{"type":"$ws:rpc-progress","meta":{"correlationId":"c\\"1"},'
            '"payload":{"n":1,"ratio":0.25}}',
            '{"type":"ANSWER","meta":{"correlationId":"c\\"1"},"payload":{"n":2,"ratio":1e-7}}',
        ]
        # A correlation id that is not ASCII takes the general encoder: same frame.
        conn.raw_frames.clear()
        frame = {"type": "ASK", "meta": {"correlationId": "ü\ud800"}, "payload": {"n": 2}}
        conn.send_raw(json.dumps(frame))
        await h.flush()
        assert [json.loads(f)["meta"] for f in conn.raw_frames] == [
            {"correlationId": "ü\ud800"},
            {"correlationId": "ü\ud800"},
        ]
        assert all("\\ud800" in f for f in conn.raw_frames)


async def test_nan_in_a_reply_is_an_internal_error_as_before() -> None:
    for validate in (True, False):
        async with Harness(_router(validate)) as h:
            conn = await h.connect()
            conn.send_raw('{"type":"ASK","meta":{"correlationId":"c1"},"payload":{"n":-1}}')
            await h.flush()
            assert [f["type"] for f in conn.frames] == ["$ws:rpc-progress", "RPC_ERROR"]
            assert conn.frames[1]["payload"]["code"] == "INTERNAL"
            assert [type(r.error).__name__ for r in h.take_reported()] == ["ValueError"]


async def test_outbound_validation_errors_are_unchanged() -> None:
    router = create_router().plugin(with_pydantic())

    @router.on(Ping)
    async def ping(ctx: MessageContext[Any, Any]) -> None:
        ctx.send(Pong, {"text": 5, "when": "not a date"})

    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Ping, {"text": "x"})
        await h.flush()
        (reported,) = h.take_reported()
        assert isinstance(reported.error, OutboundValidationError)
        paths = sorted(tuple(issue["path"]) for issue in reported.error.issues)
        assert paths == [("text",), ("when",)]


class Plain(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    user_name: str
    note: str | None = None
    tags: list[str] = Field(default_factory=list)
    inner: Inner | None = None  # Inner holds a float: checked
    when: datetime | None = None
    mood: Mood = Mood.HAPPY


class NoFloats(BaseModel):
    name: str
    note: str | None = None
    count: int = 0
    flags: dict[str, bool] = Field(default_factory=dict)
    when: datetime | None = None
    mood: Mood = Mood.HAPPY
    pair: tuple[int, str] = (0, "")


class Tree(BaseModel):  # a recursive model: its schema carries its definitions
    label: str
    children: list[Tree] = Field(default_factory=list)


class Ratio(enum.Enum):
    HALF = 0.5


class WithValidator(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def _keep(cls, value: str) -> str:
        return value


class WithSerializer(BaseModel):
    name: str

    @field_serializer("name")
    def _out(self, value: str) -> str:
        return value


class WithModelSerializer(BaseModel):
    name: str

    @model_serializer
    def _out(self) -> dict[str, Any]:
        return {"name": self.name}


class Extras(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


@pytest.mark.parametrize(
    ("model", "checked"),
    [
        (NoFloats, False),
        (Tree, False),
        (Plain, True),  # through Inner.weight
        (Everything, True),
        (InfAsConstants, True),
        (create_model("AnyField", value=(Any, None)), True),
        (create_model("BareDict", value=(dict, {})), True),
        (create_model("BareList", value=(list, [])), True),
        (create_model("Money", value=(Decimal, Decimal(0))), True),
        (create_model("EnumOfFloats", value=(Ratio, Ratio.HALF)), True),
        (create_model("FloatLiteral", value=(Literal[0.5, 1], 1)), True),
        (create_model("StrLiteral", value=(Literal["a", 1, None], "a")), False),
        (WithValidator, True),
        (WithSerializer, True),
        (WithModelSerializer, True),
        (Extras, True),
    ],
)
def test_which_models_have_their_json_checked_for_nan(
    model: type[BaseModel], checked: bool
) -> None:
    assert PydanticCodec(model)._check_nonfinite is checked


def test_a_model_without_floats_writes_none_values_on_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = PydanticCodec(NoFloats)
    payload = {"name": "null NaN Infinity", "note": None, "flags": {"x": True}}
    general = json.loads(_general(codec, payload))

    def no_general_path(obj: Any) -> Any:
        raise AssertionError("took the general path")

    monkeypatch.setattr(PydanticCodec, "_to_wire", no_general_path)
    assert json.loads(codec.encode_json(payload)) == general
    assert general["note"] is None


def test_a_model_instance_given_as_is_writes_what_the_general_path_writes() -> None:
    # Assignment is not validated: a str field can end up holding anything.
    codec = PydanticCodec(NoFloats)
    for odd in (math.nan, math.inf, 1.5, None):
        obj = NoFloats(name="a")
        obj.name = odd  # type: ignore[assignment]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pydantic's "unexpected value"
            assert _outcome(codec.encode_json, obj) == _outcome(_general, codec, obj)


@settings(max_examples=_EXAMPLES, deadline=None, database=None, derandomize=_EXAMPLES <= 300)
@given(
    payload=st.fixed_dictionaries(
        {"name": st.text(max_size=12)},
        optional={
            "note": st.none() | st.text(max_size=8),
            "count": st.integers(min_value=-(2**70), max_value=2**70),
            "flags": st.dictionaries(st.text(max_size=5), st.booleans(), max_size=3),
            "when": st.none() | st.datetimes(timezones=st.just(timezone.utc)),
            "mood": st.sampled_from(["happy", "null", "sad"]),
            "pair": st.tuples(st.integers(), st.text(max_size=3)).map(list),
        },
    )
)
def test_an_unchecked_model_writes_what_the_general_path_writes(payload: dict[str, Any]) -> None:
    codec = PydanticCodec(NoFloats)
    assert not codec._check_nonfinite
    assert _outcome(codec.encode_json, payload) == _outcome(_general, codec, payload)
