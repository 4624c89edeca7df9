"""The chat's messages, shared by the server (app.py), the bot (bot.py) and, by hand, the
page (static/index.html).

- client -> server: ``JOIN {room}`` (RPC, answered ``JOINED`` or ``RPC_ERROR``),
  ``LEAVE {room}``, ``SAY {room, text}``, ``HISTORY {room}`` (RPC: the room's last lines
  streamed as ``$ws:rpc-progress`` chunks, then a final ``HISTORY_CHUNK`` with ``done: true``).
- server -> client: ``WELCOME {user}``, ``MESSAGE {room, user, text, ts}``,
  ``NOTICE {room, text}``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from wskit.pydantic import message, rpc

ROOM_RULE = "Room names are 1-32 of a-z 0-9 _ - (lower case)"
NAME_RULE = "Names are 1-24 of A-Z a-z 0-9 _ -"


class Line(BaseModel):
    user: str
    text: str
    ts: int


class HistoryChunk(BaseModel):
    room: str
    lines: list[Line]
    done: bool


class JoinedRoom(BaseModel):
    room: str


Join = rpc("JOIN", {"room": str}, "JOINED", JoinedRoom)
Leave = message("LEAVE", room=str)
Say = message("SAY", room=str, text=(str, Field(min_length=1, max_length=500)))
Welcome = message("WELCOME", user=str)
Message = message("MESSAGE", room=str, user=str, text=str, ts=int)
Notice = message("NOTICE", room=str, text=str)
History = rpc("HISTORY", {"room": str}, "HISTORY_CHUNK", HistoryChunk)
