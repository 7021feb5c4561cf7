"""Scale-out scenarios: nodes sharing a real redis-server, each run side by side
with one node on the memory broker in the same benchmark run.

* ``cluster-fanout``: N subscribers split over 2 nodes, one publisher on the
  first; server CPU per delivery summed over the nodes, Redis's CPU per message.
* ``cluster-publish``: one node publishing through Redis to a 10-member room
  as fast as its ack window allows; messages/s and CPU per message.
* ``join-storm``: N clients connect and join one room; seconds until all joined.
* ``cluster-latency``: a paced publisher on the first node, subscribers split
  over two nodes vs all on one; delivery latency on each node (what the
  publishing node's stream hold, `hub.redis_broker._Hold`, costs in time).

Every wait is bounded; servers, Redis and workers are stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bench.pool import WorkerPool
from bench.procstat import cpu_seconds
from bench.publisher import connect_publisher, publish
from bench.scenarios import Env, make_configs, ramp_tick, running_server, wait_quiet
from bench.servers import OURS, ServerProcess, free_port
from bench.stats import latency_summary_ms, merge_latencies

ONE_NODE = "one node, memory broker"
TWO_NODES = "two nodes, Redis broker"


@asynccontextmanager
async def redis_server(host: str = "127.0.0.1") -> AsyncIterator[tuple[str, int]]:
    """A throw-away redis-server (no persistence); yields (url, pid)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing (apt-get install redis-server)")
    port = free_port(host)
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]
        + ["--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host, port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                await asyncio.sleep(0.05)
        yield f"redis://{host}:{port}/0", proc.pid
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@asynccontextmanager
async def cluster(env: Env, nodes: int, broker: str | None) -> AsyncIterator[list[ServerProcess]]:
    """``nodes`` of our server, on ``broker`` (None: the memory broker)."""
    extra = [f"--broker={broker}"] if broker else []
    ours = OURS if env.ours_root is None else dataclasses.replace(OURS, root=env.ours_root)
    async with running_server(env, ours, extra) as first:
        if nodes == 1:
            yield [first]
            return
        async with running_server(env, ours, extra) as second:
            yield [first, second]


def split_configs(env: Env, servers: list[ServerProcess], n: int, **kw: Any) -> list[Any]:
    """Subscriber worker configs for ``n`` clients spread evenly over ``servers``."""
    configs = []
    for index, server in enumerate(servers):
        share = n // len(servers) + (1 if index < n % len(servers) else 0)
        configs += make_configs(env, server, "subscribe", share, **kw)
    return [dataclasses.replace(c, index=i) for i, c in enumerate(configs)]


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


class CpuMeter:
    """CPU seconds the servers (summed) and Redis used since it was made."""

    def __init__(self, servers: list[ServerProcess], redis_pid: int | None) -> None:
        self.pids = [s.pid for s in servers]
        self.redis_pid = redis_pid
        self.servers0 = cpu_of(self.pids)
        self.redis0 = cpu_seconds(redis_pid) if redis_pid else 0.0

    def read(self) -> tuple[float, float | None]:
        """(server CPU s, Redis CPU s or None without Redis)."""
        redis = cpu_seconds(self.redis_pid) - self.redis0 if self.redis_pid else None
        return cpu_of(self.pids) - self.servers0, redis


@asynccontextmanager
async def joined(
    env: Env, label: str, servers: list[ServerProcess], clients: int, room: str, probe_every: int
) -> AsyncIterator[WorkerPool]:
    """``clients`` subscribers spread over ``servers``, all joined to ``room``."""
    pool = WorkerPool(split_configs(env, servers, clients, room=room, probe_every=probe_every))
    try:
        await pool.wait_for("ready", 600, ramp_tick(env, label, pool, clients))
        yield pool
        await pool.stop()
    finally:
        pool.close()


async def _fanout_once(
    env: Env,
    label: str,
    nodes: int,
    broker: str | None,
    redis_pid: int | None,
    p: dict[str, Any],
    first_subscribed: int = 0,
) -> dict[str, Any]:
    """Subscribers on ``servers[first_subscribed:]``, the publisher on the first."""
    subscribers, room = p["subscribers"], "bench-room"
    async with cluster(env, nodes, broker) as servers:
        t_ramp = time.monotonic()
        targets = servers[first_subscribed:]
        async with joined(env, label, targets, subscribers, room, subscribers // 100) as pool:
            ramp_s = time.monotonic() - t_ramp
            pub = await connect_publisher(servers[0].host, servers[0].port, room)
            for server in servers:
                await wait_quiet(server.pid)
            base = pool.total("received")
            per_node0 = [cpu_seconds(s.pid) for s in servers]
            meter = CpuMeter(servers, redis_pid)
            t0 = time.monotonic()
            res = await publish(pub, p["messages"], p.get("size", 100), p.get("window", 32))
            expected = subscribers * res.sent
            deadline = time.monotonic() + 30
            while pool.total("received") - base < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            wall = time.monotonic() - t0
            received = pool.total("received") - base
            server_cpu, redis_cpu = meter.read()
            per_node = [cpu_seconds(s.pid) - c for s, c in zip(servers, per_node0, strict=True)]
            pub.close()
    env.progress.done()
    return {
        "nodes": nodes,
        "subscribers": subscribers,
        "server_cpu_us_per_delivery_by_node": [
            round(cpu * 1e6 / received, 3) if received else None for cpu in per_node
        ],
        "messages_sent": res.sent,
        "received": received,
        "lost": expected - received,
        "deliveries_per_s": received / max(wall, 1e-9),
        "server_cpu_us_per_delivery": server_cpu * 1e6 / received if received else None,
        "redis_cpu_us_per_message": redis_cpu * 1e6 / res.sent
        if redis_cpu is not None and res.sent
        else None,
        "ramp_s": ramp_s,
    }


async def cluster_fanout(env: Env, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One node on the memory broker, then two nodes on Redis, same load; then
    two nodes with every subscriber on the second: the Redis path's own cost
    per delivery, without two nodes sending at once on shared cores."""
    single = await _fanout_once(env, f"cluster-fanout {ONE_NODE}", 1, None, None, p)
    async with redis_server(env.host) as (url, pid):
        double = await _fanout_once(env, f"cluster-fanout {TWO_NODES}", 2, url, pid, p)
        remote = await _fanout_once(
            env, "cluster-fanout all subscribers on node 2", 2, url, pid, p, first_subscribed=1
        )
    double["remote_cpu_us_per_delivery"] = remote["server_cpu_us_per_delivery"]
    return {"ours": double, "baseline": single}


async def _publish_once(
    env: Env, label: str, broker: str | None, redis_pid: int | None, p: dict[str, Any]
) -> dict[str, Any]:
    members, room = p["members"], "bench-small"
    async with (
        cluster(env, 1, broker) as servers,
        joined(env, label, servers, members, room, 0),
    ):
        pub = await connect_publisher(servers[0].host, servers[0].port, room)
        await wait_quiet(servers[0].pid)
        env.progress.update(f"[{label}] publishing {p['messages']:,} messages")
        meter = CpuMeter(servers, redis_pid)
        t0 = time.monotonic()
        res = await publish(pub, p["messages"], p.get("size", 100), p.get("window", 256))
        wall = time.monotonic() - t0
        server_cpu, redis_cpu = meter.read()
        pub.close()
    env.progress.done()
    return {
        "members": members,
        "messages_sent": res.sent,
        "acked": res.acked,
        "messages_per_s": res.acked / max(wall, 1e-9),
        "server_cpu_us_per_message": server_cpu * 1e6 / res.acked if res.acked else None,
        "redis_cpu_us_per_message": redis_cpu * 1e6 / res.acked
        if redis_cpu is not None and res.acked
        else None,
    }


async def cluster_publish(env: Env, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    single = await _publish_once(env, f"cluster-publish {ONE_NODE}", None, None, p)
    async with redis_server(env.host) as (url, pid):
        through = await _publish_once(env, "cluster-publish one node, Redis broker", url, pid, p)
    return {"ours": through, "baseline": single}


STORM_CONCURRENCY = 128
"""Connection attempts each load-generator process keeps in flight in a join storm:
a storm is everyone at once, and at 48 the server idled between small batches
(server + load-generator CPU per join 8-30 % higher in runs here, see
docs/performance.md)."""


async def _storm_once(
    env: Env, label: str, nodes: int, broker: str | None, p: dict[str, Any]
) -> dict[str, Any]:
    clients = p["clients"]
    async with cluster(env, nodes, broker) as servers:
        t_start = time.monotonic()
        concurrency = p.get("concurrency", STORM_CONCURRENCY)
        configs = split_configs(
            env, servers, clients, room="storm", concurrency=concurrency, start_on_go=True
        )
        pool = WorkerPool(configs)
        try:
            # The clock starts once the load generator's processes are up: their
            # interpreter start-up (0.25-0.6 s here) is no part of connecting.
            armed = await pool.wait_for("armed", 120)
            started_s = time.monotonic() - t_start
            meter = CpuMeter(servers, None)
            t0 = time.monotonic()
            pool.send_all("go")
            ready = await pool.wait_for("ready", 600, ramp_tick(env, label, pool, clients))
            seconds = time.monotonic() - t0
            server_cpu, _ = meter.read()
            loadgen_cpu = sum(r["cpu_s"] for r in ready) - sum(a["cpu_s"] for a in armed)
            failed = pool.total("failed", "ready")
            health = await asyncio.to_thread(servers[0].healthz, 30.0)
            await pool.stop()
        finally:
            pool.close()
    env.progress.done()
    return {
        "nodes": nodes,
        "clients": clients,
        "join_storm_s": seconds,
        "joins_per_s": clients / max(seconds, 1e-9),
        "server_cpu_us_per_join": server_cpu * 1e6 / clients,
        "loadgen_cpu_us_per_join": loadgen_cpu * 1e6 / clients,
        "loadgen_start_s": started_s,
        "failed": failed,
        "memberships_on_node_1": health.get("memberships"),
        "direct_upgrades_on_node_1": health.get("direct_upgrades"),
    }


async def join_storm(env: Env, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    single = await _storm_once(env, f"join-storm {ONE_NODE}", 1, None, p)
    async with redis_server(env.host) as (url, _pid):
        double = await _storm_once(env, f"join-storm {TWO_NODES}", 2, url, p)
    return {"ours": double, "baseline": single}


LATENCY_PROBE_EVERY = 10
"""Every tenth subscriber of ``cluster-latency`` times each delivery."""


async def _latency_once(
    env: Env, label: str, nodes: int, broker: str | None, p: dict[str, Any]
) -> dict[str, Any]:
    subscribers, room = p["subscribers"], "bench-latency"
    messages = int(p["rate"] * p["seconds"])
    async with (
        cluster(env, nodes, broker) as servers,
        joined(env, label, servers, subscribers, room, LATENCY_PROBE_EVERY) as pool,
    ):
        pub = await connect_publisher(servers[0].host, servers[0].port, room)
        for server in servers:
            await wait_quiet(server.pid)
        await pool.request("collect", "collect")  # empties the latency buffers
        base = pool.total("received")
        env.progress.update(f"[{label}] {messages} messages at {p['rate']}/s")
        res = await publish(
            pub, messages, p.get("size", 100), p.get("window", 32), p["rate"], p["seconds"] + 10
        )
        expected = subscribers * res.sent
        deadline = time.monotonic() + 10
        while pool.total("received") - base < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        received = pool.total("received") - base
        after = await pool.request("collect", "collect")
        pub.close()
        # Workers report in the order of their configs, each connected to one node.
        chunks = [
            [r for r, c in zip(after, pool.configs, strict=True) if c.port == server.port]
            for server in servers
        ]
    env.progress.done()
    overall = latency_summary_ms(merge_latencies(r["latencies_us"] for r in after))
    by_node = [latency_summary_ms(merge_latencies(r["latencies_us"] for r in c)) for c in chunks]
    return {
        "nodes": nodes,
        "subscribers": subscribers,
        "messages_sent": res.sent,
        "lost": expected - received,
        "latency_samples": overall["samples"],
        "latency_p50_ms": overall["p50_ms"],
        "latency_p99_ms": overall["p99_ms"],
        "latency_max_ms": overall["max_ms"],
        "latency_p50_ms_by_node": [_ms(n["p50_ms"]) for n in by_node],
        "latency_p99_ms_by_node": [_ms(n["p99_ms"]) for n in by_node],
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def cluster_latency(env: Env, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    single = await _latency_once(env, f"cluster-latency {ONE_NODE}", 1, None, p)
    async with redis_server(env.host) as (url, _pid):
        double = await _latency_once(env, f"cluster-latency {TWO_NODES}", 2, url, p)
    return {"ours": double, "baseline": single}


SCENARIOS = {
    "cluster-latency": cluster_latency,
    "cluster-fanout": cluster_fanout,
    "cluster-publish": cluster_publish,
    "join-storm": join_storm,
}


def available() -> str | None:
    """Why the cluster scenarios cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is missing (apt-get install redis-server)"
    if not os.path.exists(OURS.root / "server.py"):
        return "server.py not found"
    return None
