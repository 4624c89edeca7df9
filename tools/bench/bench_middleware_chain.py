"""Cost of the core middleware chain alone: ``router._compose`` with 1 and 3 no-op
middlewares around a no-op handler, against the earlier chain whose steps and
``next()`` were coroutines of their own (kept here as the baseline), both run
alternately in one process.

Run: ``hatch run bench:python tools/bench/bench_middleware_chain.py [--n 100000]``

Reported: nanoseconds per call through the chain, best of 7 rounds each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from wskit.core.router import _compose

Step = Callable[[Any], Awaitable[None]]


def _awaiting_wrap(mw: Any, inner: Step) -> Step:
    # The earlier chain: the step and next() each a coroutine that awaits the inner one.
    async def step(ctx: Any) -> None:
        called = False

        async def next_() -> None:
            nonlocal called
            if called:
                raise RuntimeError("next() called multiple times")
            called = True
            await inner(ctx)

        await mw(ctx, next_)

    return step


async def _handler(ctx: Any) -> None:
    return None


async def _noop(ctx: Any, next_: Callable[[], Awaitable[None]]) -> None:
    await next_()


async def _time(chain: Step, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await chain(None)
    return (time.perf_counter() - t0) / n * 1e9


async def main(n: int) -> None:
    print(f"Python {sys.version.split()[0]}, {n:,} calls per round, best of 7")
    for k in (1, 3):
        old: Step = _handler
        for _ in range(k):
            old = _awaiting_wrap(_noop, old)
        new = _compose((_noop,) * k, _handler)
        t_old, t_new = [], []
        for _ in range(7):
            t_old.append(await _time(old, n))
            t_new.append(await _time(new, n))
        print(
            f"{k} no-op middleware(s): chain {min(t_new):6.0f} ns | "
            f"awaiting chain {min(t_old):6.0f} ns | ratio {min(t_new) / min(t_old):.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().n))
