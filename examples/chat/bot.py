"""A chat participant written with wskit-client: it joins a room of the demo and answers
commands. ``python -m examples.chat.bot [--url ws://127.0.0.1:8000/ws] [--room lobby]``
(or ``hatch run demo:bot``) while the demo runs, then type ``!help`` in the page.

It uses the same schemas module as the server, so what it sends is validated before it
leaves and what it receives is typed (``msg.payload.text`` is a ``str``). If the server
restarts, the client reconnects by itself and the bot joins again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from wskit.client import Client, ClientState

from .schemas import History, Join, Message, Say, Welcome

HELP = "commands: !help, !echo <text>, !count (messages seen since I joined), !history"


class Bot:
    def __init__(self, client: Client, room: str) -> None:
        self.client = client
        self.room = room
        self.name = ""
        self.seen = 0
        self._tasks: set[asyncio.Task[None]] = set()  # work started from callbacks
        client.on(Welcome, self.welcome)
        client.on(Message, self.message)
        client.on_state(self.state)

    def welcome(self, msg: Any) -> None:
        self.name = msg.payload.user

    def state(self, state: ClientState) -> None:
        if state == "open":  # first connect and every reconnect
            self._spawn(self.join())

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        joined = await self.client.request(Join, payload={"room": self.room})
        self.say(f"hello #{joined.room}, {HELP}")

    def say(self, text: str) -> None:
        self.client.send(Say, payload={"room": self.room, "text": text})

    def message(self, msg: Any) -> None:
        line = msg.payload
        if line.room != self.room or line.user == self.name:
            return
        self.seen += 1
        command, _, rest = line.text.partition(" ")
        if command == "!help":
            self.say(HELP)
        elif command == "!echo":
            self.say(f"{line.user} said: {rest}")
        elif command == "!count":
            self.say(f"{self.seen} messages since I joined")
        elif command == "!history":
            self._spawn(self.history())

    async def history(self) -> None:
        call = self.client.call(History, payload={"room": self.room})
        chunks = [chunk async for chunk in call.progress()]
        last = await call
        total = sum(len(c.lines) for c in chunks) + len(last.lines)
        self.say(f"#{self.room} has {total} lines of history ({len(chunks) + 1} chunks)")


async def run(url: str, room: str, name: str, stop: asyncio.Event | None = None) -> None:
    client = Client(f"{url}?name={name}")
    Bot(client, room)  # before connecting: it joins on every "open", the first one included
    async with client:
        await (stop or asyncio.Event()).wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.chat.bot", description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws", help="(default: %(default)s)")
    parser.add_argument("--room", default="lobby", help="(default: %(default)s)")
    parser.add_argument("--name", default="bot", help="(default: %(default)s)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.url, args.room, args.name))


if __name__ == "__main__":
    main()
