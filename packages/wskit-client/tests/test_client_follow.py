"""client.follow(): the client remembers where each followed topic stands and,
after a reconnect, asks the server to replay what it missed; statuses tell
"recovered" from "gap". Against a real wskit-aiohttp server on loopback (its
history in a MemoryPubSub that outlives a server restart, or not), and a raw
server for frames a wskit server never sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from wskit.aiohttp import create_app
from wskit.client import Client, Message, ReconnectOptions, StateError
from wskit.core.pubsub import StreamPosition, TopicStatus
from wskit.pubsub import HistoryPolicy, MemoryPubSub, with_pubsub
from wskit.pydantic import create_router, message, with_pydantic

T = 10.0  # safety net only
FAST = ReconnectOptions(initial_delay_ms=5, max_delay_ms=20)

Tick = message("TICK", n=int)
Follow = message("FOLLOW", topic=str, since=(dict | None, None))


def build_router(adapter: MemoryPubSub, size: int) -> Any:
    router = create_router().plugin(with_pydantic())
    router.plugin(with_pubsub(adapter, history={"feed:*": HistoryPolicy(max_messages=size)}))

    @router.on(Follow)
    async def follow(ctx: Any) -> None:
        await ctx.topics.subscribe(ctx.payload.topic, since=ctx.payload.since)

    return router


class FeedServer:
    """A wskit-aiohttp server whose history lives in ``adapter``; ``restart()``
    brings up a new router on the same port, with the same adapter (history
    kept, as with Redis) or a new one (history lost)."""

    def __init__(self, size: int = 50) -> None:
        self.size = size
        self.adapter = MemoryPubSub()
        self.router: Any = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.router = build_router(self.adapter, self.size)
        runner = web.AppRunner(create_app(self.router, path="/ws"), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def publish(self, *ns: int, router: Any = None) -> None:
        for n in ns:
            result = await (router or self.router).publish("feed:a", Tick, {"n": n})
            assert result.ok

    def publisher(self) -> Any:
        """Another instance on the same history (publishes while this one is down)."""
        return build_router(self.adapter, self.size)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture
async def feed() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Watch:
    """Collects a followed topic's messages and statuses; waits on conditions."""

    def __init__(self, client: Client) -> None:
        self.ticks: list[tuple[int, int]] = []
        self.messages: list[Message[Any]] = []
        self.statuses: list[TopicStatus] = []
        self._changed = asyncio.Event()
        client.on(Tick, self._on_tick)

    def _on_tick(self, msg: Message[Any]) -> None:
        self.messages.append(msg)
        offset = msg.position.offset if msg.position is not None else -1
        self.ticks.append((msg.payload.n, offset))
        self._changed.set()

    def on_status(self, status: TopicStatus) -> None:
        self.statuses.append(status)
        self._changed.set()

    async def until(self, predicate: Any) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), T)

    def kinds(self) -> list[str]:
        return [s.status for s in self.statuses]


def send_follow(client: Client, topic: str = "feed:a") -> Any:
    return lambda since: client.send(Follow, payload={"topic": topic, "since": since})


async def test_resume_after_a_server_restart_gets_exactly_what_was_missed(
    feed: FeedServer,
) -> None:
    async with Client(feed.url, reconnect=FAST) as client:
        watch = Watch(client)
        follow = client.follow("feed:a", send_follow(client), on_status=watch.on_status)
        await watch.until(lambda: watch.kinds() == ["subscribed"])
        epoch = follow.position.epoch if follow.position else ""
        assert follow.position == StreamPosition(epoch, 0)
        await feed.publish(1, 2, 3)
        await watch.until(lambda: len(watch.ticks) == 3)
        msg = watch.messages[0]
        assert (msg.topic, msg.position, msg.meta) == ("feed:a", StreamPosition(epoch, 1), {})

        await feed.stop()
        other = feed.publisher()
        await feed.publish(*range(4, 14), router=other)  # 10 missed, published elsewhere
        await feed.start()
        await watch.until(lambda: len(watch.ticks) == 13)
        assert watch.kinds() == ["subscribed", "recovered"]
        assert watch.statuses[1] == TopicStatus("feed:a", "recovered", StreamPosition(epoch, 3))
        await feed.publish(14)
        await watch.until(lambda: len(watch.ticks) == 14)
        assert watch.ticks == [(n, n) for n in range(1, 15)]
        assert (follow.status, follow.position) == ("recovered", StreamPosition(epoch, 14))


async def test_lost_history_and_trimmed_history_are_gaps(feed: FeedServer) -> None:
    feed.size = 5
    await feed.stop()
    await feed.start()
    async with Client(feed.url, reconnect=FAST) as client:
        watch = Watch(client)
        follow = client.follow("feed:a", send_follow(client), on_status=watch.on_status)
        await watch.until(lambda: watch.kinds() == ["subscribed"])
        await feed.publish(1)
        await watch.until(lambda: len(watch.ticks) == 1)
        await feed.stop()
        await feed.publish(*range(2, 10), router=feed.publisher())  # keeps 5 of 8
        await feed.start()
        await watch.until(lambda: len(watch.statuses) == 2)
        assert (follow.status, follow.reason) == ("gap", "trimmed")
        assert follow.position is not None and follow.position.offset == 9
        old_epoch = follow.position.epoch

        await feed.stop()
        feed.adapter = MemoryPubSub()  # a restart that loses the history
        await feed.start()
        await watch.until(lambda: len(watch.statuses) == 3)
        assert watch.statuses[2].status == "gap" and watch.statuses[2].reason == "epoch"
        assert follow.position is not None and follow.position.epoch != old_epoch
        await feed.publish(10)
        await watch.until(lambda: len(watch.ticks) == 2)
        assert watch.ticks == [(1, 1), (10, 1)]


async def test_a_saved_position_is_resumed_on_the_first_connect(feed: FeedServer) -> None:
    await feed.publish(1, 2, 3)
    page = await feed.adapter.read_history(
        "feed:a", None, limit=1, policy=HistoryPolicy(max_messages=1)
    )
    client = Client(feed.url)
    watch = Watch(client)
    follow = client.follow(
        "feed:a",
        send_follow(client),
        since={"epoch": page.epoch, "offset": 1},
        on_status=watch.on_status,
    )
    assert follow.since == {"epoch": page.epoch, "offset": 1}
    assert follow.status == "pending"
    async with client:
        await watch.until(lambda: len(watch.ticks) == 2)
        assert watch.ticks == [(2, 2), (3, 3)]
        assert follow.status == "recovered"
        with pytest.raises(StateError, match="followed already"):
            client.follow("feed:a", send_follow(client))
        assert client.followed("feed:a") is follow
        follow.close()
        assert client.followed("feed:a") is None


async def test_an_async_subscribe_function_and_a_failing_one(feed: FeedServer) -> None:
    reported: list[Any] = []
    async with Client(feed.url) as client:
        client.on_error(lambda exc, info: reported.append((info.kind, type(exc).__name__)))
        watch = Watch(client)

        async def subscribe(since: Any) -> None:
            await asyncio.sleep(0)
            client.send(Follow, payload={"topic": "feed:a", "since": since})

        client.follow("feed:a", subscribe, on_status=watch.on_status)
        await watch.until(lambda: watch.kinds() == ["subscribed"])

        def broken(since: Any) -> None:
            raise RuntimeError("app bug")

        client.follow("feed:b", broken)
        await asyncio.sleep(0)
        assert reported == [("handler", "RuntimeError")]


async def test_frames_a_wskit_server_never_sends(raw_server: Any) -> None:
    """Duplicates are dropped, an unannounced new epoch is reported as a gap,
    malformed positions and statuses are reported and never stop the client."""
    reported: list[tuple[str, Any]] = []
    async with Client(raw_server.url) as client:
        client.on_error(lambda exc, info: reported.append((info.kind, info.details)))
        watch = Watch(client)
        follow = client.follow("feed:a", lambda since: None, on_status=watch.on_status)

        def tick(n: int, epoch: str, offset: int) -> str:
            pos = {"topic": "feed:a", "epoch": epoch, "offset": offset}
            return json.dumps({"type": "TICK", "meta": {"topicPosition": pos}, "payload": {"n": n}})

        status = {"topic": "feed:a", "status": "subscribed", "epoch": "e1", "offset": 0}
        await raw_server.push(
            json.dumps({"type": "$ws:topic-status", "meta": {}, "payload": status}),
            tick(1, "e1", 1),
            tick(1, "e1", 1),  # a duplicate: dropped
            tick(2, "e2", 1),  # a new epoch nobody announced: a gap
            json.dumps({"type": "$ws:topic-status", "meta": {}, "payload": {"topic": 5}}),
            json.dumps({"type": "TICK", "meta": {"topicPosition": {"x": 1}}, "payload": {"n": 3}}),
            tick(4, "e2", 2),
        )
        await watch.until(lambda: len(watch.ticks) == 4)
        # The TICK with a malformed position is still delivered, without one.
        assert watch.ticks == [(1, 1), (2, 1), (3, -1), (4, 2)]
        assert watch.messages[2].topic is None and watch.messages[2].meta == {}
        assert watch.statuses == [
            TopicStatus("feed:a", "subscribed", StreamPosition("e1", 0)),
            TopicStatus("feed:a", "gap", StreamPosition("e2", 0), "epoch"),
        ]
        assert [kind for kind, _ in reported] == ["validation", "validation"]
        assert reported[0][1][0]["path"] == ["payload"]
        assert reported[1][1][0]["path"] == ["meta", "topicPosition"]
        assert (follow.status, follow.position) == ("gap", StreamPosition("e2", 2))


async def test_statuses_of_topics_not_followed_go_to_on_unhandled(raw_server: Any) -> None:
    unhandled: list[dict[str, Any]] = []
    async with Client(raw_server.url) as client:
        client.on_unhandled(unhandled.append)
        frame = {
            "type": "$ws:topic-status",
            "meta": {},
            "payload": {"topic": "feed:z", "status": "gap", "reason": "trimmed"},
        }
        await raw_server.push(json.dumps(frame))
        await raw_server.push(json.dumps({"type": "MARK", "meta": {}}))
        for _ in range(1000):  # a condition poll with a deadline (5 s)
            if len(unhandled) == 2:
                break
            await asyncio.sleep(0.005)
        assert unhandled == [frame, {"type": "MARK", "meta": {}}]


def test_followed_topics_need_a_name() -> None:
    client = Client("ws://127.0.0.1:9/ws")
    with pytest.raises(ValueError):
        client.follow("", lambda since: None)
