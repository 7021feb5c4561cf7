"""Abuse scenarios about memory (issue 11, findings 3 and 6): what one client's
churn of compressed connections, or its filling of many rooms' histories,
costs the server while a well-behaved canary keeps publishing and reading.

Each reports peak RSS, RSS after the abuse, and the canary's round-trip p99.
They run against our server only (the textbook baseline has neither
compression nor history); compare checkouts with ``--ours-dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import zlib
from array import array
from typing import Any

from bench import wsframe
from bench.procstat import cpu_seconds, rss_bytes
from bench.scenarios import MB, Env, RssSampler, healthz, running_server, wait_quiet
from bench.servers import ServerKind, ServerProcess
from bench.stats import latency_summary_ms

DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
RSV1 = 0x40


class Client:
    """One asyncio-streams WebSocket connection, enough to talk JSON to the hub."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.splitter = wsframe.FrameSplitter()
        self.frames: list[tuple[int, bytes]] = []

    @classmethod
    async def open(cls, host: str, port: int, path: str, compressed: bool = False) -> Client:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = wsframe.upgrade_request(host, port, path)
        if compressed:
            request = request[:-2] + DEFLATE_OFFER + b"\r\n"
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        problem = wsframe.check_upgrade_response(head)
        if problem:
            writer.close()
            raise ConnectionError(problem)
        return cls(reader, writer)

    def send_json(self, message: dict[str, Any], compressed: bool = False) -> None:
        payload = json.dumps(message).encode()
        if compressed:
            self.writer.write(wsframe.encode_frame(wsframe.OP_TEXT | RSV1, deflate(payload)))
        else:
            self.writer.write(wsframe.encode_frame(wsframe.OP_TEXT, payload))

    async def frame(self) -> tuple[int, bytes]:
        while not self.frames:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.frames.extend(self.splitter.feed(data))
        return self.frames.pop(0)

    async def until(self, test: Any) -> dict[str, Any]:
        """The first JSON message for which ``test(message)`` is true."""
        while True:
            opcode, payload = await self.frame()
            if opcode == wsframe.OP_CLOSE:
                raise ConnectionError(f"closed: {payload[:2].hex()}")
            if opcode == wsframe.OP_TEXT:
                message = json.loads(payload)
                if test(message):
                    return message

    def end(self, reset: bool) -> None:
        """RST (``reset``) or FIN, without a closing handshake, as the issue's attacker."""
        if reset:
            sock = self.writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        else:
            self.writer.close()


def deflate(data: bytes) -> bytes:
    """One message compressed RFC 7692 style, no context kept."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


class Canary:
    """Publishes to its own room every ``interval`` s and times each round trip."""

    def __init__(self, client: Client, interval: float = 0.02) -> None:
        self.client = client
        self.interval = interval
        self.round_trips_us = array("q")
        self.failure: str | None = None
        self._task = asyncio.create_task(self._run())

    @classmethod
    async def start(cls, host: str, port: int) -> Canary:
        client = await Client.open(host, port, "/ws?name=canary")
        client.send_json({"type": "join", "room": "canary"})
        await client.until(lambda m: m["type"] == "joined")
        return cls(client)

    async def _run(self) -> None:
        n = 0
        try:
            while True:
                n += 1
                started = time.monotonic_ns()
                self.client.send_json({"type": "publish", "room": "canary", "data": n})
                async with asyncio.timeout(30):
                    await self.client.until(lambda m, n=n: m.get("data") == n)
                self.round_trips_us.append((time.monotonic_ns() - started) // 1000)
                await asyncio.sleep(self.interval)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
            self.failure = f"{type(error).__name__}: {error}"

    async def stop(self) -> dict[str, Any]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.client.end(reset=False)
        summary = latency_summary_ms(self.round_trips_us)
        return {
            "canary_round_trips": summary["samples"],
            "canary_p99_ms": summary["p99_ms"],
            "canary_max_ms": summary["max_ms"],
            "canary_failure": self.failure,
        }


async def _settled(
    server: ServerProcess, sampler: RssSampler, canary: Canary
) -> tuple[int, int, dict[str, Any], dict[str, Any]]:
    """Once the abuser is gone and the server idle: peak RSS, RSS now, /healthz, canary."""
    await asyncio.sleep(1.0)
    await wait_quiet(server.pid)
    peak, rss_after = sampler.stop(), rss_bytes(server.pid)
    health = await healthz(server)
    return peak, rss_after, health, await canary.stop()


async def _compressed_cycle(host: str, port: int, cycle: int) -> Client:
    """Connect offering permessage-deflate and make both zlib directions work once."""
    if cycle % 2:
        client = await Client.open(host, port, "/ws/echo", compressed=True)
        client.writer.write(wsframe.encode_frame(wsframe.OP_TEXT | RSV1, deflate(b"echo " * 80)))
        await client.frame()
        return client
    client = await Client.open(host, port, "/ws?name=churn", compressed=True)
    room = f"churn-{cycle % 7}"
    client.send_json({"type": "join", "room": room}, compressed=True)
    request = {"type": "publish", "room": room, "data": "squeeze me " * 40, "id": cycle}
    client.send_json(request, compressed=True)
    await client.until(lambda m: m.get("id") == cycle)
    return client


async def compressed_churn(
    env: Env, kind: ServerKind, label: str, cycles: int, live: int, concurrency: int = 8
) -> dict[str, Any]:
    """``cycles`` compressed connect-talk-close cycles (FIN and RST alternating),
    then ``live`` compressed connections held at once: what each costs."""
    async with running_server(env, kind, ["--compression"]) as server:
        host, port = server.host, server.port
        await wait_quiet(server.pid)
        canary = await Canary.start(host, port)
        rss0, cpu0, t0 = rss_bytes(server.pid), cpu_seconds(server.pid), time.monotonic()
        sampler = RssSampler(server.pid)
        failed = 0

        async def churner(first: int) -> None:
            nonlocal failed
            for cycle in range(first, cycles, concurrency):
                try:
                    async with asyncio.timeout(30):
                        client = await _compressed_cycle(host, port, cycle)
                    client.end(reset=cycle % 4 >= 2)
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    failed += 1
                if cycle % 500 == 0:
                    env.progress.update(f"[{label} {kind.name}] cycle {cycle:,}/{cycles:,}")

        await asyncio.gather(*(churner(i) for i in range(concurrency)))
        churn_s, churn_cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
        await wait_quiet(server.pid)
        rss_churned = rss_bytes(server.pid)
        clients = [await _compressed_cycle(host, port, n) for n in range(live)]
        await wait_quiet(server.pid)
        rss_live = rss_bytes(server.pid)
        for n, client in enumerate(clients):
            client.end(reset=n % 2 == 1)
        peak, rss_after, health, result = await _settled(server, sampler, canary)
    env.progress.done()
    return {
        "scenario": label,
        "server": kind.name,
        "cycles": cycles,
        "failed": failed,
        "cycles_per_s": cycles / churn_s,
        "server_cpu_us_per_cycle": churn_cpu * 1e6 / cycles,
        "server_rss_before_mb": rss0 / MB,
        "server_rss_peak_mb": peak / MB,
        "server_rss_after_churn_mb": rss_churned / MB,
        "kb_per_cycle_kept": (rss_churned - rss0) / 1024 / cycles,
        "kb_per_live_connection": (rss_live - rss_churned) / 1024 / live if live else None,
        "server_rss_after_mb": rss_after / MB,
        "connections_after": health.get("connections"),
        **result,
    }


async def history_fill(
    env: Env, kind: ServerKind, label: str, rooms: int, per_room: int, size: int
) -> dict[str, Any]:
    """One connection fills ``rooms`` histories with ``per_room`` messages of
    ``size`` bytes, each acked before the next, then leaves."""
    async with running_server(env, kind) as server:
        host, port = server.host, server.port
        await wait_quiet(server.pid)
        canary = await Canary.start(host, port)
        rss0, t0 = rss_bytes(server.pid), time.monotonic()
        sampler = RssSampler(server.pid)
        filler = await Client.open(host, port, "/ws?name=filler")
        payload = "x" * size
        for r in range(rooms):
            room = f"fill-{r}"
            filler.send_json({"type": "join", "room": room})
            await filler.until(lambda m: m["type"] == "joined")
            for n in range(per_room):
                filler.send_json({"type": "publish", "room": room, "data": payload, "id": n})
                await filler.until(lambda m, n=n: m.get("id") == n)
            env.progress.update(f"[{label} {kind.name}] room {r + 1}/{rooms}")
        fill_s = time.monotonic() - t0
        filler.end(reset=False)
        peak, rss_after, health, result = await _settled(server, sampler, canary)
    env.progress.done()
    held = health.get("history_bytes")
    return {
        "scenario": label,
        "server": kind.name,
        "offered_mb": rooms * per_room * size / MB,
        "fill_s": fill_s,
        "server_rss_before_mb": rss0 / MB,
        "server_rss_peak_mb": peak / MB,
        "server_rss_after_mb": rss_after / MB,
        "history_mb": held / MB if isinstance(held, int) else None,
        "history_rooms_evicted": health.get("history_rooms_evicted"),
        **result,
    }
