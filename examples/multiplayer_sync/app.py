"""Multiplayer sync with conflict resolution: every player edits one shared board. Each
connection carries its own data (name and colour, set when it opens); every change names
the board version it was based on, and the server refuses a change based on an old version
(``ABORTED``, with the current board in ``details``) so the client can rebase and retry.
Taking a cell someone already holds is refused for good (``ALREADY_EXISTS``)."""

from __future__ import annotations

import asyncio
from itertools import cycle
from typing import Any

from wskit.client import Client
from wskit.core import RpcError
from wskit.pubsub import with_pubsub
from wskit.pydantic import create_router, message, rpc, with_pydantic

COLOURS = ("red", "blue", "green", "orange")

Join = rpc("JOIN", None, "JOINED", {"colour": str, "version": int, "board": dict[str, str]})
Claim = rpc("CLAIM", {"cell": str, "based_on": int}, "CLAIMED", {"version": int})
Board = message("BOARD", version=int, board=dict[str, str], by=str)


def build_router() -> Any:
    router = create_router().plugin(with_pydantic()).plugin(with_pubsub())
    board: dict[str, str] = {}  # cell -> colour
    state = {"version": 0}
    colours = cycle(COLOURS)

    @router.on_open
    async def arrive(ctx: Any) -> None:
        ctx.assign_data(colour=next(colours))  # per-connection data, for every handler

    @router.rpc(Join)
    async def join(ctx: Any) -> None:
        await ctx.topics.subscribe("board")
        ctx.reply({"colour": ctx.data["colour"], "version": state["version"], "board": board})

    @router.rpc(Claim)
    async def claim(ctx: Any) -> None:
        cell, based_on = ctx.payload.cell, ctx.payload.based_on
        if cell in board:
            raise RpcError("ALREADY_EXISTS", f"{cell} belongs to {board[cell]}")
        if based_on != state["version"]:
            # Someone changed the board since this client looked: let it rebase.
            raise RpcError(
                "ABORTED",
                f"the board is at version {state['version']}, not {based_on}",
                {"version": state["version"], "board": board},
            )
        board[cell] = ctx.data["colour"]
        state["version"] += 1
        ctx.reply({"version": state["version"]})
        update = {"version": state["version"], "board": board, "by": ctx.data["name"]}
        await ctx.publish("board", Board, update)

    return router


def authenticate(request: Any) -> dict[str, str]:
    return {"name": request.query.get("name", "anon")}


class Player:
    """A client's view of the board, kept current by ``BOARD`` updates."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.version = 0
        self.board: dict[str, str] = {}
        self.colour = ""
        self.rebases = 0
        client.on(Board, lambda msg: self._update(msg.payload.version, msg.payload.board))

    def _update(self, version: int, board: dict[str, str]) -> None:
        if version > self.version:
            self.version, self.board = version, dict(board)

    async def join(self) -> None:
        joined = await self.client.request(Join)
        self.colour = joined.colour
        self._update(joined.version, joined.board)

    async def claim(self, cell: str) -> bool:
        """Claim ``cell``; rebase and retry on a conflict; False if it is taken."""
        for _ in range(10):
            try:
                reply = await self.client.request(
                    Claim, payload={"cell": cell, "based_on": self.version}
                )
            except RpcError as exc:
                if exc.code == "ALREADY_EXISTS":
                    return False
                if exc.code != "ABORTED":
                    raise
                self.rebases += 1
                self._update(exc.details["version"], exc.details["board"])
                continue
            self.version = max(self.version, reply.version)
            return True
        raise RuntimeError(f"could not claim {cell}: the board keeps changing")


async def demo(url: str) -> list[str]:
    async with Client(url + "?name=alice") as a, Client(url + "?name=bob") as b:
        alice, bob = Player(a), Player(b)
        await alice.join()
        await bob.join()
        # Both claim at once, both based on version 0: one of them has to rebase.
        got = await asyncio.gather(alice.claim("a1"), bob.claim("b2"))
        taken = await bob.claim("a1")
        board = dict(sorted(alice.board.items()))
        return [
            f"alice is {alice.colour}, bob is {bob.colour}",
            f"both claims succeeded: {all(got)}; rebases: {alice.rebases + bob.rebases}",
            f"bob may take a1 too: {taken}",
            f"board {board}",
        ]
