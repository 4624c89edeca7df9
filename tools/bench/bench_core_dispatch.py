"""In-process dispatch cost of wskit-core + wskit-pydantic against a hand-written path.

Both sides do the same work on the same frames: parse the JSON text, pick the
handler by ``type``, validate the payload with the same pydantic model, build
the reply and serialize it. The framework path runs through the real router and
a connection whose transport appends to a list (no network): ``conn.receive``
→ worker → validation → handler → ``ctx.send``/``ctx.reply`` → pump.

Scenarios (one run, best of several rounds each, same process):

- event, pipelined: N PING frames fed at once, N PONG replies collected.
- event, one at a time: feed one frame, wait until the router is idle, take the
  reply off the outbound FIFO, repeat (the sans-I/O driver, no pump task).
- rpc, one at a time: GET_USER with a correlationId, USER_DATA reply.

Each idle-to-busy transition of a connection starts its worker task. On Python
3.12+ that task starts eagerly, inside ``receive()`` (the router option
``eager_start``, on by default), so a handler that does not wait answers without an
event-loop round trip; on 3.10 and 3.11, and with ``eager_start=False`` (a third
figure on 3.12+), the task first runs at the loop's next iteration, and the
one-at-a-time figures show that round trip, which the hand-written loop (no tasks,
no queue) does not pay. A third figure replaces the driver's ``wait_idle()`` (which waits
through ``asyncio.wait()``: its own futures and two more loop iterations) with a driver that
yields to the loop until the router is idle: the floor of one task switch per message.

The hand-written side is the strictest baseline: a loop that parses, dispatches
through a dict and awaits an async handler inline, with no queue, task or
outbound buffer. The ratio is framework time / hand-written time (lower is
better; targets: pipelined <= 1.5, one at a time <= 2).
Outbound validation is on by default in wskit; the hand-written path validates
the inbound payload only, so the default figure includes that extra work, and a
second figure shows wskit with ``validate_outgoing=False``.

    hatch run bench:python tools/bench/bench_core_dispatch.py [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from _drivers import best_of, one_at_a_time_sans_io, one_at_a_time_yielding, pipelined
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from wskit.pydantic import create_router, message, rpc, with_pydantic

EAGER = sys.version_info >= (3, 12)


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class PingIn(_Wire):
    text: str
    count: int


class PongOut(_Wire):
    reply: str
    count: int


class GetUserIn(_Wire):
    user_id: str


class UserOut(_Wire):
    user_id: str
    name: str


Ping = message("PING", PingIn)
Pong = message("PONG", PongOut)
GetUser = rpc("GET_USER", GetUserIn, "USER_DATA", UserOut)


def build_router(validate_outgoing: bool, eager_start: bool = True) -> Any:
    # Pipelined rounds queue every reply before the pump runs: a large outbound bound.
    router = create_router(max_buffered_bytes=1 << 28, eager_start=eager_start).plugin(
        with_pydantic(validate_outgoing=validate_outgoing)
    )

    @router.on(Ping)
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {"reply": ctx.payload.text, "count": ctx.payload.count + 1})

    @router.rpc(GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.reply({"user_id": ctx.payload.user_id, "name": "Alice"})

    return router


# --------------------------------------------------------------- hand-written


def _hand_ping(msg: dict[str, Any]) -> str:
    p = PingIn.model_validate(msg["payload"])
    return json.dumps(
        {"type": "PONG", "meta": {}, "payload": {"reply": p.text, "count": p.count + 1}},
        separators=(",", ":"),
    )


def _hand_get_user(msg: dict[str, Any]) -> str:
    p = GetUserIn.model_validate(msg["payload"])
    cid = msg["meta"]["correlationId"]
    return json.dumps(
        {
            "type": "USER_DATA",
            "meta": {"correlationId": cid},
            "payload": {"userId": p.user_id, "name": "Alice"},
        },
        separators=(",", ":"),
    )


HANDLERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "PING": _hand_ping,
    "GET_USER": _hand_get_user,
}


async def _hand_async(frames: list[str], out: list[str]) -> None:
    # An async handler per message, as a hand-written asyncio server would call it.
    async def call(msg: dict[str, Any]) -> str:
        return HANDLERS[msg["type"]](msg)

    for raw in frames:
        msg = json.loads(raw)
        out.append(await call(msg))


def _time(fn: Callable[[], Any], rounds: int) -> float:
    return best_of(lambda: asyncio.run(fn()), rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.n

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

    # Both sides must produce identical frames.
    ref: list[str] = []
    asyncio.run(_hand_async(ping_frames[:3] + rpc_frames[:3], ref))
    got: list[str] = []
    asyncio.run(one_at_a_time_sans_io(build_router(True), ping_frames[:3] + rpc_frames[:3], got))
    assert got == ref, (got, ref)

    print(f"python {sys.version.split()[0]}, {n} messages per round, best of {args.rounds}")
    rows = []
    for label, frames, fw, hand in (
        ("event pipelined", ping_frames, pipelined, _hand_async),
        ("event one-at-a-time", ping_frames, one_at_a_time_sans_io, _hand_async),
        ("rpc one-at-a-time", rpc_frames, one_at_a_time_sans_io, _hand_async),
    ):
        t_hand = _time(lambda frames=frames, hand=hand: hand(frames, []), args.rounds)
        t_fw = _time(lambda frames=frames, fw=fw: fw(build_router(True), frames, []), args.rounds)
        t_fw_nov = _time(
            lambda frames=frames, fw=fw: fw(build_router(False), frames, []), args.rounds
        )
        line = (
            f"{label:22s} hand {n / t_hand:>9,.0f} msg/s | wskit {n / t_fw:>9,.0f} msg/s "
            f"ratio {t_fw / t_hand:4.2f}x | no outbound validation {t_fw_nov / t_hand:4.2f}x"
        )
        if fw is one_at_a_time_sans_io:
            t_yield = _time(
                lambda frames=frames: one_at_a_time_yielding(build_router(True), frames, []),
                args.rounds,
            )
            line += f" | driver yielding, not wait_idle() {t_yield / t_hand:4.2f}x"
        if EAGER:
            t_lazy = _time(
                lambda frames=frames, fw=fw: fw(build_router(True, False), frames, []),
                args.rounds,
            )
            line += f" | eager_start=False {t_lazy / t_hand:4.2f}x"
        rows.append((label, t_hand, t_fw, t_fw_nov))
        print(line)
    pipelined_ratio = rows[0][2] / rows[0][1]
    one_at_a_time = max(r[2] / r[1] for r in rows[1:])
    print(
        f"cost ratios (default settings): pipelined {pipelined_ratio:.2f}x (target <= 1.5x), "
        f"one at a time {one_at_a_time:.2f}x (target <= 2x)"
    )


if __name__ == "__main__":
    main()
