"""Graceful shutdown (app cleanup, SIGTERM/SIGINT) and the ``python -m`` runner."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wskit.aiohttp.__main__ import build_parser, load_router, main

ROUTER_MODULE = textwrap.dedent(
    """
    from wskit.pydantic import create_router, message, with_pydantic

    Ping = message("PING", text=str)
    Pong = message("PONG", reply=str)

    router = create_router().plugin(with_pydantic())

    @router.on(Ping)
    async def ping(ctx):
        ctx.send(Pong, {"reply": ctx.payload.text})

    @router.on_close
    def closed(ctx):
        print(f"closed {ctx.code} {ctx.reason}", flush=True)

    def make_router():
        return router

    not_a_router = 42
    """
)


async def test_shutdown_closes_every_connection_with_1001(
    app: Any, start: Any, session: aiohttp.ClientSession, recv: Any, wait_for: Any
) -> None:
    adapter_closed: list[str] = []
    server = await start(app.router, on_close=lambda conn: adapter_closed.append(conn.client_id))
    a = await session.ws_connect(server.url)
    b = await session.ws_connect(server.url)
    # a has an RPC in flight; b has a reply queued just before shutdown.
    await a.send_str('{"type": "SLOW", "meta": {"correlationId": "s"}, "payload": {"x": 1}}')
    await wait_for(app.slow_started.wait())
    await b.send_str('{"type": "PING", "payload": {"text": "last"}}')
    assert await recv(b) == {"type": "PONG", "meta": {}, "payload": {"reply": "last"}}

    stopping = asyncio.ensure_future(server.handler.shutdown())
    for ws in (a, b):
        msg = await recv(ws)
        assert (msg.type, msg.data, msg.extra) == (
            aiohttp.WSMsgType.CLOSE,
            1001,
            "Server shutting down",
        )
    await wait_for(stopping)
    # The in-flight RPC was cancelled (its handler saw it), not dropped silently.
    assert app.cancelled.is_set()
    # on_close ran exactly once per connection, router hook and adapter hook.
    assert sorted(cid for cid, _, _ in app.closed) == sorted(app.opened)
    assert [code for _, code, _ in app.closed] == [1001, 1001]
    assert sorted(adapter_closed) == sorted(app.opened)
    assert server.handler.connections == []
    # New upgrades are refused while shutting down.
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(server.url)
    assert info.value.status == 503
    await server.stop()  # app cleanup after handler shutdown: no second on_close
    assert len(app.closed) == 2
    await a.close()
    await b.close()


async def test_shutdown_aborts_peers_that_never_answer_the_close(
    app: Any, start: Any, session: aiohttp.ClientSession
) -> None:
    server = await start(app.router, close_timeout=0.2, shutdown_timeout=0.2)
    # autoclose off and no reads: this client never answers the close frame.
    ws = await session.ws_connect(server.url, autoclose=False)
    await server.handler.shutdown()
    assert [code for _, code, _ in app.closed] == [1001]
    assert server.handler.connections == []
    await ws.close()


HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
ON_UVLOOP = " (Ctrl+C to stop; uvloop)"
ON_ASYNCIO = " (Ctrl+C to stop)"


@pytest.mark.parametrize(
    ("sig", "loop", "expected_end"),
    [
        (signal.SIGTERM, "auto", ON_UVLOOP if HAVE_UVLOOP else ON_ASYNCIO),
        (signal.SIGINT, "asyncio", ON_ASYNCIO),
        *([(signal.SIGTERM, "uvloop", ON_UVLOOP)] if HAVE_UVLOOP else []),
    ],
)
async def test_runner_serves_and_shuts_down_on_signal(
    tmp_path: Path,
    session: aiohttp.ClientSession,
    recv: Any,
    wait_for: Any,
    sig: int,
    loop: str,
    expected_end: str,
) -> None:
    (tmp_path / "chatmod.py").write_text(ROUTER_MODULE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wskit.aiohttp",
        "chatmod:router",
        "--port",
        "0",
        "--path",
        "/ws",
        "--loop",
        loop,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await wait_for(proc.stdout.readline())).decode()
        assert line.startswith("wskit: serving ws://127.0.0.1:")
        assert line.rstrip().endswith(expected_end)
        url = line.split()[2]
        async with session.ws_connect(url) as ws:
            await ws.send_str('{"type": "PING", "payload": {"text": "hi"}}')
            assert await recv(ws) == {"type": "PONG", "meta": {}, "payload": {"reply": "hi"}}
            proc.send_signal(sig)
            msg = await recv(ws)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE,
                1001,
                "Server shutting down",
            )
        assert await wait_for(proc.wait()) == 0
        rest = (await wait_for(proc.stdout.read())).decode()
        assert rest.splitlines() == ["closed 1001 Server shutting down"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_load_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "loadmod.py").write_text(ROUTER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    router = load_router("loadmod:router")
    assert load_router("loadmod:make_router") is router
    with pytest.raises(SystemExit, match="not a wskit Router"):
        load_router("loadmod:not_a_router")
    with pytest.raises(SystemExit, match="expected module:router"):
        load_router("loadmod")


async def test_runner_allowed_host_flag(
    tmp_path: Path, session: aiohttp.ClientSession, wait_for: Any
) -> None:
    (tmp_path / "hostmod.py").write_text(ROUTER_MODULE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wskit.aiohttp",
        "hostmod:router",
        "--port",
        "0",
        "--allowed-host",
        "app.example",
        "--allowed-host",
        ".example.org",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await wait_for(proc.stdout.readline())).decode().split()[2]
        statuses = {}
        for host in ("app.example", "chat.example.org:443", "localhost", "evil.example"):
            try:
                ws = await wait_for(session.ws_connect(url, headers={"Host": host}))
            except aiohttp.WSServerHandshakeError as exc:
                statuses[host] = exc.status
            else:
                statuses[host] = 101
                await ws.close()
        # The flag replaces the loopback default: localhost is not listed.
        assert statuses == {
            "app.example": 101,
            "chat.example.org:443": 101,
            "localhost": 400,
            "evil.example": 400,
        }
        proc.send_signal(signal.SIGTERM)
        assert await wait_for(proc.wait()) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_runner_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} >= {
        "host",
        "port",
        "path",
        "allowed_hosts",
        "allowed_origins",
        "max_connections",
        "heartbeat",
        "authenticate",
        "max_message_bytes",
        "max_buffered_bytes",
        "overflow",
        "shutdown_timeout",
    }
    for action in flags:
        assert action.help is not None and "(default: " in action.help, action.dest
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: 127.0.0.1)",
        "(default: 3000)",
        "(default: /)",
        "(default: on a loopback --host, localhost, 127.0.0.1 and [::1] only; else any)",
        "(default: unlimited)",
        "(default: off)",
        "(default: none, every connection is accepted and ctx.data starts as {})",
        "(default: 10.0)",
    ):
        assert shown in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-connections", "0"], "max_connections must be a positive int or None, got 0"),
        (["--allowed-host", "*.example.com"], "use '.example.com'"),
        (["--allowed-origin", "app.example"], "allowed_origins: invalid entry 'app.example'"),
        (["--heartbeat", "0"], "expected a positive number of seconds, got '0'"),
        (["--port", "70000"], "expected a port number (0-65535), got '70000'"),
        (["--max-message-bytes", "0"], "expected a positive number of bytes, got '0'"),
        (["--overflow", "explode"], "invalid choice: 'explode'"),
    ],
)
def test_runner_bad_flags_are_usage_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "flagmod.py").write_text(ROUTER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(["flagmod:router", *args])
    assert info.value.code == 2  # a usage error, before anything is served
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert message in err


AUTH_MODULE = textwrap.dedent(
    """
    from wskit.pydantic import create_router, message, with_pydantic

    Who = message("WHO")
    You = message("YOU", user=str)

    router = create_router().plugin(with_pydantic())

    @router.on(Who)
    async def who(ctx):
        ctx.send(You, {"user": ctx.data["user"]})

    def authenticate(request):
        user = request.query.get("user")
        return {"user": user} if user else None

    not_callable = 42
    """
)


async def test_runner_authenticate_flag(
    tmp_path: Path, session: aiohttp.ClientSession, recv: Any, wait_for: Any
) -> None:
    (tmp_path / "authmod.py").write_text(AUTH_MODULE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wskit.aiohttp",
        "authmod:router",
        "--port",
        "0",
        "--authenticate",
        "authmod:authenticate",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await wait_for(proc.stdout.readline())).decode().split()[2]
        async with session.ws_connect(url + "?user=ann") as ws:
            await ws.send_str('{"type": "WHO"}')
            assert await recv(ws) == {"type": "YOU", "meta": {}, "payload": {"user": "ann"}}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await wait_for(session.ws_connect(url))
        assert refused.value.status == 401
        proc.send_signal(signal.SIGTERM)
        assert await wait_for(proc.wait()) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["authmod:router", "--authenticate", "authmod:missing"],
            "wskit.aiohttp: 'authmod:missing': module 'authmod' has no attribute 'missing'",
        ),
        (
            ["authmod:router", "--authenticate", "authmod:not_callable"],
            "wskit.aiohttp: --authenticate 'authmod:not_callable' is a int, not a function "
            "authenticate(request) -> connection data or None",
        ),
        (
            ["authmod:router", "--authenticate", "authenticate"],
            "wskit.aiohttp: expected module:function, got 'authenticate'",
        ),
        (
            ["nosuchmod:router"],
            "wskit.aiohttp: cannot import 'nosuchmod' for 'nosuchmod:router' (No module named "
            "'nosuchmod'); run from the directory that holds it, or add that directory to "
            "PYTHONPATH",
        ),
    ],
)
def test_runner_load_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    (tmp_path / "authmod.py").write_text(AUTH_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == message


def test_runner_port_taken_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "authmod.py").write_text(AUTH_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["authmod:router", "--port", str(port)])
    text = str(info.value.code)
    assert text.startswith(f"wskit.aiohttp: cannot listen on 127.0.0.1:{port}: ")
    assert text.endswith(
        "another server is using it: stop it, or pass another --port (0 picks a free one)"
    )
    assert "\n" not in text
