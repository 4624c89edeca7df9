"""request()/call() against a real wskit-aiohttp server: replies, progress, every error
kind, cancellation reaching the handler, timeouts, limits and the retry policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit.client import (
    ClientErrorInfo,
    QueueOverflowError,
    RequestTimeoutError,
    RetryPolicy,
    StateError,
)
from wskit.core.errors import ConnectionClosedError, RpcError, ValidationError

T = 10.0  # safety net


async def test_request_returns_validated_payload(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        reply = await client.request(schemas.Echo, payload={"text": "hi"})
        assert reply.text == "hi"
        assert type(reply).__name__ == "EchoReplyPayload"  # the response model, not a dict
        call = client.call(schemas.Echo, payload={"text": "full"})
        msg = await call.reply()
        assert msg.type == "ECHO_REPLY"
        assert msg.meta["correlationId"] == call.correlation_id
        assert msg.payload.text == "full"
        assert client.pending_requests == 0


async def test_concurrent_requests_are_matched_by_correlation_id(
    make_client: Any, schemas: Any
) -> None:
    async with make_client() as client:
        texts = [f"m{i}" for i in range(50)]
        replies = await asyncio.gather(
            *(client.request(schemas.Echo, payload={"text": t}) for t in texts)
        )
        assert [r.text for r in replies] == texts


async def test_progress_as_iterator_and_callback(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        seen: list[int] = []
        call = client.call(
            schemas.Count, payload={"n": 5}, on_progress=lambda u: seen.append(u.value)
        )
        updates = [u.value async for u in call.progress()]
        result = await call
        assert updates == [0, 1, 2, 3, 4]
        assert seen == [0, 1, 2, 3, 4]
        assert result.value == 5

        async_seen: list[int] = []
        done = asyncio.Event()

        async def on_progress(update: Any) -> None:
            async_seen.append(update.value)
            if len(async_seen) == 3:
                done.set()

        result = await client.request(schemas.Count, payload={"n": 3}, on_progress=on_progress)
        await asyncio.wait_for(done.wait(), T)
        assert result.value == 3
        assert async_seen == [0, 1, 2]


async def test_progress_iterator_not_available_on_request_calls(
    make_client: Any, schemas: Any
) -> None:
    async with make_client() as client:
        call = client.call(schemas.Echo, payload={"text": "x"})
        await call
        assert [u async for u in call.progress()] == []


async def test_rpc_error_carries_code_details_and_retry_hints(
    make_client: Any, schemas: Any
) -> None:
    async with make_client() as client:
        with pytest.raises(RpcError) as info:
            await client.request(schemas.Fail, payload={"code": "NOT_FOUND"})
        err = info.value
        assert (err.code, err.message, err.details) == ("NOT_FOUND", "boom", {"attempt": 1})
        assert err.retryable is None and err.retry_after_ms is None

        with pytest.raises(RpcError) as info:
            await client.request(
                schemas.Fail,
                payload={"code": "RESOURCE_EXHAUSTED", "retry_after_ms": 250, "retryable": True},
            )
        assert info.value.code == "RESOURCE_EXHAUSTED"
        assert info.value.retryable is True
        assert info.value.retry_after_ms == 250

        with pytest.raises(RpcError) as info:
            await client.request(schemas.Fail, payload={"code": "UNAVAILABLE"})
        assert info.value.retry_after_ms == 100  # the code's suggested backoff

        with pytest.raises(RpcError) as info:
            await client.request(schemas.Fail, payload={"code": "MY_APP_ERROR"})
        assert info.value.code == "MY_APP_ERROR"


async def test_handler_crash_is_internal_without_internals(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        with pytest.raises(RpcError) as info:
            await client.request(schemas.Crash)
        assert info.value.code == "INTERNAL"
        assert "secret" not in info.value.message


async def test_server_side_validation_and_unknown_type(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        with pytest.raises(RpcError) as info:
            await client.request(schemas.EchoExtra, payload={"text": "a", "extra": 1})
        assert info.value.code == "INVALID_ARGUMENT"
        assert info.value.details is not None
        assert info.value.details["issues"][0]["path"] == ["payload", "extra"]

        with pytest.raises(RpcError) as info:
            await client.request(schemas.Nope, payload={"x": 1})
        assert info.value.code == "UNIMPLEMENTED"
        # The connection is still usable.
        assert (await client.request(schemas.Echo, payload={"text": "ok"})).text == "ok"


async def test_outbound_validation_raises_before_sending(make_client: Any, schemas: Any) -> None:
    async with make_client() as client:
        with pytest.raises(ValidationError) as info:
            await client.request(schemas.Echo, payload={"text": 5})
        assert info.value.issues[0]["path"] == ["payload", "text"]
        with pytest.raises(ValidationError):
            await client.request(schemas.Echo, payload={"text": "a"}, meta={"bogus": 1})
        with pytest.raises(ValidationError):
            await client.request(schemas.Echo, payload={"text": "a"}, meta={"timeoutMs": -1})
        with pytest.raises(TypeError):
            await client.request(schemas.Echo)
        assert client.pending_requests == 0


async def test_reply_failing_client_schema_is_validation_error(
    make_client: Any, schemas: Any
) -> None:
    async with make_client() as client:
        with pytest.raises(ValidationError) as info:
            await client.request(schemas.EchoWrongReply, payload={"text": "not-an-int"})
        assert info.value.message == "Reply validation failed"
        assert info.value.issues[0]["path"] == ["payload", "text"]


async def test_server_deadline_exceeded(make_client: Any, schemas: Any, server: Any) -> None:
    async with make_client() as client:
        with pytest.raises(RpcError) as info:
            await client.request(schemas.Slow, payload={"tag": "dl"}, meta={"timeoutMs": 30})
        assert info.value.code == "DEADLINE_EXCEEDED"
        await asyncio.wait_for(server.state.cancelled_event("dl").wait(), T)
        assert server.state.cancel_reasons["dl"] == "deadline"


async def test_cancelling_the_awaiting_task_aborts_the_server_handler(
    make_client: Any, schemas: Any, server: Any
) -> None:
    async with make_client() as client:
        task = asyncio.create_task(client.request(schemas.Slow, payload={"tag": "c1"}))
        await asyncio.wait_for(server.state.started_event("c1").wait(), T)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.state.cancelled_event("c1").wait(), T)
        assert server.state.cancel_reasons["c1"] == "client-abort"
        assert client.pending_requests == 0
        # call.cancel() does the same.
        call = client.call(schemas.Slow, payload={"tag": "c2"})
        await asyncio.wait_for(server.state.started_event("c2").wait(), T)
        assert call.cancel()
        await asyncio.wait_for(server.state.cancelled_event("c2").wait(), T)
        assert server.state.cancel_reasons["c2"] == "client-abort"
        assert (await client.request(schemas.Echo, payload={"text": "still"})).text == "still"


async def test_client_timeout_counts_from_send_and_aborts(
    make_client: Any, schemas: Any, server: Any
) -> None:
    async with make_client() as client:
        with pytest.raises(RequestTimeoutError) as info:
            await client.request(schemas.Slow, payload={"tag": "t1"}, timeout_ms=50)
        assert isinstance(info.value, TimeoutError)
        assert info.value.timeout_ms == 50
        await asyncio.wait_for(server.state.cancelled_event("t1").wait(), T)
        assert server.state.cancel_reasons["t1"] == "client-abort"


async def test_timeout_does_not_run_while_queued(make_client: Any, schemas: Any) -> None:
    from wskit.core.testing import FakeClock

    clock = FakeClock(1_000)
    client = make_client(clock=clock, request_timeout_ms=100)
    await client.connect()
    await client.close()
    # Closed client: requests are refused rather than left to hang.
    with pytest.raises(StateError):
        client.call(schemas.Echo, payload={"text": "x"})
    connecting = asyncio.create_task(client.connect())
    await asyncio.sleep(0)  # one loop turn: connect() enters "connecting"
    call = client.call(schemas.Echo, payload={"text": "queued"})
    assert not call.sent
    await clock.advance(500)  # far past the timeout: not started while queued
    assert not call.done()
    await connecting
    assert (await asyncio.wait_for(call.result(), T)).text == "queued"


async def test_pending_request_limit(make_client: Any, schemas: Any) -> None:
    async with make_client(pending_requests_limit=2) as client:
        a = client.call(schemas.Slow, payload={"tag": "p1"})
        b = client.call(schemas.Slow, payload={"tag": "p2"})
        with pytest.raises(StateError, match="Pending request limit exceeded"):
            client.call(schemas.Slow, payload={"tag": "p3"})
        a.cancel()
        b.cancel()
        await asyncio.gather(a.reply(), b.reply(), return_exceptions=True)
        assert (await client.request(schemas.Echo, payload={"text": "after"})).text == "after"


async def test_queue_off_refuses_requests_while_disconnected(
    make_client: Any, schemas: Any
) -> None:
    client = make_client(queue="off")
    connecting = asyncio.create_task(client.connect())
    await asyncio.sleep(0)  # let connect() enter "connecting"
    assert client.state == "connecting"
    with pytest.raises(StateError, match="queue disabled"):
        client.call(schemas.Echo, payload={"text": "x"})
    await connecting


async def test_full_queue_refuses_requests(make_client: Any, schemas: Any) -> None:
    client = make_client(queue_size=1)
    connecting = asyncio.create_task(client.connect())
    await asyncio.sleep(0)
    first = client.call(schemas.Echo, payload={"text": "1"})
    with pytest.raises(QueueOverflowError):
        client.call(schemas.Echo, payload={"text": "2"})
    await connecting
    assert (await first).text == "1"


async def test_retry_policy_uses_retryability_and_retry_after(
    make_client: Any, schemas: Any, server: Any
) -> None:
    async with make_client() as client:
        server.state.fail_plan[:] = ["UNAVAILABLE", "ABORTED", "OK"]
        reply = await client.request(
            schemas.Fail,
            payload={"code": "x", "retry_after_ms": 5},
            retry=RetryPolicy(max_attempts=3),
        )
        assert reply.ok is True
        assert server.state.fail_calls == 3

        # Terminal codes are not retried.
        server.state.fail_calls = 0
        with pytest.raises(RpcError) as info:
            await client.request(
                schemas.Fail, payload={"code": "NOT_FOUND"}, retry=RetryPolicy(max_attempts=5)
            )
        assert info.value.code == "NOT_FOUND"
        assert server.state.fail_calls == 1

        # An explicit retryable=False wins over a transient code; attempts are bounded.
        server.state.fail_calls = 0
        with pytest.raises(RpcError):
            await client.request(
                schemas.Fail,
                payload={"code": "UNAVAILABLE", "retryable": False},
                retry=RetryPolicy(max_attempts=5),
            )
        assert server.state.fail_calls == 1
        server.state.fail_calls = 0
        with pytest.raises(RpcError):
            await client.request(
                schemas.Fail,
                payload={"code": "UNAVAILABLE", "retry_after_ms": 1},
                retry=RetryPolicy(max_attempts=2),
            )
        assert server.state.fail_calls == 2


async def test_late_frames_for_finished_requests_are_dropped(
    make_client: Any, schemas: Any, server: Any
) -> None:
    errors: list[ClientErrorInfo] = []
    unhandled: list[Any] = []
    async with make_client() as client:
        client.on_error(lambda exc, info: errors.append(info))
        client.on_unhandled(unhandled.append)
        with pytest.raises(RequestTimeoutError):
            await client.request(schemas.Slow, payload={"tag": "late"}, timeout_ms=20)
        await asyncio.wait_for(server.state.cancelled_event("late").wait(), T)
        assert (await client.request(schemas.Echo, payload={"text": "x"})).text == "x"
    assert errors == [] and unhandled == []


async def test_close_fails_pending_requests(make_client: Any, schemas: Any, server: Any) -> None:
    client = make_client()
    await client.connect()
    call = client.call(schemas.Slow, payload={"tag": "cl"})
    await asyncio.wait_for(server.state.started_event("cl").wait(), T)
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await call
    assert client.state == "closed"
    assert client.pending_requests == 0


async def test_meta_beyond_the_server_limits_is_refused_before_sending(
    make_client: Any, schemas: Any
) -> None:
    # The same bounds and messages as the server's answer (INVALID_ARGUMENT there).
    async with make_client() as client:
        with pytest.raises(ValidationError) as info:
            await client.request(schemas.Echo, payload={"text": "a"}, meta={"timeoutMs": 2**31})
        assert info.value.issues == [
            {
                "path": ["meta", "timeoutMs"],
                "message": "Expected a positive integer of milliseconds, at most 2147483647",
            }
        ]
        with pytest.raises(ValidationError) as info:
            await client.request(schemas.Echo, payload={"text": "a"}, correlation_id="c" * 257)
        assert info.value.issues == [
            {
                "path": ["meta", "correlationId"],
                "message": "Expected a string of at most 256 characters",
            }
        ]
        assert client.pending_requests == 0
        # At the bounds, the server takes them.
        reply = await client.request(
            schemas.Echo,
            payload={"text": "edge"},
            meta={"timeoutMs": 2**31 - 1},
            correlation_id="c" * 256,
        )
        assert reply.text == "edge"
