"""Flow control: the server accepts at most ``MAX_IN_FLIGHT`` jobs per connection and answers
the next one ``RESOURCE_EXHAUSTED`` with ``retryAfterMs``; the client waits that long and
submits again. Progress updates are optional, so the server skips them while the
connection's outbound buffer is over half full (a slow reader), and never skips results."""

from __future__ import annotations

import asyncio
from typing import Any

from wskit.client import Client
from wskit.core import RpcError
from wskit.pydantic import create_router, message, rpc, with_pydantic

MAX_IN_FLIGHT = 4
RETRY_AFTER_MS = 50

Submit = rpc("SUBMIT", {"job_id": str, "n": int}, "ACCEPTED", {"job_id": str})
Progress = message("PROGRESS", job_id=str, step=int)
Done = message("DONE", job_id=str, result=int)


def build_router(work_ms: float = 100) -> Any:
    router = create_router().plugin(with_pydantic())
    running: dict[str, set[asyncio.Task[None]]] = {}  # client id -> its jobs
    router.stats = {"refused": 0, "peak": 0}  # type: ignore[attr-defined]

    async def run(ctx: Any, job_id: str, n: int) -> None:
        conn = ctx.connection
        for step in range(4):
            await asyncio.sleep(work_ms / 4000)
            if conn.buffered_bytes < conn.max_buffered_bytes // 2:  # optional: skip if behind
                ctx.send(Progress, {"job_id": job_id, "step": step})
        ctx.send(Done, {"job_id": job_id, "result": n * n})  # never skipped

    @router.rpc(Submit)
    async def submit(ctx: Any) -> None:
        jobs = running.setdefault(ctx.client_id, set())
        if len(jobs) >= MAX_IN_FLIGHT:
            router.stats["refused"] += 1  # type: ignore[attr-defined]
            ctx.error(
                "RESOURCE_EXHAUSTED",
                f"{MAX_IN_FLIGHT} jobs in flight: wait for one to finish",
                retry_after_ms=RETRY_AFTER_MS,
            )
            return
        task = asyncio.get_running_loop().create_task(run(ctx, ctx.payload.job_id, ctx.payload.n))
        jobs.add(task)
        task.add_done_callback(jobs.discard)
        router.stats["peak"] = max(router.stats["peak"], len(jobs))  # type: ignore[attr-defined]
        ctx.reply({"job_id": ctx.payload.job_id})

    @router.on_close
    async def cancel_jobs(ctx: Any) -> None:
        for task in running.pop(ctx.client_id, set()):
            task.cancel()

    return router


async def submit(client: Client, job_id: str, n: int) -> int:
    """Submit one job, waiting ``retryAfterMs`` whenever the server is full; returns the
    number of times it had to wait."""
    waits = 0
    while True:
        try:
            await client.request(Submit, payload={"job_id": job_id, "n": n})
            return waits
        except RpcError as exc:
            if exc.code != "RESOURCE_EXHAUSTED" or exc.retry_after_ms is None:
                raise
            waits += 1
            await asyncio.sleep(exc.retry_after_ms / 1000)


async def run_jobs(url: str, count: int) -> tuple[dict[str, int], int]:
    """Submit ``count`` jobs at once; return their results and the total waits."""
    async with Client(url) as client:
        results: dict[str, int] = {}
        all_done = asyncio.Event()

        def done(msg: Any) -> None:
            results[msg.payload.job_id] = msg.payload.result
            if len(results) == count:
                all_done.set()

        client.on(Done, done)
        waits = await asyncio.gather(*(submit(client, f"job{i}", i) for i in range(count)))
        await asyncio.wait_for(all_done.wait(), 30)
        return results, sum(waits)


async def demo(url: str) -> list[str]:
    results, waits = await run_jobs(url, 12)
    ok = results == {f"job{i}": i * i for i in range(12)}
    return [f"12 jobs done, results correct: {ok}", f"the client waited: {waits > 0}"]
