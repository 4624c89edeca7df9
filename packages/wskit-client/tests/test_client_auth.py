"""Handshake auth: query parameter and bearer subprotocol, a token per (re)connect."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from wskit.client import AuthOptions, Client, ConnectError, ReconnectOptions, apply_token


def test_apply_token_query_and_protocol() -> None:
    query = AuthOptions(get_token=lambda: "t")
    assert apply_token("ws://h/ws?a=1&access_token=old", None, "t", query) == (
        "ws://h/ws?a=1&access_token=t",
        None,
    )
    assert apply_token("ws://h/ws", ["x"], None, query) == ("ws://h/ws", ["x"])
    proto = AuthOptions(get_token=lambda: "t", attach="protocol")
    assert apply_token("ws://h/ws", ["chat", "chat", ""], "t", proto) == (
        "ws://h/ws",
        ["chat", "bearer.t"],
    )
    first = AuthOptions(get_token=lambda: "t", attach="protocol", protocol_position="prepend")
    assert apply_token("ws://h", ["chat"], "t", first)[1] == ["bearer.t", "chat"]
    assert apply_token("ws://h", [], None, proto)[1] is None
    with pytest.raises(ValueError, match="protocol_prefix"):
        AuthOptions(get_token=lambda: "t", protocol_prefix="bad prefix")


@pytest.mark.parametrize("attach", ["query", "protocol"])
async def test_token_sent_and_refreshed_on_reconnect(
    server: Any, schemas: Any, record_states: Any, attach: str
) -> None:
    server.state.require_token = True
    counter = itertools.count(1)
    calls: list[str] = []

    async def get_token() -> str:
        token = f"tok-{next(counter)}"
        calls.append(token)
        return token

    client = Client(
        server.url,
        auth=AuthOptions(get_token=get_token, attach=attach),  # type: ignore[arg-type]
        reconnect=ReconnectOptions(initial_delay_ms=1, max_delay_ms=5),
    )
    rec = record_states(client)
    await client.connect()
    assert (await client.request(schemas.Whoami)).token == "tok-1"
    assert client.protocol == ("bearer.tok-1" if attach == "protocol" else "")

    await server.stop()
    await rec.reached("reconnecting")
    await server.start()
    await rec.reached("open")
    assert (await client.request(schemas.Whoami)).token == calls[-1]
    assert len(calls) >= 2 and calls[-1] != "tok-1"
    assert server.state.tokens[0] == "tok-1"
    await client.close()


async def test_rejected_token_is_a_connect_error_with_status(server: Any) -> None:
    server.state.require_token = True
    client = Client(server.url, auth=AuthOptions(get_token=lambda: "wrong"))
    with pytest.raises(ConnectError) as info:
        await client.connect()
    assert info.value.status == 401
    assert client.state == "closed"
    no_token = Client(server.url, auth=AuthOptions(get_token=lambda: None))
    with pytest.raises(ConnectError):
        await no_token.connect()
    assert server.state.tokens == ["wrong", None]


async def test_failing_token_provider(server: Any) -> None:
    def broken() -> str:
        raise RuntimeError("vault down")

    client = Client(server.url, auth=AuthOptions(get_token=broken))
    with pytest.raises(ConnectError, match="Token provider failed"):
        await client.connect()
