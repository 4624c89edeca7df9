"""Error recovery: the server says whether an error is worth retrying, and when. Standard
codes carry that by themselves (``UNAVAILABLE`` is transient, ``NOT_FOUND`` is not), and
``retryAfterMs`` says how long to wait; the client's ``RetryPolicy`` follows both, so
application code only ever sees errors that retrying could not fix."""

from __future__ import annotations

from collections import Counter
from typing import Any

from wskit.client import Client, RetryPolicy
from wskit.core import RpcError
from wskit.pydantic import create_router, rpc, with_pydantic

Quote = rpc("QUOTE", {"symbol": str}, "PRICE", {"symbol": str, "cents": int})

PRICES = {"ACME": 1234, "INITECH": 99}
FLAKY = {"ACME": 2, "INITECH": 100}  # failures before the feed answers for that symbol


def build_router() -> Any:
    router = create_router().plugin(with_pydantic())
    router.attempts = attempts = Counter[str]()  # type: ignore[attr-defined]

    @router.rpc(Quote)
    async def quote(ctx: Any) -> None:
        symbol = ctx.payload.symbol
        attempts[symbol] += 1
        if symbol not in PRICES:
            ctx.error("NOT_FOUND", f"no such symbol: {symbol}")  # terminal: never retried
            return
        if attempts[symbol] <= FLAKY[symbol]:
            # Transient, and we know when the feed comes back: say so.
            ctx.error("UNAVAILABLE", "price feed reconnecting", retry_after_ms=20)
            return
        ctx.reply({"symbol": symbol, "cents": PRICES[symbol]})

    return router


RETRY = RetryPolicy(max_attempts=4, initial_delay_ms=10, max_delay_ms=200)


async def demo(url: str) -> list[str]:
    lines = []
    async with Client(url, retry=RETRY) as client:
        price = await client.request(Quote, payload={"symbol": "ACME"})
        lines.append(f"ACME: {price.cents} cents after 3 attempts")
        for symbol in ("NOPE", "INITECH"):
            try:
                await client.request(Quote, payload={"symbol": symbol})
            except RpcError as exc:
                lines.append(f"{symbol}: {exc.code} ({exc.message})")
    return lines
