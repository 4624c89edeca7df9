"""wskit-pubsub: topics, publish policy and fast fan-out for wskit routers.

::

    from wskit.pubsub import with_pubsub
    from wskit.pydantic import create_router, message, with_pydantic

    Chat = message("CHAT", text=str)
    Join = message("JOIN", room=str)

    router = create_router().plugin(with_pydantic()).plugin(
        with_pubsub(max_topics_per_connection=50)          # in-memory adapter by default
    )

    @router.on(Join)
    async def join(ctx):
        await ctx.topics.subscribe(f"room:{ctx.payload.room}")    # raises PubSubError

    @router.on(Chat)
    async def chat(ctx):
        for topic in ctx.topics:
            result = await ctx.publish(topic, Chat, {"text": ctx.payload.text},
                                       exclude_self=True)       # never raises
            if not result.ok: ...

See ``docs/pubsub.md`` for the rules, the policy hooks and the adapter protocol.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from wskit.core.pubsub import (
    PUBLISH_ERROR_RETRYABLE,
    TOPIC_POSITION,
    TOPIC_STATUS,
    PublishRecord,
    PublishResult,
    StreamPosition,
    TopicStatus,
)
from wskit.pubsub._provider import (
    AuthorizeHook,
    ConnectionTopics,
    NormalizeHook,
    PubSub,
    TopicHook,
    TopicsView,
    get_pubsub,
)
from wskit.pubsub.adapter import (
    EXCLUDE_CLIENT_ID,
    DeliverFn,
    DistributedPubSubAdapter,
    HistoryPage,
    HistoryPubSubAdapter,
    PublishEnvelope,
    PubSubAdapter,
)
from wskit.pubsub.errors import WIRE_CODES, BackendUnavailable, PubSubError, PubSubErrorCode
from wskit.pubsub.history import DEFAULT_HISTORY_SIZE, HistoryPolicy, HistorySpec
from wskit.pubsub.memory import MemoryPubSub
from wskit.pubsub.rules import DEFAULT_TOPIC_MAX_LENGTH, DEFAULT_TOPIC_PATTERN, TopicRules

if TYPE_CHECKING:
    from wskit.core.router import Router

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_TOPIC_MAX_LENGTH",
    "DEFAULT_TOPIC_PATTERN",
    "EXCLUDE_CLIENT_ID",
    "PUBLISH_ERROR_RETRYABLE",
    "TOPIC_POSITION",
    "TOPIC_STATUS",
    "WIRE_CODES",
    "AuthorizeHook",
    "BackendUnavailable",
    "ConnectionTopics",
    "DeliverFn",
    "DistributedPubSubAdapter",
    "HistoryPage",
    "HistoryPolicy",
    "HistoryPubSubAdapter",
    "HistorySpec",
    "MemoryPubSub",
    "NormalizeHook",
    "PubSub",
    "PubSubAdapter",
    "PubSubError",
    "PubSubErrorCode",
    "PublishEnvelope",
    "PublishRecord",
    "PublishResult",
    "StreamPosition",
    "TopicHook",
    "TopicRules",
    "TopicStatus",
    "TopicsView",
    "get_pubsub",
    "memory_pubsub",
    "with_pubsub",
]

PLUGIN_KEY: Final = "wskit.pubsub"


def memory_pubsub() -> MemoryPubSub:
    """A new in-memory adapter (what ``with_pubsub()`` uses by default)."""
    return MemoryPubSub()


class _WithPubSub:
    plugin_key = PLUGIN_KEY

    def __init__(self, adapter: PubSubAdapter | None, options: dict[str, Any]) -> None:
        self.adapter = adapter
        self.options = options

    def __call__(self, router: Router[Any]) -> Router[Any]:
        router.set_pubsub(PubSub(router, self.adapter, **self.options))
        return router


def with_pubsub(
    adapter: PubSubAdapter | None = None,
    *,
    topic_pattern: re.Pattern[str] | str = DEFAULT_TOPIC_PATTERN,
    max_topic_length: int = DEFAULT_TOPIC_MAX_LENGTH,
    max_topics_per_connection: int | None = None,
    normalize: NormalizeHook | None = None,
    authorize_subscribe: AuthorizeHook | None = None,
    authorize_publish: AuthorizeHook | None = None,
    on_subscribe: TopicHook | None = None,
    on_unsubscribe: TopicHook | None = None,
    history: HistorySpec | None = None,
) -> _WithPubSub:
    """The pub/sub plugin: ``create_router().plugin(with_pubsub(...))``.

    - ``adapter``: where messages go (default: a new :class:`MemoryPubSub`).
    - ``topic_pattern`` / ``max_topic_length``: topic rules (default
      ``^[a-z0-9:_./-]{1,128}$``, case-insensitive; a string or compiled regex
      that must match the whole topic).
    - ``max_topics_per_connection``: subscriptions per connection (default unlimited).
    - ``normalize(topic, connection)``: canonical topic (e.g. lower-case),
      applied before everything else, also to ``has()`` and ``publish``.
    - ``authorize_subscribe(topic, connection)`` /
      ``authorize_publish(topic, connection)``: truthy allows, falsy denies
      (``ACL_SUBSCRIBE`` raised / ``ACL_PUBLISH`` returned); sync or async.
      ``authorize_publish`` does not run for ``router.publish`` (server code).
    - ``on_subscribe(topic, connection)`` / ``on_unsubscribe(...)``: run after a
      committed change; failures go to ``on_error``, nothing is rolled back.
    - ``history``: topics that keep their recent messages, e.g.
      ``{"feed:*": HistoryPolicy(max_messages=1000)}`` (glob or compiled regex
      patterns, first match wins) or a function ``topic -> HistoryPolicy | None``.
      Their messages carry ``meta.topicPosition`` and ``ctx.topics.subscribe(t,
      since=position)`` replays what a client missed (see ``docs/history.md``).
      The adapter must keep history (``MemoryPubSub``, ``RedisPubSub``).
    """
    return _WithPubSub(
        adapter,
        {
            "rules": TopicRules(topic_pattern, max_topic_length),
            "max_topics_per_connection": max_topics_per_connection,
            "normalize": normalize,
            "authorize_subscribe": authorize_subscribe,
            "authorize_publish": authorize_publish,
            "on_subscribe": on_subscribe,
            "on_unsubscribe": on_unsubscribe,
            "history": history,
        },
    )
