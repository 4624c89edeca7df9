"""wskit-client: the reconnecting, typed asyncio client for wskit servers.

::

    from wskit.client import Client
    from wskit.pydantic import message, rpc

    Ping = message("PING", text=str)
    GetUser = rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str})

    async with Client("ws://localhost:3000/ws") as client:
        client.send(Ping, payload={"text": "hi"})
        user = await client.request(GetUser, payload={"user_id": "u1"})

Errors the client raises that live in core: ``wskit.core.errors.RpcError``
(``RPC_ERROR`` replies), ``ValidationError`` and ``ConnectionClosedError``.
See ``docs/client.md``.
"""

from wskit.client._client import Call, Client, ClientState, QueuePolicy, Stream, create_client
from wskit.client._follow import FollowState, SubscribeFn, TopicFollow
from wskit.client._message import ClientErrorInfo, Compat, ErrorKind, Message, SendStatus
from wskit.client.auth import AuthOptions, TokenProvider, apply_token
from wskit.client.backoff import Jitter, ReconnectOptions, backoff_delay
from wskit.client.errors import (
    ConnectError,
    QueueOverflowError,
    RequestTimeoutError,
    ServerError,
    StateError,
)
from wskit.client.retry import RetryPolicy, is_retryable

__all__ = [
    "AuthOptions",
    "Call",
    "Client",
    "ClientErrorInfo",
    "ClientState",
    "Compat",
    "ConnectError",
    "ErrorKind",
    "FollowState",
    "Jitter",
    "Message",
    "QueueOverflowError",
    "QueuePolicy",
    "ReconnectOptions",
    "RequestTimeoutError",
    "RetryPolicy",
    "SendStatus",
    "ServerError",
    "StateError",
    "Stream",
    "SubscribeFn",
    "TokenProvider",
    "TopicFollow",
    "apply_token",
    "backoff_delay",
    "create_client",
    "is_retryable",
]
