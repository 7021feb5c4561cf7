"""Abuse scenarios: ``python -m bench.abuse_http [SCENARIO ...] [--dirs A,B] [--json PATH]``.

Each scenario starts a fresh server, runs a well-behaved canary client that
publishes to its own room and reads its messages back throughout, applies one
kind of abuse, and reports what it cost: server peak RSS, RSS and descriptors
after the abuse ended, and the canary's round-trip percentiles. With
``--dirs`` the same scenario runs against several checkouts one after the
other (an A/B of main and a branch), and the table puts them side by side.

Scenarios (register new ones in `SCENARIOS`):

* ``slow-requests``: one address opens ``--connections`` sockets, each with
  complete headers announcing a 60,000-byte body that never comes (half
  ``POST /healthz``, half WebSocket upgrades), and keeps them for ``--hold``
  seconds, longer than the server's default body timeout.
* ``slow-requests-fd-limit``: the same from ten addresses, 2,500 sockets, against
  a server whose open-file limit is 2,048 (``prlimit``): what happens when the
  descriptors run out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, raise_nofile_limit, rss_bytes
from bench.servers import OURS, ServerProcess, start_server
from bench.stats import percentile
from bench.wsframe import (
    OP_TEXT,
    FrameSplitter,
    check_upgrade_response,
    encode_frame,
    upgrade_request,
)

MB = 1024 * 1024
CANARY_INTERVAL = 0.02
"""Seconds between the canary's publishes: 50 round trips a second."""
ATTACKER = "127.0.0.2"


class Canary:
    """One /ws client in its own room: publish, wait for the message, repeat."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.round_trips: list[float] = []
        self.failures = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(upgrade_request(self.host, self.port, "/ws?name=canary"))
        head = await reader.readuntil(b"\r\n\r\n")
        if (why := check_upgrade_response(head)) is not None:
            raise RuntimeError(f"canary refused: {why}")
        splitter = FrameSplitter()
        writer.write(encode_frame(OP_TEXT, b'{"type":"join","room":"canary"}'))
        count = 0
        while not self.stopping.is_set():
            count += 1
            sent = time.monotonic()
            body = {"type": "publish", "room": "canary", "data": count}
            writer.write(encode_frame(OP_TEXT, json.dumps(body).encode()))
            try:
                async with asyncio.timeout(10):
                    await self._until_data(reader, splitter, count)
                self.round_trips.append(time.monotonic() - sent)
            except TimeoutError:
                self.failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), CANARY_INTERVAL)
        writer.close()

    async def _until_data(self, reader: Any, splitter: FrameSplitter, count: int) -> None:
        marker = f'"data":{count},'.encode()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError("canary closed by the server")
            for opcode, payload in splitter.feed(chunk):
                if opcode == OP_TEXT and b'"type":"message"' in payload and marker in payload:
                    return

    def summary(self) -> dict[str, Any]:
        values = sorted(self.round_trips)
        ms = [v * 1000 for v in values]
        return {
            "canary_round_trips": len(values),
            "canary_timeouts": self.failures,
            "canary_p50_ms": percentile(ms, 50),
            "canary_p99_ms": percentile(ms, 99),
            "canary_max_ms": ms[-1] if ms else None,
        }


class Footprint:
    """Samples the server's RSS and descriptors while the abuse runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = rss_bytes(pid)
        self.peak_fds = self.fds()

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def sample(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
            self.peak_fds = max(self.peak_fds, self.fds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.1)


def unfinished_request(host: str, port: int, i: int) -> bytes:
    if i % 2:
        head = upgrade_request(host, port, "/ws?name=slow").rstrip(b"\r\n")
        return head + b"\r\nContent-Length: 60000\r\n\r\n"
    return (
        f"POST /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 60000\r\n\r\n".encode()
    )


async def flood_slow_requests(
    server: ServerProcess, connections: int, sources: int, hold: float
) -> dict[str, Any]:
    """Open the unfinished requests from ``sources`` addresses, hold them, then
    count how the server dealt with them."""
    loop = asyncio.get_running_loop()
    addresses = [f"127.0.0.{2 + i}" for i in range(sources)]
    in_flight = asyncio.Semaphore(200)

    async def open_one(i: int) -> socket.socket | None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((addresses[i % sources], 0))
        async with in_flight:
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (server.host, server.port)), 2)
                await loop.sock_sendall(sock, unfinished_request(server.host, server.port, i))
            except (OSError, TimeoutError):
                sock.close()
                return None
        return sock

    opened = await asyncio.gather(*(open_one(i) for i in range(connections)))
    socks = [sock for sock in opened if sock is not None]
    await asyncio.sleep(hold)  # the abuse is holding sockets open: hold them
    answered_503 = cut = still_open = 0
    for sock in socks:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            still_open += 1
            continue
        except OSError:
            data = b""
        if data.startswith(b"HTTP/1.1 503"):
            answered_503 += 1
        else:
            cut += 1
    for sock in socks:
        sock.close()
    return {
        "flood_connections": connections,
        "connect_failed": connections - len(socks),
        "answered_503": answered_503,
        "cut_by_server": cut,
        "still_open_after_hold": still_open,
    }


async def slow_requests(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    return await flood_slow_requests(server, args.connections, 1, args.hold)


FD_LIMIT = 2048
"""Open-file limit of the server in ``slow-requests-fd-limit`` (the issue's)."""


async def slow_requests_fd_limit(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    return await flood_slow_requests(server, FD_LIMIT + 452, 10, args.hold)


@dataclass(frozen=True)
class AbuseScenario:
    run: Callable[[ServerProcess, argparse.Namespace], Awaitable[dict[str, Any]]]
    nofile: int | None = None
    """Run the server under ``prlimit --nofile=N:N``."""


SCENARIOS: dict[str, AbuseScenario] = {
    "slow-requests": AbuseScenario(slow_requests),
    "slow-requests-fd-limit": AbuseScenario(slow_requests_fd_limit, nofile=FD_LIMIT),
}


async def run_one(name: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    kind = dataclasses.replace(OURS, root=root)
    if scenario.nofile is not None:
        limit = f"--nofile={scenario.nofile}:{scenario.nofile}"
        kind = dataclasses.replace(kind, argv=("prlimit", limit, *kind.argv))
    server = await asyncio.to_thread(start_server, kind)
    try:
        rss_before = rss_bytes(server.pid)
        cpu_before = cpu_seconds(server.pid)
        log_before = os.path.getsize(server.log_path)
        footprint = Footprint(server.pid)
        fds_before = footprint.peak_fds
        canary = Canary(server.host, server.port)
        stopping = asyncio.Event()
        canary_task = asyncio.create_task(canary.run())
        sampler = asyncio.create_task(footprint.sample(stopping))
        await asyncio.sleep(1.0)  # the canary's undisturbed round trips first
        result = await scenario.run(server, args)
        await asyncio.sleep(args.settle)  # the server lets go of what it held
        canary.stopping.set()
        stopping.set()
        await asyncio.gather(canary_task, sampler)
        return {
            "scenario": name,
            "checkout": str(root),
            **result,
            "rss_before_mb": round(rss_before / MB, 1),
            "peak_rss_mb": round(footprint.peak_rss / MB, 1),
            "rss_after_mb": round(rss_bytes(server.pid) / MB, 1),
            "fds_before": fds_before,
            "peak_fds": footprint.peak_fds,
            "fds_after": footprint.fds(),
            "server_cpu_s": round(cpu_seconds(server.pid) - cpu_before, 2),
            "log_kb": round((os.path.getsize(server.log_path) - log_before) / 1024, 1),
            **canary.summary(),
        }
    finally:
        await asyncio.to_thread(server.stop)


def render(results: list[dict[str, Any]]) -> str:
    """A Markdown table, one column per run."""
    keys = [k for k in results[0] if k not in ("scenario", "checkout")]
    head = "| measure | " + " | ".join(Path(r["checkout"]).name for r in results) + " |"
    lines = [f"### {results[0]['scenario']}", "", head, "|---|" + "---:|" * len(results)]
    for key in keys:
        values = [r.get(key) for r in results]
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in values]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.abuse_http", description=__doc__)
    p.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=", ".join(SCENARIOS))
    p.add_argument("--dirs", default=".", help="comma list of checkouts to run, side by side")
    p.add_argument("--connections", type=int, default=2000, help="slow-requests: sockets opened")
    p.add_argument("--hold", type=float, default=15.0, help="slow-requests: seconds they are held")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the abuse before RSS")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile_limit()
    roots = [Path(d).resolve() for d in args.dirs.split(",")]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(SCENARIOS)}")
    everything = []
    for name in args.scenarios:
        results = [asyncio.run(run_one(name, root, args)) for root in roots]
        print(render(results) + "\n")
        everything.extend(results)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
