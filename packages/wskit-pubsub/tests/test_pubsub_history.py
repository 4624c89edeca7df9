"""Topic history on the in-memory adapter: offsets, replay on subscribe with
``since``, the explicit gap answer, continuity, and the plugin's bookkeeping."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Collection
from typing import Any

import pytest

import wskit.pubsub.adapter as adapter_module
from wskit.core.pubsub import (
    TOPIC_POSITION,
    TOPIC_STATUS,
    PublishResult,
    StreamPosition,
    TopicStatus,
)
from wskit.core.testing import FakeConnection, Harness
from wskit.pubsub import (
    HistoryPage,
    HistoryPolicy,
    MemoryPubSub,
    PublishEnvelope,
    get_pubsub,
    with_pubsub,
)
from wskit.pubsub.history import HistoryRules
from wskit.pubsub.testing import RecordingAdapter
from wskit.pydantic import create_router, message, with_pydantic

Tick = message("TICK", n=int)
Follow = message("FOLLOW", topic=str, since=dict | None)

HISTORY = {"feed:*": HistoryPolicy(max_messages=100)}


def make_router(adapter: Any = None, history: Any = HISTORY, **options: Any) -> Any:
    router = create_router().plugin(with_pydantic())
    router.plugin(with_pubsub(adapter or MemoryPubSub(), history=history, **options))
    router.statuses = []

    @router.on(Follow)
    async def follow(ctx: Any) -> None:
        status = await ctx.topics.subscribe(ctx.payload.topic, since=ctx.payload.since)
        router.statuses.append(status)

    return router


def statuses(conn: FakeConnection[Any]) -> list[dict[str, Any]]:
    return conn.payloads(TOPIC_STATUS)


def ticks(conn: FakeConnection[Any]) -> list[tuple[int, int]]:
    """``(n, offset)`` of every TICK the connection got, in order."""
    return [(f["payload"]["n"], f["meta"][TOPIC_POSITION]["offset"]) for f in conn.messages(Tick)]


async def publish(router: Any, topic: str, *ns: int) -> list[PublishResult]:
    return [await router.publish(topic, Tick, {"n": n}) for n in ns]


async def follow(h: Harness[Any], conn: FakeConnection[Any], topic: str, since: Any = None) -> None:
    conn.send(Follow, {"topic": topic, "since": since})
    await h.flush()


# ---------------------------------------------------------------- the wire


async def test_history_messages_carry_their_position_and_the_publisher_gets_it() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:1")
        [status] = statuses(a)
        epoch = status["epoch"]
        assert status == {"topic": "feed:1", "status": "subscribed", "epoch": epoch, "offset": 0}
        results = await publish(router, "feed:1", 10, 11)
        await h.flush()
        assert [r.position for r in results] == [
            StreamPosition(epoch, 1),
            StreamPosition(epoch, 2),
        ]
        assert a.raw_frames[1:] == [
            '{"type":"TICK","meta":{"topicPosition":{"topic":"feed:1","epoch":"'
            + epoch
            + f'","offset":{n - 9}}}}},"payload":{{"n":{n}}}}}'
            for n in (10, 11)
        ]
        # Topics without history are untouched: no position, no status frame.
        b = await h.connect()
        await follow(h, b, "plain:1")
        [plain] = await publish(router, "plain:1", 1)
        await h.flush()
        assert plain.position is None
        assert b.frames == [{"type": "TICK", "meta": {}, "payload": {"n": 1}}]
        assert router.statuses[-1] == TopicStatus("plain:1", "subscribed")


async def test_a_history_frame_is_serialized_once_per_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encodes: list[str] = []
    real = adapter_module.encode_envelope

    def counting(*args: Any, **kwargs: Any) -> str:
        encodes.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(adapter_module, "encode_envelope", counting)
    router = make_router()
    async with Harness(router) as h:
        conns = [await h.connect() for _ in range(20)]
        for conn in conns:
            await follow(h, conn, "feed:fan")
        await publish(router, "feed:fan", 7)
        await h.flush()
        assert encodes == ["TICK"]
        first = conns[0].raw_frames[-1]
        assert all(conn.raw_frames[-1] is first for conn in conns)


async def test_resume_replays_exactly_what_was_missed_then_continues_live() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:r")
        await publish(router, "feed:r", 1, 2, 3)
        await h.flush()
        assert ticks(a) == [(1, 1), (2, 2), (3, 3)]
        epoch = statuses(a)[0]["epoch"]
        await a.close()
        await publish(router, "feed:r", 4, 5, 6, 7)  # missed
        b = await h.connect()
        await follow(h, b, "feed:r", {"epoch": epoch, "offset": 3})
        await publish(router, "feed:r", 8)
        await h.flush()
        assert statuses(b) == [
            {"topic": "feed:r", "status": "recovered", "epoch": epoch, "offset": 3}
        ]
        assert b.frames[0]["type"] == TOPIC_STATUS  # the status comes before the replay
        assert ticks(b) == [(4, 4), (5, 5), (6, 6), (7, 7), (8, 8)]
        assert router.statuses[-1] == TopicStatus(
            "feed:r", "recovered", StreamPosition(epoch, 7), None, 4
        )


async def test_resume_at_the_newest_offset_replays_nothing() -> None:
    router = make_router()
    async with Harness(router) as h:
        await publish(router, "feed:top", 1, 2)
        a = await h.connect()
        await follow(h, a, "feed:top")
        epoch = statuses(a)[0]["epoch"]
        assert statuses(a)[0]["offset"] == 2
        b = await h.connect()
        await follow(h, b, "feed:top", {"epoch": epoch, "offset": 2})
        assert statuses(b) == [
            {"topic": "feed:top", "status": "recovered", "epoch": epoch, "offset": 2}
        ]
        assert ticks(b) == []
        assert router.statuses[-1].replayed == 0


async def test_trimmed_history_answers_gap_and_replays_nothing() -> None:
    router = make_router(history={"feed:*": HistoryPolicy(max_messages=3)})
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:t")
        epoch = statuses(a)[0]["epoch"]
        await a.close()
        await publish(router, "feed:t", *range(1, 7))  # keeps 4, 5, 6
        b = await h.connect()
        await follow(h, b, "feed:t", {"epoch": epoch, "offset": 2})
        assert statuses(b) == [
            {"topic": "feed:t", "status": "gap", "reason": "trimmed", "epoch": epoch, "offset": 6}
        ]
        assert ticks(b) == []
        status = router.statuses[-1]
        assert (status.gap, status.recovered, status.reason) == (True, False, "trimmed")
        # Offset 3 is the oldest position still recoverable (4, 5, 6 are kept).
        c = await h.connect()
        await follow(h, c, "feed:t", {"epoch": epoch, "offset": 3})
        assert statuses(c)[0]["status"] == "recovered"
        assert ticks(c) == [(4, 4), (5, 5), (6, 6)]
        await publish(router, "feed:t", 7)
        await h.flush()
        assert ticks(b) == [(7, 7)] and ticks(c)[-1] == (7, 7)


async def test_another_epoch_or_a_position_ahead_answers_gap() -> None:
    adapter = MemoryPubSub()
    router = make_router(adapter)
    async with Harness(router) as h:
        await publish(router, "feed:e", 1, 2)
        a = await h.connect()
        await follow(h, a, "feed:e", {"epoch": "gone", "offset": 1})
        b = await h.connect()
        await follow(h, b, "feed:e")
        epoch = statuses(b)[0]["epoch"]
        c = await h.connect()
        await follow(h, c, "feed:e", {"epoch": epoch, "offset": 9})
        assert statuses(a) == [
            {"topic": "feed:e", "status": "gap", "reason": "epoch", "epoch": epoch, "offset": 2}
        ]
        assert statuses(c)[0]["reason"] == "ahead"
        assert ticks(a) == ticks(c) == []


async def test_age_bound_drops_old_messages() -> None:
    now = [1_000_000.0]
    router = make_router(
        MemoryPubSub(clock=lambda: now[0]),
        history={"feed:*": HistoryPolicy(max_messages=None, max_age_ms=1000)},
    )
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:age")
        epoch = statuses(a)[0]["epoch"]
        await publish(router, "feed:age", 1)
        now[0] += 600
        await publish(router, "feed:age", 2)
        now[0] += 600  # 1 is 1200 ms old: gone; 2 is 600 ms old: kept
        b = await h.connect()
        await follow(h, b, "feed:age", {"epoch": epoch, "offset": 0})
        assert statuses(b)[0]["reason"] == "trimmed"
        c = await h.connect()
        await follow(h, c, "feed:age", {"epoch": epoch, "offset": 1})
        assert ticks(c) == [(2, 2)]


async def test_since_is_parsed_strictly_and_ignored_without_history() -> None:
    router = make_router()
    async with Harness(router, allow_errors=False) as h:
        a = await h.connect()
        for bad in ({"epoch": "", "offset": 1}, {"epoch": "e", "offset": -1}, {"epoch": "e"}):
            await follow(h, a, "feed:bad", bad)
        assert [e["details"]["pubsubCode"] for e in a.errors] == ["INVALID_POSITION"] * 3
        assert [e["code"] for e in a.errors] == ["INVALID_ARGUMENT"] * 3
        assert a.subscriptions == []
        await follow(h, a, "plain:x", {"epoch": "", "offset": "nonsense"})
        assert a.subscriptions == ["plain:x"]
        assert statuses(a) == []


async def test_position_parsing_and_status_payloads() -> None:
    class Model:
        epoch = "e1"
        offset = 4

    assert StreamPosition.parse(Model()) == StreamPosition("e1", 4)
    assert StreamPosition.parse({"epoch": "e1", "offset": 0}).to_dict() == {
        "epoch": "e1",
        "offset": 0,
    }
    for bad in (None, 3, {"epoch": "x" * 65, "offset": 1}, {"epoch": "e", "offset": True}):
        with pytest.raises(ValueError):
            StreamPosition.parse(bad)
    status = TopicStatus("t", "gap", StreamPosition("e", 3), "trimmed")
    assert TopicStatus.from_payload(status.to_payload()) == status
    assert TopicStatus.from_payload({"topic": "t", "status": "subscribed"}).position is None
    for bad_payload in ([], {"topic": "", "status": "gap"}, {"topic": "t", "status": "nope"}):
        with pytest.raises(ValueError):
            TopicStatus.from_payload(bad_payload)


async def test_subscribing_twice_is_unchanged_and_sends_nothing() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:twice")
        await follow(h, a, "feed:twice", {"epoch": "whatever", "offset": 1})
        assert len(statuses(a)) == 1
        assert router.statuses[-1] == TopicStatus("feed:twice", "unchanged")


async def test_subscribe_many_and_set_send_a_status_per_history_topic() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        topics = get_pubsub(router).topics(a.connection)
        await topics.subscribe_many(["feed:m1", "plain:m", "feed:m2"])
        await topics.set(["feed:m3"])
        await h.flush()
        assert [(s["topic"], s["status"]) for s in statuses(a)] == [
            ("feed:m1", "subscribed"),
            ("feed:m2", "subscribed"),
            ("feed:m3", "subscribed"),
        ]


# --------------------------------------------------------- replay vs live


class GatedHistory(MemoryPubSub):
    """A memory adapter whose history reads wait for ``gate`` (to publish live
    messages while a replay is being read)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.reads: list[StreamPosition | None] = []
        self.fail_reads = 0

    async def read_history(self, topic: str, since: Any, *, limit: int, policy: Any) -> HistoryPage:
        self.reads.append(since)
        await self.gate.wait()
        if self.fail_reads:
            self.fail_reads -= 1
            raise ConnectionError("history store down")
        return await super().read_history(topic, since, limit=limit, policy=policy)


async def test_live_messages_during_the_replay_come_after_it_once_in_order() -> None:
    adapter = GatedHistory()
    router = make_router(adapter)
    async with Harness(router) as h:
        await publish(router, "feed:race", 1, 2, 3)
        a = await h.connect()
        await follow(h, a, "feed:race")
        epoch = statuses(a)[0]["epoch"]
        adapter.gate.clear()
        b = await h.connect()
        b.send(Follow, {"topic": "feed:race", "since": {"epoch": epoch, "offset": 1}})
        await h.flush()  # b's first read waits at the gate
        await publish(router, "feed:race", 4, 5)  # live while b catches up
        await h.flush()
        assert ticks(a) == [(4, 4), (5, 5)]
        assert ticks(b) == []
        adapter.gate.set()
        await h.flush()
        # The first read already covers 4 and 5; the held live copies are skipped.
        assert ticks(b) == [(2, 2), (3, 3), (4, 4), (5, 5)]
        await publish(router, "feed:race", 6)
        await h.flush()
        assert ticks(b)[-1] == (6, 6) and len(ticks(b)) == 5
        assert statuses(b) == [
            {"topic": "feed:race", "status": "recovered", "epoch": epoch, "offset": 1}
        ]


async def test_a_live_message_newer_than_the_read_is_read_again() -> None:
    """The read answered before a live message it does not contain arrived:
    the replay reads once more rather than losing it."""

    class LateRead(MemoryPubSub):
        def __init__(self) -> None:
            super().__init__()
            self.router: Any = None
            self.reads = 0

        async def read_history(self, topic: str, since: Any, *, limit: int, policy: Any) -> Any:
            page = await super().read_history(topic, since, limit=limit, policy=policy)
            self.reads += 1
            if self.reads == 2:  # b's first read: publish right after it was taken
                await self.router.publish(topic, Tick, {"n": 99})
            return page

    adapter = LateRead()
    router = make_router(adapter)
    adapter.router = router
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:late")
        epoch = statuses(a)[0]["epoch"]
        b = await h.connect()
        await follow(h, b, "feed:late", {"epoch": epoch, "offset": 0})
        assert ticks(b) == [(99, 1)]
        assert adapter.reads == 3
        assert ticks(a) == [(99, 1)]


async def test_a_failed_first_read_rolls_the_subscription_back() -> None:
    adapter = GatedHistory()
    recording = RecordingAdapter(adapter)
    recording.read_history = adapter.read_history  # type: ignore[attr-defined]
    router = make_router(recording)
    async with Harness(router) as h:
        a = await h.connect()
        adapter.fail_reads = 1
        await follow(h, a, "feed:down")
        [error] = a.errors
        assert error["code"] == "UNAVAILABLE"
        assert error["details"]["pubsubCode"] == "ADAPTER_ERROR"
        assert error["details"]["op"] == "history"
        assert error["details"]["cause"] == "ConnectionError"
        assert a.subscriptions == []
        assert recording.ops() == [("subscribe", "feed:down"), ("unsubscribe", "feed:down")]
        assert get_pubsub(router)._streams == {}
        await follow(h, a, "feed:down")  # works once the store is back
        assert a.subscriptions == ["feed:down"]


async def test_a_failed_read_during_the_replay_answers_gap_unavailable() -> None:
    class FlakyRead(MemoryPubSub):
        def __init__(self) -> None:
            super().__init__()
            self.router: Any = None
            self.reads = 0

        async def read_history(self, topic: str, since: Any, *, limit: int, policy: Any) -> Any:
            self.reads += 1
            if self.reads == 3:
                raise ConnectionError("history store down")
            page = await super().read_history(topic, since, limit=limit, policy=policy)
            if self.reads == 2:  # b's first read: a live message it does not hold
                await self.router.publish(topic, Tick, {"n": 2})
            return page

    adapter = FlakyRead()
    router = make_router(adapter)
    adapter.router = router
    async with Harness(router) as h:
        await publish(router, "feed:mid", 1)
        a = await h.connect()
        await follow(h, a, "feed:mid")
        epoch = statuses(a)[0]["epoch"]
        b = await h.connect()
        await follow(h, b, "feed:mid", {"epoch": epoch, "offset": 0})
        assert statuses(b) == [
            {"topic": "feed:mid", "status": "recovered", "epoch": epoch, "offset": 0},
            {
                "topic": "feed:mid",
                "status": "gap",
                "reason": "unavailable",
                "epoch": epoch,
                "offset": 1,
            },
        ]
        assert router.statuses[-1] == TopicStatus(
            "feed:mid", "gap", StreamPosition(epoch, 1), "unavailable", 1
        )
        await publish(router, "feed:mid", 3)
        await h.flush()
        assert ticks(b) == [(1, 1), (3, 3)]  # 2 is the gap it was told about
        assert ticks(a) == [(2, 2), (3, 3)]


# ------------------------------------------------------------- continuity


async def test_a_new_epoch_is_announced_to_subscribers_before_its_first_message() -> None:
    adapter = MemoryPubSub()
    router = make_router(adapter)
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:ep")
        old = statuses(a)[0]["epoch"]
        await publish(router, "feed:ep", 1)
        adapter.forget_history("feed:ep")  # as if the store restarted empty
        [result] = await publish(router, "feed:ep", 2)
        await h.flush()
        assert result.position is not None and result.position.epoch != old
        new = result.position.epoch
        types = [f["type"] for f in a.frames]
        assert types == [TOPIC_STATUS, "TICK", TOPIC_STATUS, "TICK"]
        assert statuses(a)[1] == {
            "topic": "feed:ep",
            "status": "gap",
            "reason": "epoch",
            "epoch": new,
            "offset": 0,
        }
        assert ticks(a) == [(1, 1), (2, 1)]


async def test_duplicates_are_dropped_and_skipped_offsets_announced() -> None:
    router = make_router()
    pubsub = get_pubsub(router)
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:dup")
        epoch = statuses(a)[0]["epoch"]

        def env(offset: int) -> PublishEnvelope:
            return PublishEnvelope("feed:dup", "TICK", {}, {"n": offset}).at(
                StreamPosition(epoch, offset)
            )

        assert [pubsub.deliver(env(o)) for o in (1, 2, 2, 1, 5)] == [1, 1, 0, 0, 1]
        await h.flush()
        assert ticks(a) == [(1, 1), (2, 2), (5, 5)]
        assert statuses(a)[1] == {
            "topic": "feed:dup",
            "status": "gap",
            "reason": "trimmed",
            "epoch": epoch,
            "offset": 4,
        }


async def test_replay_waits_for_the_outbound_buffer_instead_of_overflowing() -> None:
    router = make_router(history={"feed:*": HistoryPolicy(max_messages=5000)})
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "feed:big")
        epoch = statuses(a)[0]["epoch"]
        await a.close()
        await publish(router, "feed:big", *range(1, 2001))  # ~160 KB of frames
        b = await h.connect(max_buffered_bytes=16 * 1024)
        await follow(h, b, "feed:big", {"epoch": epoch, "offset": 0})
        assert b.server_close is None
        assert [offset for _, offset in ticks(b)] == list(range(1, 2001))
        assert router.statuses[-1].replayed == 2000


Note = message("NOTE", text=str)


async def reader(h: Harness[Any], **options: Any) -> FakeConnection[Any]:
    """A connection whose client reads only when the test takes frames with
    :func:`read` (no pump): its outbound FIFO drains at the test's pace."""
    fake = FakeConnection(h, h.router.connect(**options))
    h.connections.append(fake)
    assert await fake.connection.open()
    await h.flush()
    return fake


async def read(h: Harness[Any], fake: FakeConnection[Any]) -> dict[str, Any]:
    """The client reads the next frame; the router then runs until it waits."""
    raw = fake.connection.pop_outbound()
    assert isinstance(raw, str)
    await h.flush()
    frame: dict[str, Any] = json.loads(raw)
    return frame


async def test_a_replay_to_a_slow_reader_goes_on_as_its_buffer_drains() -> None:
    router = make_router(history={"feed:*": HistoryPolicy(max_messages=5000)})
    async with Harness(router) as h:
        [first, *_] = await publish(router, "feed:slow", *range(1, 301))  # ~80 bytes each
        assert first.position is not None
        b = await reader(h, max_buffered_bytes=2048)
        since = {"epoch": first.position.epoch, "offset": 0}
        b.send(Follow, {"topic": "feed:slow", "since": since})
        await h.flush()
        assert router.statuses == []  # the replay waits for the client
        assert 0 < len(b.connection._out) < 20
        got: list[dict[str, Any]] = []
        queued = []
        while len(b.connection._out):
            assert b.connection.buffered_bytes <= 1024  # half the bound, as the replay keeps it
            queued.append(len(b.connection._out))
            got.append(await read(h, b))
            assert len(got) < 1000
        assert got[0]["type"] == TOPIC_STATUS
        assert [f["payload"]["n"] for f in got[1:]] == list(range(1, 301))
        assert router.statuses[-1].replayed == 300
        assert b.server_close is None
        # each frame read made room for the next: the FIFO stayed (almost) full
        assert min(queued[:-20]) >= max(queued) - 1


async def test_a_replay_to_a_client_that_stops_reading_queues_anyway_after_the_stall() -> None:
    adapter = MemoryPubSub()
    router = make_router(adapter)
    async with Harness(router) as h:
        [first, *_] = await publish(router, "feed:stall", *range(1, 6))
        big = "x" * 500
        for _ in range(2):
            await router.publish("feed:stall", Note, {"text": big})
        assert first.position is not None
        b = await reader(h, max_buffered_bytes=2048)
        out = b.connection._out
        since = {"epoch": first.position.epoch, "offset": 0}
        b.send(Follow, {"topic": "feed:stall", "since": since})
        await h.flush()
        # The status and the five ticks are queued; a note does not fit in half the bound.
        assert len(out) == 6
        before = b.connection.buffered_bytes
        page = await adapter.read_history(
            "feed:stall", first.position, limit=10, policy=HISTORY["feed:*"]
        )
        note_size = len(page.entries[-1].frame)
        target = 1024 - note_size
        assert before > target
        await h.advance(5_000)
        status = await read(h, b)  # progress, but not yet room for a note
        assert status["type"] == TOPIC_STATUS
        assert target < b.connection.buffered_bytes < before
        await h.advance(5_000)  # a stall period ends: the client did read, so it waits on
        assert len(out) == 5
        await h.advance(9_999)
        assert len(out) == 5
        await h.advance(1)  # ten seconds without a frame read: the note is queued anyway
        assert len(out) == 6
        assert b.connection.buffered_bytes > 1024
        await h.advance(10_000)  # and the next one after another stall period
        assert len(out) == 7
        assert router.statuses[-1].replayed == 7
        assert b.server_close is None  # within the bound: the overflow policy is not hit
        frames = [await read(h, b) for _ in range(7)]
        assert [f["type"] for f in frames] == ["TICK"] * 5 + ["NOTE"] * 2


async def test_closing_during_the_replay_stops_it_and_forgets_the_topic() -> None:
    adapter = GatedHistory()
    router = make_router(adapter)
    pubsub = get_pubsub(router)
    async with Harness(router) as h:
        await publish(router, "feed:bye", 1, 2)
        adapter.gate.clear()
        a = await h.connect()
        a.send(Follow, {"topic": "feed:bye", "since": None})
        await h.flush()
        assert set(pubsub._streams) == {"feed:bye"}
        closing = asyncio.ensure_future(a.close())  # waits for the read in progress
        await h.flush()
        adapter.gate.set()
        await closing
        await h.flush()
        assert statuses(a) == []  # closed before anything was queued
        assert pubsub._streams == {}
        b = await h.connect()
        await follow(h, b, "feed:bye")
        topics = pubsub.topics(b.connection)
        await topics.unsubscribe("feed:bye")
        assert pubsub._streams == {}


# -------------------------------------------------------------- the rules


def test_history_rules_match_globs_regexes_and_functions() -> None:
    small = HistoryPolicy(max_messages=10)
    big = HistoryPolicy(max_messages=10_000, max_age_ms=60_000)
    rules = HistoryRules({"feed:*": small, re.compile(r"room:\d+"): big})
    assert rules.policy("feed:a/b") is small
    assert rules.policy("room:12") is big
    assert rules.policy("room:12x") is None
    assert rules.policy("FEED:a") is None  # topics are matched after normalization
    assert HistoryRules(lambda t: big if t == "x" else None).policy("x") is big
    with pytest.raises(TypeError):
        HistoryRules({"a": 5})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        HistoryRules({3: small})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        HistoryRules(lambda t: 5).policy("x")  # type: ignore[arg-type,return-value]
    for bad in ({"max_messages": None}, {"max_messages": 0}, {"max_age_ms": -1}):
        with pytest.raises(ValueError):
            HistoryPolicy(**bad)  # type: ignore[arg-type]


def test_history_needs_an_adapter_that_keeps_it() -> None:
    class NoHistory:
        name = "bare"

        async def publish(self, envelope: PublishEnvelope) -> PublishResult:
            return PublishResult.success("exact", 0)

        async def subscribe(self, client_id: str, topic: str) -> None: ...

        async def unsubscribe(self, client_id: str, topic: str) -> None: ...

        def subscribers(self, topic: str) -> Collection[str]:
            return ()

    with pytest.raises(TypeError, match="the bare adapter keeps no history"):
        create_router().plugin(with_pubsub(NoHistory(), history=HISTORY))


def test_envelopes_are_immutable_and_at_is_memoized() -> None:
    env = PublishEnvelope("t", "A", {"k": 1}, {"n": 1})
    with pytest.raises(AttributeError):
        env.topic = "u"  # type: ignore[misc]
    pos = StreamPosition("e", 1)
    assert env.at(pos) is env.at(pos)
    assert env.at(pos) != env and env.at(pos).position == pos
    assert json.loads(env.at(pos).frame)["meta"] == {
        "k": 1,
        TOPIC_POSITION: {"topic": "t", "epoch": "e", "offset": 1},
    }
    assert PublishEnvelope.from_json(env.to_json(), position=pos) == env.at(pos)
    assert "position=StreamPosition" in repr(env.at(pos))


async def test_a_live_message_of_another_epoch_does_not_keep_the_replay_reading() -> None:
    """A message noted during the replay whose epoch the history does not have
    (an older one) is read for once, then forgotten: the replay ends."""
    adapter = GatedHistory()
    router = make_router(adapter)
    pubsub = get_pubsub(router)
    async with Harness(router, allow_errors=False) as h:
        await publish(router, "feed:stale", 1)
        a = await h.connect()
        await follow(h, a, "feed:stale")
        epoch = statuses(a)[0]["epoch"]
        adapter.gate.clear()
        b = await h.connect()
        b.send(Follow, {"topic": "feed:stale", "since": {"epoch": epoch, "offset": 0}})
        await h.flush()
        stale = PublishEnvelope("feed:stale", "TICK", {}, {"n": 0}).at(StreamPosition("old", 7))
        pubsub.deliver(stale)
        adapter.gate.set()
        await h.flush()
        assert len(adapter.reads) == 3  # a's, b's first, one more for the stale epoch
        assert ticks(b) == [(1, 1)]
        assert statuses(b)[0]["status"] == "recovered"


async def test_a_publisher_cannot_set_a_position_itself() -> None:
    router = make_router()
    async with Harness(router) as h:
        a = await h.connect()
        await follow(h, a, "plain:spoof")
        fake = {"topic": "plain:spoof", "epoch": "x", "offset": 99}
        await router.publish("plain:spoof", Tick, {"n": 1}, meta={TOPIC_POSITION: fake, "k": 1})
        await h.flush()
        assert a.frames == [{"type": "TICK", "meta": {"k": 1}, "payload": {"n": 1}}]
