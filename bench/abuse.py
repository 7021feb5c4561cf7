"""Abuse scenarios (issue 11): one client misbehaves while a canary, a
well-behaved client, publishes in its own room and waits for each ack.

Reported: the server's RSS before, at its peak and after; the canary's round
trips (p50/p99/max); how the attacker was ended. Attacks:

* ``ping-flood``: 125-byte masked pings, 1,000 per write, never reading
  (``SO_RCVBUF`` 4096), until the server stops taking them or ``batches`` are sent.
* ``big-resume``: a room filled with ``messages`` x ``size`` bytes, then a client
  with a small receive window (``SO_RCVBUF`` 16 KiB) joins with ``since: 0`` and
  reads promptly; how many of the messages it got before the end or a close.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from typing import Any

from bench.procstat import rss_bytes
from bench.scenarios import MB, Env, healthz, running_server
from bench.servers import ServerKind
from bench.stats import percentile
from bench.wsframe import (
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameSplitter,
    check_upgrade_response,
    encode_frame,
    upgrade_request,
)


class BlockingClient:
    """One /ws connection on a blocking socket (run in a thread)."""

    def __init__(self, host: str, port: int, name: str, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        self.sock.sendall(upgrade_request(host, port, f"/ws?name={name}"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        problem = check_upgrade_response(head + b"\r\n\r\n")
        if problem:
            raise ConnectionError(problem)
        self.splitter = FrameSplitter()
        self.frames = self.splitter.feed(rest)

    def send_json(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode_frame(OP_TEXT, json.dumps(message).encode()))

    def recv(self) -> tuple[int, bytes]:
        """The next frame; ConnectionError at EOF."""
        while not self.frames:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("EOF")
            self.frames = self.splitter.feed(chunk)
        return self.frames.pop(0)

    def recv_json(self) -> dict[str, Any]:
        """The next text frame as JSON; a close frame raises with its code."""
        while True:
            opcode, payload = self.recv()
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionError(f"close {code}")
            if opcode == OP_TEXT:
                return json.loads(payload)

    def until(self, **fields: Any) -> dict[str, Any]:
        while True:
            message = self.recv_json()
            if all(message.get(k) == v for k, v in fields.items()):
                return message

    def close(self) -> None:
        self.sock.close()


def _ending(client: BlockingClient) -> str:
    """Read past what is left to the server's close frame: how the connection ended."""
    try:
        for _ in range(10_000_000):  # bounded by the socket timeout in practice
            opcode, payload = client.recv()
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return f"close {code} {payload[2:].decode(errors='replace')}"
    except TimeoutError:
        return "no close within 10 s (the server no longer reads it)"
    except (ConnectionError, OSError) as error:
        return f"dropped ({type(error).__name__})"
    return "still open"


def ping_flood(host: str, port: int, batches: int) -> dict[str, Any]:
    flooder = BlockingClient(host, port, "flooder", rcvbuf=4096)
    batch = encode_frame(OP_PING, b"p" * 125) * 1000
    flooder.sock.settimeout(2)
    sent = 0
    started = time.monotonic()
    try:
        while sent < batches:
            flooder.sock.sendall(batch)
            sent += 1
    except OSError:  # the server stopped reading (or closed): the flood is over
        pass
    seconds = time.monotonic() - started
    flooder.sock.settimeout(10)
    ending = _ending(flooder)
    flooder.close()
    return {"pings_sent": sent * 1000, "flood_s": seconds, "attacker_end": ending}


def big_resume(host: str, port: int, messages: int, size: int) -> dict[str, Any]:
    filler = BlockingClient(host, port, "filler")
    filler.send_json({"type": "join", "room": "big"})
    filler.until(type="joined")
    text = os.urandom(size // 2).hex()
    for i in range(messages):
        filler.send_json({"type": "publish", "room": "big", "data": {"i": i, "f": text}, "id": i})
        filler.until(type="ack", id=i)
    filler.close()
    resumer = BlockingClient(host, port, "resumer", rcvbuf=16384)
    started = time.monotonic()
    resumer.send_json({"type": "join", "room": "big", "since": 0})
    got = 0
    ending = "all replayed"
    try:
        while got < messages:
            if resumer.recv_json()["type"] == "message":
                got += 1
    except (ConnectionError, OSError) as error:
        ending = str(error)
    seconds = time.monotonic() - started
    resumer.close()
    return {"replayed": got, "of": messages, "replay_s": seconds, "attacker_end": ending}


async def _canary(host: str, port: int, stop: asyncio.Event, round_trips: list[float]) -> None:
    """Publish with an id, wait for its ack, again, until ``stop``."""
    client = await asyncio.to_thread(BlockingClient, host, port, "canary")
    await asyncio.to_thread(client.send_json, {"type": "join", "room": "canary"})
    await asyncio.to_thread(client.until, type="joined")

    def one(n: int) -> float:
        start = time.monotonic()
        client.send_json({"type": "publish", "room": "canary", "data": n, "id": n})
        client.until(type="ack", id=n)
        return time.monotonic() - start

    try:
        for n in range(1_000_000):  # bounded; stopped long before
            if stop.is_set():
                break
            round_trips.append(await asyncio.to_thread(one, n))
            await asyncio.sleep(0.01)
    finally:
        client.close()


async def _peak_rss(pid: int, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], rss_bytes(pid))
        except OSError:
            return
        await asyncio.sleep(0.02)


async def abuse(env: Env, kind: ServerKind, label: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one attack (``params["attack"]``) with a canary; see the module docstring."""
    if kind.name != "ours":
        return {"note": "ours only (the baseline has no history, limits or pacing)"}
    attack = params["attack"]
    async with running_server(env, kind, params.get("server_args")) as server:
        stop = asyncio.Event()
        round_trips: list[float] = []
        canary = asyncio.create_task(_canary(server.host, server.port, stop, round_trips))
        while not round_trips and not canary.done():
            await asyncio.sleep(0.01)
        before = rss_bytes(server.pid)
        peak = [before]
        sampler = asyncio.create_task(_peak_rss(server.pid, stop, peak))
        env.progress.update(f"[{label} {kind.name}] {attack}")
        if attack == "ping-flood":
            result = await asyncio.to_thread(
                ping_flood, server.host, server.port, params["batches"]
            )
        else:
            result = await asyncio.to_thread(
                big_resume, server.host, server.port, params["messages"], params["size"]
            )
        for _ in range(500):  # up to 10 s for the attacker's connection to go
            health = await healthz(server)
            if health.get("connections") == 1:
                break
            await asyncio.sleep(0.02)
        after = rss_bytes(server.pid)
        stop.set()
        await asyncio.gather(canary, sampler)
    env.progress.done()
    trips = sorted(t * 1000 for t in round_trips)
    return {
        **result,
        "server_rss_before_mb": before / MB,
        "server_rss_peak_growth_mb": (peak[0] - before) / MB,
        "server_rss_after_growth_mb": (after - before) / MB,
        "canary_round_trips": len(trips),
        "canary_p50_ms": percentile(trips, 50),
        "canary_p99_ms": percentile(trips, 99),
        "canary_max_ms": trips[-1] if trips else None,
        "slow_consumers_dropped": health.get("slow_consumers_dropped"),
        "closed_for_ping_rate": health.get("closed_for_ping_rate"),
    }
