#!/usr/bin/env python3
"""Send many odd frames to the chat demo over real sockets and check it holds up.

    hatch run bench:python tools/fuzz/fuzz_demo_sockets.py [--frames 100000] [--seed 1]

The demo server (``python -m examples.chat``) runs in its own process. Clients on
loopback send seeded random odd frames (mutated demo messages, random JSON, deep
nesting, lone surrogates, out-of-range numbers, long strings, invalid UTF-8,
reserved and unknown types, aborts, heartbeats). After every batch each client
sends a ``HISTORY`` request as a liveness marker, which must be answered within
10 s. Reported at the end:

- stalled markers (target 0) and connections the server dropped;
- server tracebacks that are not a reported handler error (target 0);
- the server's RSS before and after (target: growth under 20 MB). The baseline is taken
  after a warm-up of ``--warmup`` odd frames of another seed, so that it includes the
  allocator's high-water mark from large frames: the figure is what the run adds.

Every loop is bounded by the frame count and a per-marker timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
MARKER_TIMEOUT = 10.0


#: Close codes (and reasons) of connections the server closed.
closes: collections.Counter[str] = collections.Counter()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ------------------------------------------------------------------ odd frames

ODD_STRINGS = ["\\ud800", "a\\udfffb", "\\udc00", "\\u0000", "\\u2028", "é", "", "\\\\", '\\"']
TYPES = ["JOIN", "LEAVE", "SAY", "HISTORY", "WELCOME", "NOTICE", "MESSAGE", "PING", "X" * 300]
SYSTEM = ["$ws:abort", "__heartbeat", "$ws:rpc-progress", "__other", "$ws:x", "ERROR", "RPC_ERROR"]


def odd_string(rng: random.Random) -> str:
    """JSON source text of a string value (escapes included)."""
    pick = rng.random()
    if pick < 0.3:
        body = "".join(rng.choice(ODD_STRINGS) for _ in range(rng.randint(1, 4)))
    elif pick < 0.4:
        body = "y" * rng.choice([1_000, 50_000, 200_000])
    else:
        body = "".join(rng.choice("abcxyz-_ 0123") for _ in range(rng.randint(0, 12)))
    return f'"{body}"'


def odd_number(rng: random.Random) -> str:
    return rng.choice(
        ["1e400", "-1e400", "1e308", "5e-324", "-0", "0.5", "9" * rng.randint(300, 400), "12", "-7"]
    )


def odd_value(rng: random.Random, depth: int = 0) -> str:
    pick = rng.random()
    if depth > 3 or pick < 0.35:
        return odd_string(rng)
    if pick < 0.5:
        return odd_number(rng)
    if pick < 0.6:
        return rng.choice(["true", "false", "null", "NaN", "Infinity"])
    if pick < 0.7:
        n = rng.choice([10, 127, 129, 1_000, 100_000])
        return "[" * n + "]" * n
    if pick < 0.85:
        items = ",".join(odd_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
        return f"[{items}]"
    return odd_object(rng, depth + 1)


def odd_object(rng: random.Random, depth: int = 0) -> str:
    keys = ["room", "text", "user", "ts", "lines", "done"] + [s[1:-1] for s in ODD_STRINGS[:3]]
    fields = [f'"{rng.choice(keys)}":{odd_value(rng, depth + 1)}' for _ in range(rng.randint(0, 4))]
    return "{" + ",".join(fields) + "}"


def valid_ish(rng: random.Random, index: int) -> str:
    message_type = rng.choice(TYPES)
    # Mostly the client's own room: fan-out to 20 clients that read in one process
    # would otherwise make them slow consumers (closed with 1013, as they should be).
    own = f'"room-{index}"'
    room = rng.choice([own, own, own, '"lobby"', '"Bad Room"', odd_string(rng)])
    payloads = {
        "JOIN": f'{{"room":{room}}}',
        "LEAVE": f'{{"room":{room}}}',
        "SAY": f'{{"room":{room},"text":{odd_string(rng)}}}',
        "HISTORY": f'{{"room":{room}}}',
    }
    payload = payloads.get(message_type, odd_object(rng))
    if rng.random() < 0.3:
        payload = odd_value(rng)
    meta_fields = []
    if rng.random() < 0.6:
        meta_fields.append(f'"correlationId":{odd_string(rng)}')
    if rng.random() < 0.2:
        meta_fields.append(f'"timeoutMs":{rng.choice([odd_number(rng), "1", "2147483647"])}')
    if rng.random() < 0.1:
        meta_fields.append(f'"clientId":{odd_string(rng)}')
    parts = [f'"type":"{message_type}"']
    if meta_fields or rng.random() < 0.5:
        parts.append('"meta":{' + ",".join(meta_fields) + "}")
    if rng.random() < 0.9:
        parts.append(f'"payload":{payload}')
    if rng.random() < 0.1:
        parts.append(f'"extra":{odd_value(rng)}')
    return "{" + ",".join(parts) + "}"


def odd_frame(rng: random.Random, index: int) -> str | bytes:
    pick = rng.random()
    if pick < 0.55:
        text = valid_ish(rng, index)
    elif pick < 0.65:
        text = '{"type":"' + rng.choice(SYSTEM) + '","meta":' + odd_object(rng) + "}"
    elif pick < 0.8:
        text = odd_value(rng)
    elif pick < 0.9:
        text = rng.choice(["", "{", "not json", '{"type":5}', "[]", '"x"', " " * 10])
    else:
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        return raw if rng.random() < 0.5 else valid_ish(rng, index).encode() + raw
    if len(text.encode()) > 900_000:  # keep under the demo's 1 MiB frame limit
        text = text[:1000]
    return text.encode() if rng.random() < 0.1 else text


# --------------------------------------------------------------------- clients


async def client(
    index: int,
    url: str,
    frames: int,
    batch: int,
    seed: int,
    stats: dict[str, int],
    session: aiohttp.ClientSession,
) -> None:
    """Send ``frames`` odd frames, a liveness marker after every ``batch``; a reader
    task reads everything the server sends (so the client is never a slow consumer)."""
    rng = random.Random(seed * 1_000_003 + index)
    async with session.ws_connect(url, max_msg_size=0) as ws:
        waiting: dict[str, asyncio.Future[None]] = {}

        async def read() -> None:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.CLOSE:  # the server closed the connection
                    closes[f"{msg.data} {msg.extra or ''}".strip()] += 1
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                stats["frames_received"] += 1
                if '"marker-' not in msg.data:
                    continue  # not an answer to a marker: no need to parse it
                data = json.loads(msg.data)
                cid = data.get("meta", {}).get("correlationId")
                future = waiting.pop(cid, None) if isinstance(cid, str) else None
                if future is not None and data["type"] != "$ws:rpc-progress":
                    future.set_result(None)
                elif future is not None:
                    waiting[cid] = future
            for future in waiting.values():
                future.cancel()

        reader = asyncio.create_task(read())
        sent = 0
        marker = 0
        try:
            while sent < frames:
                for _ in range(min(batch, frames - sent)):
                    frame = odd_frame(rng, index)
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                    sent += 1
                marker += 1
                cid = f"marker-{index}-{marker}"
                answered = waiting[cid] = asyncio.get_running_loop().create_future()
                marker_frame = {"type": "HISTORY", "meta": {"correlationId": cid}}
                await ws.send_str(json.dumps({**marker_frame, "payload": {"room": "zz"}}))
                try:
                    await asyncio.wait_for(answered, MARKER_TIMEOUT)
                except asyncio.TimeoutError:
                    stats["stalled"] += 1
                    return
                except asyncio.CancelledError:
                    stats["dropped"] += 1
                    return
                stats["markers"] += 1
        finally:
            stats["frames_sent"] += sent
            await ws.close()
            await asyncio.wait_for(reader, MARKER_TIMEOUT)


async def run(args: argparse.Namespace) -> int:
    port = free_port()
    log_path = Path(args.log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "examples.chat", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # wait for the server (bounded)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the demo server did not start")
            names = ("stalled", "dropped", "markers", "frames_sent", "frames_received")
            stats = dict.fromkeys(names, 0)
            # Warm-up with the same kind of frames (another seed): imports, caches and
            # the allocator's high-water mark settle before the baseline, so the figure
            # is what the run adds, not the first peak of large frames.
            warm = dict.fromkeys(names, 0)
            clients = range(args.clients)
            seed = args.seed
            per_warm = args.warmup // args.clients
            await asyncio.gather(
                *(client(i, url, per_warm, args.batch, seed + 99, warm, session) for i in clients)
            )
            before = rss_kib(server.pid)
            per_client = args.frames // args.clients
            started = time.monotonic()
            await asyncio.gather(
                *(client(i, url, per_client, args.batch, seed, stats, session) for i in clients)
            )
            elapsed = time.monotonic() - started
            after = rss_kib(server.pid)
        alive = server.poll() is None
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    log_text = log_path.read_text(errors="replace")
    tracebacks = log_text.count("Traceback (most recent call last)")
    reported = len(re.findall(r"wskit: error in .*no on_error hook", log_text))
    print(f"frames sent: {stats['frames_sent']} in {elapsed:.1f} s over {args.clients} connections")
    print(
        f"markers answered: {stats['markers']}, stalled: {stats['stalled']}, "
        f"dropped: {stats['dropped']}"
    )
    print(f"frames received: {stats['frames_received']}")
    if closes:
        print(f"connections closed by the server: {dict(closes)}")
    print(f"server alive during the run: {alive}")
    print(f"server tracebacks: {tracebacks} (reported handler errors among them: {reported})")
    print(
        f"server RSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after, "
        f"growth {(after - before) / 1024:.1f} MiB"
    )
    ok = (
        stats["stalled"] == 0
        and stats["dropped"] == 0
        and tracebacks == reported
        and alive
        and after - before < 20 * 1024
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50, help="frames between liveness markers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warmup", type=int, default=20_000, help="odd frames sent before the RSS baseline"
    )
    parser.add_argument("--log", default="/tmp/wskit-fuzz-demo.log", help="server output")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
