"""Dispatch throughput of the same validated event and RPC: wskit.attrs vs wskit.pydantic.

Both routers run the same handlers on the same frames through the real router
and a connection whose transport appends to a list (no network):
``conn.receive`` -> worker -> envelope + payload validation -> handler ->
``ctx.send``/``ctx.reply`` (outbound validation on, the default) -> pump.
The schemas are the class forms with camelCase wire names (a pydantic model
with an alias generator; an attrs class with ``WIRE_NAME`` metadata), and the
quick forms (``message("PING", text=str, count=int)``), which are camelCase
by default in both packages.

Scenarios (one run, best of several rounds each, same process):

- event, pipelined: N PING frames fed at once, N PONG replies collected;
- event, one at a time: feed one frame, wait for its reply, repeat;
- rpc, one at a time: GET_USER with a correlationId, USER_DATA reply;
- invalid event, one at a time: PING frames with wrong types and an unknown
  key, each answered by an INVALID_ARGUMENT error (the failure path);
- codec only: ``decode`` and ``encode(validate=True)`` of one payload, N times.

The ratio is attrs time / pydantic time (lower is better for attrs).

    hatch run bench:python tools/bench/bench_validators.py [--n 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import attrs
from _drivers import best_of as _best
from _drivers import one_at_a_time_pumped as serial
from _drivers import pipelined
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

import wskit.attrs as wa
import wskit.pydantic as wp

# ------------------------------------------------------------------ schemas


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class PingInP(_Wire):
    text: str
    count: int


class PongOutP(_Wire):
    reply: str
    count: int


class GetUserInP(_Wire):
    user_id: str


class UserOutP(_Wire):
    user_id: str
    name: str


@attrs.define
class PingInA:
    text: str
    count: int


@attrs.define
class PongOutA:
    reply: str
    count: int


@attrs.define
class GetUserInA:
    user_id: str = attrs.field(metadata={wa.WIRE_NAME: "userId"})


@attrs.define
class UserOutA:
    user_id: str = attrs.field(metadata={wa.WIRE_NAME: "userId"})
    name: str


def schemas(validator: str, form: str) -> tuple[Any, Any, Any, Any]:
    mod: Any = wp if validator == "pydantic" else wa
    plugin = wp.with_pydantic() if validator == "pydantic" else wa.with_attrs()
    if form == "class":
        classes = (
            (PingInP, PongOutP, GetUserInP, UserOutP)
            if validator == "pydantic"
            else (PingInA, PongOutA, GetUserInA, UserOutA)
        )
        ping = mod.message("PING", classes[0])
        pong = mod.message("PONG", classes[1])
        get_user = mod.rpc("GET_USER", classes[2], "USER_DATA", classes[3])
    else:
        ping = mod.message("PING", text=str, count=int)
        pong = mod.message("PONG", reply=str, count=int)
        get_user = mod.rpc("GET_USER", {"user_id": str}, "USER_DATA", {"user_id": str, "name": str})
    return ping, pong, get_user, plugin


def build_router(validator: str, form: str) -> Any:
    ping_s, pong_s, get_user_s, plugin = schemas(validator, form)
    create = wp.create_router if validator == "pydantic" else wa.create_router
    # Pipelined rounds queue every reply before the pump drains them: a large
    # outbound buffer keeps the default backpressure policy (close 1013) out of it.
    router = create(max_buffered_bytes=1 << 28).plugin(plugin)

    @router.on(ping_s)
    async def ping(ctx: Any) -> None:
        ctx.send(pong_s, {"reply": ctx.payload.text, "count": ctx.payload.count + 1})

    @router.rpc(get_user_s)
    async def get_user(ctx: Any) -> None:
        ctx.reply({"user_id": ctx.payload.user_id, "name": "Alice"})

    return router


# ------------------------------------------------------------------ drivers


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.n, args.rounds

    ping_frames = [
        json.dumps({"type": "PING", "meta": {}, "payload": {"text": f"hi {i}", "count": i}})
        for i in range(n)
    ]
    rpc_frames = [
        json.dumps(
            {"type": "GET_USER", "meta": {"correlationId": f"c{i}"}, "payload": {"userId": f"u{i}"}}
        )
        for i in range(n)
    ]
    bad_frames = [
        json.dumps({"type": "PING", "meta": {}, "payload": {"text": i, "count": "1", "x": 1}})
        for i in range(n)
    ]

    # Same frames in, identical frames out, for every validator and form.
    sample = ping_frames[:3] + rpc_frames[:3] + bad_frames[:1]
    outputs = {}
    for validator in ("pydantic", "attrs"):
        for form in ("class", "quick"):
            got: list[str] = []
            asyncio.run(serial(build_router(validator, form), sample, got))
            outputs[(validator, form)] = got
    ref = outputs[("pydantic", "class")]
    for key, got in outputs.items():
        assert got[:6] == ref[:6], (key, got, ref)
        error = json.loads(got[6])["payload"]
        assert error["code"] == "INVALID_ARGUMENT", (key, error)
        paths = [i["path"] for i in error["details"]["issues"]]
        assert paths == [["payload", "text"], ["payload", "count"], ["payload", "x"]], (key, paths)

    print(
        f"python {sys.version.split()[0]}, {n} messages per round, best of {rounds}; "
        f"outbound validation on (default)"
    )
    ratios: dict[str, float] = {}
    for form in ("class", "quick"):
        print(f"\n{form} form")
        for label, frames, driver in (
            ("event pipelined", ping_frames, pipelined),
            ("event one-at-a-time", ping_frames, serial),
            ("rpc one-at-a-time", rpc_frames, serial),
            ("invalid event one-at-a-time", bad_frames, serial),
        ):
            times = {}
            for validator in ("pydantic", "attrs"):
                times[validator] = _best(
                    lambda v=validator, f=form, frames=frames, driver=driver: asyncio.run(
                        driver(build_router(v, f), frames, [])
                    ),
                    rounds,
                )
            ratio = times["attrs"] / times["pydantic"]
            ratios[f"{form}/{label}"] = ratio
            print(
                f"  {label:24s} pydantic {n / times['pydantic']:>9,.0f} msg/s | "
                f"attrs {n / times['attrs']:>9,.0f} msg/s | attrs/pydantic time {ratio:4.2f}x"
            )

        ping_p = schemas("pydantic", form)[0].payload
        ping_a = schemas("attrs", form)[0].payload
        data = {"text": "hello", "count": 3}
        for what in ("decode", "encode"):
            times = {}
            for validator, codec in (("pydantic", ping_p), ("attrs", ping_a)):
                if what == "decode":

                    def run(codec: Any = codec, data: Any = data) -> None:
                        for _ in range(n):
                            codec.decode(data)

                else:
                    value = codec.decode(data)

                    def run(codec: Any = codec, value: Any = value) -> None:
                        for _ in range(n):
                            codec.encode(value, validate=True)

                times[validator] = _best(run, rounds)
            ratio = times["attrs"] / times["pydantic"]
            print(
                f"  codec {what:18s} pydantic {n / times['pydantic']:>9,.0f} op/s  | "
                f"attrs {n / times['attrs']:>9,.0f} op/s  | attrs/pydantic time {ratio:4.2f}x"
            )

    main_rows = [k for k in ratios if "invalid" not in k]
    print(
        "\nvalid-message dispatch, attrs/pydantic time: "
        + ", ".join(f"{k} {ratios[k]:.2f}x" for k in main_rows)
    )


if __name__ == "__main__":
    main()
