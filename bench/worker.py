"""Load-generator worker process: holds up to ~18k client connections.

The parent talks to each worker over a multiprocessing pipe. A worker opens its
share of connections (from several 127.0.0.x source addresses), reports
progress every 100 ms, and on request reports its own CPU time and final
counters. Every wait is bounded by ``deadline_s`` so an orphaned worker always
exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench import wsframe
from bench.clientproto import ClientStats, HandshakeClient, HubClient
from bench.procstat import raise_nofile_limit, self_cpu_seconds
from bench.tls import client_context

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@dataclass
class WorkerConfig:
    """What one worker process should do (picklable)."""

    index: int
    host: str
    port: int
    mode: str  # "subscribe" | "idle" | "handshake"
    count: int  # connections (or handshakes)
    sources: list[str]
    room: str | None = None
    name_prefix: str = "sub"
    probe_every: int = 0  # every k-th connection measures latency; 0 = none
    stuck: int = 0  # this many connections stop reading after joining
    concurrency: int = 48  # connection attempts in flight
    start_on_go: bool = False  # start up, report "armed", connect only on "go"
    connect_timeout: float = 20.0
    deadline_s: float = 600.0
    cpus: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cafile: str | None = None  # speak wss:// trusting this CA (bench.tls)

    def tls_options(self) -> dict[str, Any]:
        """``create_connection`` arguments for TLS (none for plain ws://)."""
        if self.cafile is None:
            return {}
        return {"ssl": client_context(self.cafile), "server_hostname": self.host}


def _make_socket(source: str, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Let connect() choose the port per 4-tuple instead of bind().
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.setblocking(False)
    return sock


class Worker:
    """Runs inside the worker process; see module docstring."""

    def __init__(self, conn: Connection, cfg: WorkerConfig) -> None:
        self.conn = conn
        self.cfg = cfg
        self.stats = ClientStats()
        self.clients: list[HubClient] = []
        self.commands: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.stop_event = asyncio.Event()
        self._sources = itertools.cycle(cfg.sources)
        self.hs_times: tuple[int, int] = (0, 0)
        self.hs_ok = 0

    def send(self, kind: str, payload: Any) -> None:
        try:
            self.conn.send((kind, payload))
        except (BrokenPipeError, OSError):
            self.stop_event.set()

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "connected": s.connected,
            "ready": s.ready,
            "received": s.received,
            "closed": s.closed,
            "failed": s.failed,
            "handshakes": self.hs_ok,
            "cpu_s": self_cpu_seconds(),
            "last_rx_ns": s.last_rx_ns,
            "now_ns": time.monotonic_ns(),
        }

    # -- plumbing ----------------------------------------------------------
    def _on_pipe(self) -> None:
        while self.conn.poll():
            try:
                self.commands.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                self.commands.put_nowait(("stop", None))
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
                return

    async def _progress(self) -> None:
        while not self.stop_event.is_set():
            self.send("progress", self.snapshot())
            await asyncio.sleep(0.05)

    # -- connection setup ----------------------------------------------------
    async def _open_one(self, i: int, sem: asyncio.Semaphore) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        name = f"{cfg.name_prefix}{cfg.index}-{i}"
        path = f"/ws?name={name}"
        stuck = i < cfg.stuck
        probe = bool(cfg.probe_every) and not stuck and i % cfg.probe_every == 0
        request = wsframe.upgrade_request(cfg.host, cfg.port, path)
        async with sem:
            sock = None
            try:
                sock = _make_socket(next(self._sources), 4096 if stuck else None)
                async with asyncio.timeout(cfg.connect_timeout):
                    await loop.sock_connect(sock, (cfg.host, cfg.port))
                    _, proto = await loop.create_connection(
                        lambda: HubClient(request, cfg.room, self.stats, probe, stuck),
                        sock=sock,
                        **cfg.tls_options(),
                    )
                    sock = None  # owned by the transport now
                    self.clients.append(proto)
                    await proto.ready
            except (OSError, TimeoutError, ConnectionError) as exc:
                if sock is not None:
                    sock.close()
                self.stats.failed += 1
                self.stats.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1

    async def open_all(self) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        await asyncio.gather(*(self._open_one(i, sem) for i in range(self.cfg.count)))

    # -- handshake storm -----------------------------------------------------
    async def _handshake(self, i: int, sem: asyncio.Semaphore) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        request = wsframe.upgrade_request(cfg.host, cfg.port, f"/ws?name=hs{cfg.index}-{i}")
        async with sem:
            sock = None
            try:
                sock = _make_socket(next(self._sources))
                async with asyncio.timeout(cfg.connect_timeout):
                    await loop.sock_connect(sock, (cfg.host, cfg.port))
                    _, proto = await loop.create_connection(
                        lambda: HandshakeClient(request), sock=sock, **cfg.tls_options()
                    )
                    sock = None
                    await proto.done
                self.hs_ok += 1
            except (OSError, TimeoutError, ConnectionError) as exc:
                if sock is not None:
                    sock.close()
                self.stats.failed += 1
                self.stats.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1

    async def handshake_storm(self) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        start = time.monotonic_ns()
        await asyncio.gather(*(self._handshake(i, sem) for i in range(self.cfg.count)))
        self.hs_times = (start, time.monotonic_ns())

    async def _armed(self, deadline: float) -> bool:
        """Say "armed" and wait for "go" (True) or "stop" (False): a timed storm
        then starts from processes already running, not from their start-up."""
        self.send("armed", self.snapshot())
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                cmd, _ = await asyncio.wait_for(self.commands.get(), remaining)
            except TimeoutError:
                break
            if cmd == "go":
                return True
            if cmd == "stop":
                break
        return False

    # -- main ----------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        """Snapshot plus the latencies measured since the last collect (then cleared)."""
        out = self.snapshot()
        out.update(
            close_codes=dict(self.stats.close_codes),
            errors=dict(self.stats.errors.most_common(10)),
            latencies_us=self.stats.latencies_us.tobytes(),
            closed_normal=sum(1 for c in self.clients if c.lost and not c.stuck),
        )
        del self.stats.latencies_us[:]
        return out

    def set_rcvlowat(self, nbytes: int) -> int:
        """Counting connections wake up only once about ``nbytes`` wait (1 = any byte).

        Used in steady cases: a counting subscriber then reads a few messages
        per wake-up instead of one, which cuts the load generator's CPU per
        delivery (it shares the machine with the server), while probes still
        read, and time, every frame as it arrives. The server's work does not
        change: it sends each frame to each subscriber when it comes, and the
        few KB waiting per socket are far below its receive buffer.
        Thresholds are spread from 1 to 2 times ``nbytes`` so that the
        wake-ups do not all fall on the same message.
        Returns the number of sockets changed.
        """
        changed = 0
        for client in self.clients:
            if client.probe or client.stuck or client.lost or client.transport is None:
                continue
            sock = client.transport.get_extra_info("socket")
            if sock is not None:
                lowat = nbytes + nbytes * (changed % 8) // 8 if nbytes > 1 else 1
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
                    changed += 1
        return changed

    def result(self) -> dict[str, Any]:
        s = self.stats
        out = self.snapshot()
        out.update(
            close_codes=dict(s.close_codes),
            errors=dict(s.errors.most_common(10)),
            latencies_us=s.latencies_us.tobytes(),
            hs_start_ns=self.hs_times[0],
            hs_end_ns=self.hs_times[1],
            per_client_received=[c.received for c in self.clients if not c.stuck],
            closed_normal=sum(1 for c in self.clients if c.lost and not c.stuck),
        )
        return out

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        # uvloop made the pipe non-blocking; large results need blocking sends.
        os.set_blocking(self.conn.fileno(), True)
        progress = asyncio.create_task(self._progress())
        deadline = time.monotonic() + self.cfg.deadline_s
        try:
            if self.cfg.mode in ("subscribe", "idle"):
                if self.cfg.start_on_go and not await self._armed(deadline):
                    return
                await self.open_all()
                self.send("ready", self.snapshot())
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    cmd, arg = await asyncio.wait_for(self.commands.get(), remaining)
                except TimeoutError:
                    break
                if cmd == "mark":
                    self.send("mark", self.snapshot())
                elif cmd == "collect":
                    self.send("collect", self.collect())
                elif cmd == "rcvlowat":
                    self.send("rcvlowat", {"sockets": self.set_rcvlowat(int(arg))})
                elif cmd == "go" and self.cfg.mode == "handshake":
                    await self.handshake_storm()
                    self.send("done", self.snapshot())
                elif cmd == "stop":
                    break
        finally:
            self.send("result", self.result())
            self.stop_event.set()
            progress.cancel()
            for c in self.clients:
                c.close()
            await asyncio.sleep(0.2)


def worker_main(conn: Connection, cfg: WorkerConfig) -> None:
    """Process entry point (must be importable for the spawn start method)."""
    raise_nofile_limit()
    if cfg.cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(cfg.cpus))
    try:
        import uvloop

        uvloop.run(Worker(conn, cfg).run())
    except ImportError:
        asyncio.run(Worker(conn, cfg).run())
