"""Topic history on Redis Streams: the Lua scripts and the wire format.

Per topic with history (``prefix`` is the adapter's ``channel_prefix``):

- ``{prefix}{<topic>}:position`` — a hash: ``epoch`` (a random id, made when
  the hash does not exist) and ``top`` (the newest offset, ``HINCRBY`` per
  publish);
- ``{prefix}{<topic>}:history`` — a stream of ``{"d": <envelope JSON>}``
  entries whose ID is ``<offset>-<unix ms>``: an offset addresses its entry
  directly (``XRANGE <offset+1>-0 +``) and the time in the ID drives the age
  bound. ``MAXLEN`` bounds the size; entries older than ``max_age_ms`` are
  trimmed by every publish and read (a bounded amount at a time), and the
  stream expires after ``max_age_ms`` without a publish.

The braces are a Redis Cluster hash tag: both keys of a topic share a slot.

One script appends and publishes atomically, so offsets and pub/sub order
agree: ``PUBLISH channel "#<epoch>:<offset>:<envelope JSON>"`` (plain topics
publish the envelope JSON alone, which starts with ``{``). If the position
hash is missing (a restart without persistence, an eviction), the script
starts a new epoch and drops the stream: a history without its epoch is never
trusted.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from wskit.core.pubsub import StreamPosition
from wskit.pubsub.adapter import HistoryPage, PublishEnvelope

__all__ = [
    "PUBLISH_HISTORY_LUA",
    "READ_HISTORY_LUA",
    "history_keys",
    "parse_positioned",
    "parse_read",
]

# Trims entries older than `cutoff` (ms) from the head of the stream: the time
# is the ID's sequence part. At most 64 batches of 64 per call; the rest goes
# with the next call.
_TRIM_AGE: Final = """
local function trim_age(key, cutoff)
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if #head == 0 or tonumber(string.match(head[1][1], '%-(%d+)$')) >= cutoff then
    return
  end
  for _ = 1, 64 do
    local batch = redis.call('XRANGE', key, '-', '+', 'COUNT', 64)
    if #batch == 0 then return end
    for i = 1, #batch do
      if tonumber(string.match(batch[i][1], '%-(%d+)$')) >= cutoff then
        redis.call('XTRIM', key, 'MINID', batch[i][1])
        return
      end
    end
    local off = tonumber(string.match(batch[#batch][1], '^(%d+)%-'))
    redis.call('XTRIM', key, 'MINID', string.format('%d-0', off + 1))
  end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function epoch_of(stream, meta, candidate)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
  end
  return epoch
end
"""

#: KEYS: stream, position hash. ARGV: channel, epoch candidate, max_messages
#: (0: none), max_age_ms (0: none), envelope JSON. Returns ``"<epoch>:<offset>"``.
PUBLISH_HISTORY_LUA: Final = (
    _TRIM_AGE
    + """
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[2])
local offset = redis.call('HINCRBY', KEYS[2], 'top', 1)
local now = now_ms()
local id = string.format('%d-%d', offset, now)
local maxlen = tonumber(ARGV[3])
if maxlen > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, id, 'd', ARGV[5])
else
  redis.call('XADD', KEYS[1], id, 'd', ARGV[5])
end
local maxage = tonumber(ARGV[4])
if maxage > 0 then
  trim_age(KEYS[1], now - maxage)
  redis.call('PEXPIRE', KEYS[1], maxage)
end
local position = epoch .. ':' .. offset
redis.call('PUBLISH', ARGV[1], '#' .. position .. ':' .. ARGV[5])
return position
"""
)

#: KEYS: stream, position hash. ARGV: epoch candidate, epoch of the position
#: ("" for none), its offset, limit, max_age_ms (0: none).
#: Returns ``{epoch, top, first, entries}``; entries only when the epoch matches.
READ_HISTORY_LUA: Final = (
    _TRIM_AGE
    + """
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[1])
local top = tonumber(redis.call('HGET', KEYS[2], 'top'))
local maxage = tonumber(ARGV[5])
if maxage > 0 then
  trim_age(KEYS[1], now_ms() - maxage)
end
local first = top + 1
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head > 0 then
  first = tonumber(string.match(head[1][1], '^(%d+)%-'))
end
local entries = {}
local after = tonumber(ARGV[3])
if ARGV[2] == epoch and after < top then
  entries = redis.call('XRANGE', KEYS[1], string.format('%d-0', after + 1), '+',
                       'COUNT', tonumber(ARGV[4]))
end
return {epoch, top, first, entries}
"""
)

PUBLISH_HISTORY_SHA: Final = hashlib.sha1(PUBLISH_HISTORY_LUA.encode()).hexdigest()
READ_HISTORY_SHA: Final = hashlib.sha1(READ_HISTORY_LUA.encode()).hexdigest()
SCRIPTS: Final = (PUBLISH_HISTORY_LUA, READ_HISTORY_LUA)


def history_keys(prefix: str, topic: str) -> tuple[str, str]:
    """``(stream key, position hash key)`` of a topic."""
    base = f"{prefix}{{{topic}}}"
    return f"{base}:history", f"{base}:position"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def parse_positioned(data: bytes | str) -> PublishEnvelope:
    """A ``#<epoch>:<offset>:<envelope JSON>`` message; raises ``ValueError``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    epoch, offset, body = raw[1:].split(b":", 2)
    return PublishEnvelope.from_json(
        body, position=StreamPosition(epoch.decode("ascii"), int(offset))
    )


def parse_read(topic: str, reply: Any) -> HistoryPage:
    """The read script's reply as a :class:`HistoryPage`; raises ``ValueError``."""
    epoch_raw, top, first, entries = reply
    epoch = _text(epoch_raw)
    envelopes: list[PublishEnvelope] = []
    for entry_id, fields in entries:
        offset = int(_text(entry_id).split("-", 1)[0])
        data = fields[1] if len(fields) >= 2 else b""
        envelope = PublishEnvelope.from_json(data, position=StreamPosition(epoch, offset))
        if envelope.topic != topic:
            raise ValueError(f"history entry of {topic!r} names topic {envelope.topic!r}")
        envelopes.append(envelope)
    return HistoryPage(epoch, int(top), int(first), envelopes)
