"""The benchmark scenarios: each starts a fresh server, loads it, measures.

Every scenario returns a flat dict of numbers (see ``report.py`` for how they
are shown). All waits are bounded; servers and workers are always stopped in
``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.addresses import source_addresses, split_evenly
from bench.pool import WorkerPool
from bench.procstat import cpu_seconds, machine_busy_seconds, rss_bytes, self_cpu_seconds
from bench.progress import Progress
from bench.publisher import connect_publisher, publish
from bench.servers import ServerKind, ServerProcess, start_server
from bench.stats import latency_summary_ms, merge_latencies
from bench.worker import WorkerConfig

MB = 1024 * 1024


@dataclass
class Env:
    """Settings shared by all scenarios of one benchmark run."""

    host: str = "127.0.0.1"
    server_cpu: int | None = None
    loadgen_cpus: list[int] | None = None
    workers: int | None = None  # None = automatic
    per_worker_max: int = 15000
    progress: Progress = field(default_factory=Progress)
    server_args: dict[str, list[str]] = field(default_factory=dict)
    profile_dir: str | None = None  # profile measured phases with cProfile
    perf_dir: str | None = None  # sample measured phases with `perf record` (kernel included)
    ours_root: Path | None = None  # --ours-dir: run our server from that checkout

    @property
    def loadgen_cores(self) -> int:
        return len(self.loadgen_cpus) if self.loadgen_cpus else (os.cpu_count() or 1)


# -- helpers -----------------------------------------------------------------


def plan_workers(env: Env, n: int) -> list[int]:
    """Split ``n`` connections over enough processes for the fd limit (and CPU)."""
    needed = -(-n // env.per_worker_max)
    wanted = env.workers or (2 if n >= 1000 else 1)
    return [c for c in split_evenly(n, max(needed, wanted, 1)) if c > 0]


def make_configs(
    env: Env, server: ServerProcess, mode: str, n: int, **kw: Any
) -> list[WorkerConfig]:
    """Worker configs for ``n`` connections; stuck/probe settings are spread evenly."""
    counts = plan_workers(env, n)
    sources = source_addresses(n, minimum=2)
    stuck = split_evenly(kw.pop("stuck", 0), len(counts))
    return [
        WorkerConfig(
            index=i,
            host=server.host,
            port=server.port,
            mode=mode,
            count=c,
            sources=sources[i % len(sources) :] + sources[: i % len(sources)],
            stuck=stuck[i],
            cpus=env.loadgen_cpus,
            cafile=server.cafile,
            **kw,
        )
        for i, c in enumerate(counts)
    ]


async def wait_quiet(pid: int, max_util: float = 0.05, timeout: float = 60.0) -> float:
    """Wait until the server's CPU use drops below ``max_util`` (e.g. presence floods end)."""
    start = time.monotonic()
    quiet = 0
    prev = cpu_seconds(pid)
    while time.monotonic() - start < timeout:
        await asyncio.sleep(0.2)
        cur = cpu_seconds(pid)
        quiet = quiet + 1 if (cur - prev) / 0.2 <= max_util else 0
        prev = cur
        if quiet >= 2:
            break
    return time.monotonic() - start


class RssSampler:
    """Track the peak RSS of a process while a load phase runs."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss_bytes(pid)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return
            await asyncio.sleep(self.interval)

    def stop(self) -> int:
        self._task.cancel()
        with suppress(OSError):
            self.peak = max(self.peak, rss_bytes(self.pid))
        return self.peak


class PhaseProfiler:
    """Profile the server during one measured phase.

    cProfile is switched on and off by signal in a server started under
    ``bench.profiled``; ``perf record`` (when ``env.perf_dir`` is set) samples
    the server process from outside, so time spent in the kernel's send path
    shows up too.
    """

    def __init__(self, env: Env, server: ServerProcess, label: str) -> None:
        self.server = server
        self.label = label
        self.prefix = server.profile_prefix
        self.count = server.profile_count
        if self.prefix:
            os.kill(server.pid, signal.SIGUSR1)
        self.perf: subprocess.Popen[bytes] | None = None
        if env.perf_dir:
            os.makedirs(env.perf_dir, exist_ok=True)
            out = os.path.join(env.perf_dir, f"{server.kind.name}-{_safe(label)}.data")
            cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g"]
            cmd += ["-p", str(server.pid), "-o", out]
            self.perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    async def stop(self) -> str | None:
        """Stop profiling; return the path of the written profile (None if not profiling)."""
        if self.perf is not None:
            self.perf.send_signal(signal.SIGINT)
            await asyncio.to_thread(self.perf.wait, 30)
        if not self.prefix:
            return None
        self.count += 1
        self.server.profile_count = self.count
        os.kill(self.server.pid, signal.SIGUSR2)
        path = f"{self.prefix}.{self.count}.prof"
        for _ in range(300):
            if os.path.exists(path):
                final = f"{self.prefix}.{_safe(self.label)}.prof"
                os.replace(path, final)
                return final
            await asyncio.sleep(0.1)
        return None


def _safe(label: str) -> str:
    """``label`` as a file-name part."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


@asynccontextmanager
async def running_server(env: Env, kind: ServerKind, extra: list[str] | None = None):
    """Start ``kind`` for one scenario and always stop it afterwards."""
    args = list(env.server_args.get(kind.name, [])) + list(extra or [])
    prefix = None
    if env.profile_dir:
        os.makedirs(env.profile_dir, exist_ok=True)
        prefix = os.path.join(env.profile_dir, f"{kind.name}-{os.getpid()}-{time.time_ns()}")
    server = await asyncio.to_thread(
        start_server, kind, env.host, args, env.server_cpu, 20.0, prefix
    )
    server.profile_prefix = prefix
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def ramp_tick(env: Env, label: str, pool: WorkerPool, n: int) -> Any:
    """Progress callback for connection ramp-up."""
    t0 = time.monotonic()

    def tick() -> None:
        ready = pool.total("ready")
        rate = ready / max(1e-6, time.monotonic() - t0)
        failed = pool.total("failed")
        env.progress.update(
            f"[{label}] ramp-up: {pool.total('connected'):,} connected, {ready:,}/{n:,} ready"
            f" ({rate:,.0f}/s), {failed} failed"
        )

    return tick


def bottleneck(
    server_util: float, loadgen_util: float, loadgen_max_proc: float, other_util: float, env: Env
) -> str:
    """Name whichever side was saturated during a flood phase.

    ``other_util`` is CPU taken by processes outside the benchmark (cores).
    """
    if server_util >= 0.85:
        return "server"
    if loadgen_util >= 0.85 * env.loadgen_cores or loadgen_max_proc >= 0.95:
        return "LOADGEN (results understate the server)"
    if server_util + loadgen_util + other_util >= 0.85 * (os.cpu_count() or 1):
        # The machine is full: whoever took the CPU the server did not get.
        if loadgen_util >= other_util:
            return "LOADGEN (machine saturated; results understate the server)"
        return f"CPU contention (other processes took {other_util:.1f} cores)"
    return "neither (window/latency bound)"


async def healthz(server: ServerProcess) -> dict[str, Any]:
    """/healthz, or {"healthz_error": ...}: an overloaded server may answer late or not."""
    try:
        return await asyncio.to_thread(server.healthz, 30.0)
    except (OSError, ValueError) as exc:
        return {"healthz_error": f"{type(exc).__name__}: {exc}"}


def _errors(results: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for k, v in r.get("errors", {}).items():
            out[k] = out.get(k, 0) + v
    return out


# -- scenarios ---------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One publishing phase on an already joined room."""

    label: str
    messages: int
    size: int = 100
    window: int = 32
    rate: float | None = None  # messages/s; None = as fast as the window allows
    max_seconds: float = 60.0
    # Paced phases: counting (non-probe) subscribers are woken once this many
    # payloads' worth of bytes wait (SO_RCVLOWAT); 1 = every frame. See
    # Worker.set_rcvlowat.
    read_batch: int = 1


async def fanout(
    env: Env,
    kind: ServerKind,
    subscribers: int,
    phases: list[Phase],
    stuck: int = 0,
    extra_args: list[str] | None = None,
) -> list[dict[str, Any]]:
    """N subscribers join one room once; then each phase publishes and is measured.

    Phases share the ramp-up because joining a big room can cost far more
    than the measurement itself (presence events are O(N) per join).
    """
    room = "bench-room"
    label = phases[0].label
    async with running_server(env, kind, extra_args) as server:
        pool = WorkerPool(
            make_configs(
                env,
                server,
                "subscribe",
                subscribers,
                room=room,
                probe_every=max(1, (subscribers - stuck) // 250),
                stuck=stuck,
            )
        )
        try:
            t_ramp, cpu_ramp = time.monotonic(), cpu_seconds(server.pid)
            await pool.wait_for(
                "ready", 600, ramp_tick(env, f"{label} {kind.name}", pool, subscribers)
            )
            pub = await connect_publisher(server.host, server.port, room, cafile=server.cafile)
            await wait_quiet(server.pid)  # presence events of the last joins
            ramp_cpu = cpu_seconds(server.pid) - cpu_ramp
            ramp = {
                "ramp_s": time.monotonic() - t_ramp,
                "ramp_failed": pool.total("failed", "ready"),
                # Joining one big room: handshake + join + presence to all members.
                "ramp_server_cpu_us_per_join": ramp_cpu * 1e6 / subscribers,
            }
            out = []
            for phase in phases:
                env.progress.update(f"[{phase.label} {kind.name}] waiting for the server to settle")
                settle_s = await wait_quiet(server.pid)
                result = await _measure_phase(
                    env, kind, server, pool, pub, phase, subscribers, stuck
                )
                out.append({**result, **ramp, "settle_s": settle_s})
            pub.close()
            await pool.stop()
        finally:
            pool.close()
    env.progress.done()
    return out


async def _measure_phase(
    env: Env,
    kind: ServerKind,
    server: ServerProcess,
    pool: WorkerPool,
    pub: Any,
    phase: Phase,
    subscribers: int,
    stuck: int,
) -> dict[str, Any]:
    """Publish ``phase`` and measure deliveries, latency, loss, CPU and memory."""
    normal = subscribers - stuck
    before = await pool.request("collect", "collect")  # also empties latency buffers
    base_received = sum(r["received"] for r in before)
    base_closed = sum(r["closed_normal"] for r in before)
    profiler = PhaseProfiler(env, server, phase.label)
    rss0 = rss_bytes(server.pid)
    cpu0, me0, t0 = cpu_seconds(server.pid), self_cpu_seconds(), time.monotonic()
    busy0 = machine_busy_seconds()
    sampler = RssSampler(server.pid)
    max_lag = max(phase.window * 4, (256 * 1024) // max(phase.size, 1))

    def lag(sent: int) -> bool:
        behind = sent * normal - (pool.total("received") - base_received)
        return behind > max_lag * normal

    async def show() -> None:
        while True:
            got = pool.total("received") - base_received
            env.progress.update(f"[{phase.label} {kind.name}] publishing: {got:,} deliveries")
            await asyncio.sleep(0.2)

    shower = asyncio.create_task(show())
    batched = phase.rate is not None and phase.read_batch > 1
    if batched:  # see Worker.set_rcvlowat
        await pool.request("rcvlowat", "rcvlowat", arg=phase.read_batch * phase.size)
    try:
        try:
            res = await publish(
                pub, phase.messages, phase.size, phase.window, phase.rate, phase.max_seconds, lag
            )
        finally:
            if batched:  # the last few messages must not wait for more
                await pool.request("rcvlowat", "rcvlowat", arg=1)
        expected = normal * res.sent
        # Drain: wait for stragglers, give up after 5 s without progress.
        last, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < 5.0:
            got = pool.total("received") - base_received
            if got >= expected:
                break
            if got != last:
                last, last_change = got, time.monotonic()
            await asyncio.sleep(0.02)
    finally:
        shower.cancel()
    after = await pool.request("collect", "collect")
    cpu1, me1, t1 = cpu_seconds(server.pid), self_cpu_seconds(), time.monotonic()
    busy1 = machine_busy_seconds()
    peak = sampler.stop()
    profile_path = await profiler.stop()
    health = await healthz(server)

    received = sum(r["received"] for r in after) - base_received
    last_rx = max((r["last_rx_ns"] for r in after), default=0)
    active_s = max(1e-9, (last_rx - res.first_send_ns) / 1e9)
    wall = max(1e-9, t1 - t0)
    server_cpu = cpu1 - cpu0
    worker_cpu = [b["cpu_s"] - a["cpu_s"] for a, b in zip(before, after, strict=True)]
    loadgen_cpu = sum(worker_cpu) + (me1 - me0)
    lat = latency_summary_ms(merge_latencies(r["latencies_us"] for r in after))
    server_util = server_cpu / wall
    loadgen_util = loadgen_cpu / wall
    max_proc = max([c / wall for c in worker_cpu] + [(me1 - me0) / wall])
    other_util = max(0.0, (busy1 - busy0 - server_cpu - loadgen_cpu) / wall)
    return {
        "scenario": phase.label,
        "server": kind.name,
        "subscribers": subscribers,
        "stuck": stuck,
        "message_bytes": phase.size,
        "window": phase.window,
        "rate": phase.rate,
        "read_batch": phase.read_batch if phase.rate is not None else 1,
        "messages_sent": res.sent,
        "acked": res.acked,
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "deliveries_per_s": received / active_s,
        "per_member_msgs_per_s": (received / max(normal, 1)) / active_s,
        **{f"latency_{k}": v for k, v in lat.items()},
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_delivery": server_cpu * 1e6 / received if received else None,
        "server_cpu_util": server_util,
        "loadgen_cpu_util": loadgen_util,
        "loadgen_max_process_util": max_proc,
        "other_processes_cpu_util": other_util,
        "bottleneck": bottleneck(server_util, loadgen_util, max_proc, other_util, env),
        "server_rss_before_mb": rss0 / MB,
        "server_rss_growth_mb": (peak - rss0) / MB,
        "slow_consumers_dropped": health.get("slow_consumers_dropped"),
        "server_connections_after": health.get("connections"),
        "close_codes": _merge_counts(r.get("close_codes", {}) for r in after),
        "closed_during_run": sum(r["closed_normal"] for r in after) - base_closed,
        "errors": _errors(after) | ({"publisher": res.errors} if res.errors else {}),
        "profile": profile_path,
    }


def _merge_counts(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[str(k)] = out.get(str(k), 0) + v
    return out


async def idle(env: Env, kind: ServerKind, label: str, connections: int) -> dict[str, Any]:
    """Hold N idle connections (handshake + welcome, no room) and measure RSS growth."""
    async with running_server(env, kind) as server:
        await wait_quiet(server.pid)
        rss0 = rss_bytes(server.pid)
        cpu0 = cpu_seconds(server.pid)
        t0 = time.monotonic()
        pool = WorkerPool(make_configs(env, server, "idle", connections))
        try:
            await pool.wait_for("progress", 60)  # workers are up: start the clock
            t0, cpu0 = time.monotonic(), cpu_seconds(server.pid)
            await pool.wait_for(
                "ready", 300, ramp_tick(env, f"{label} {kind.name}", pool, connections)
            )
            ramp_s = time.monotonic() - t0
            ramp_cpu = cpu_seconds(server.pid) - cpu0
            env.progress.update(
                f"[{label} {kind.name}] holding; waiting for the server to settle", force=True
            )
            await asyncio.sleep(1.0)
            await wait_quiet(server.pid)
            rss1 = rss_bytes(server.pid)
            health = await healthz(server)
            results = await pool.stop()
        finally:
            pool.close()
    env.progress.done()
    held = sum(r["ready"] for r in results)
    return {
        "scenario": label,
        "server": kind.name,
        "connections": connections,
        "held": held,
        "server_reported_connections": health.get("connections"),
        "failed": sum(r["failed"] for r in results),
        "server_rss_before_mb": rss0 / MB,
        "server_rss_after_mb": rss1 / MB,
        "kb_per_connection": (rss1 - rss0) / 1024 / held if held else None,
        "ramp_s": ramp_s,
        "ramp_conn_per_s": held / ramp_s if ramp_s else None,
        "ramp_server_cpu_us_per_conn": ramp_cpu * 1e6 / held if held else None,
        "errors": _errors(results),
    }


async def handshakes(
    env: Env, kind: ServerKind, label: str, total: int, concurrency: int = 32
) -> dict[str, Any]:
    """Open, upgrade and close ``total`` connections as fast as possible."""
    async with running_server(env, kind) as server:
        workers = max(2, env.workers or 2)
        configs = make_configs(env, server, "handshake", total, concurrency=concurrency)
        if len(configs) < workers:
            configs = [
                WorkerConfig(**{**c.__dict__, "index": i, "count": n})
                for i, (c, n) in enumerate(
                    zip([configs[0]] * workers, split_evenly(total, workers), strict=False)
                )
            ]
        # Handshakes leave TIME_WAIT sockets behind: spread over more sources.
        sources = source_addresses(total * 2, minimum=4)
        for c in configs:
            c.sources = sources
        pool = WorkerPool(configs)
        try:
            await pool.wait_for("progress", 60)
            await wait_quiet(server.pid)
            marks0 = await pool.request("mark", "mark")
            profiler = PhaseProfiler(env, server, label)
            cpu0, t0, busy0 = cpu_seconds(server.pid), time.monotonic(), machine_busy_seconds()
            pool.clear("done")
            pool.send_all("go")

            def tick() -> None:
                done = pool.total("handshakes")
                env.progress.update(f"[{label} {kind.name}] {done:,}/{total:,} handshakes")

            done = await pool.wait_for("done", 300, tick)
            cpu1, t1, busy1 = cpu_seconds(server.pid), time.monotonic(), machine_busy_seconds()
            profile_path = await profiler.stop()
            results = await pool.stop()
        finally:
            pool.close()
    env.progress.done()
    ok = sum(r["handshakes"] for r in results)
    start = min(r["hs_start_ns"] for r in results)
    end = max(r["hs_end_ns"] for r in results)
    span = max(1e-9, (end - start) / 1e9)
    wall = max(1e-9, t1 - t0)
    worker_cpu = [b["cpu_s"] - a["cpu_s"] for a, b in zip(marks0, done, strict=False)]
    server_util = (cpu1 - cpu0) / wall
    loadgen_util = sum(worker_cpu) / wall
    max_proc = max(c / wall for c in worker_cpu)
    other_util = max(0.0, (busy1 - busy0) / wall - server_util - loadgen_util)
    return {
        "scenario": label,
        "server": kind.name,
        "attempted": total,
        "handshakes": ok,
        "failed": sum(r["failed"] for r in results),
        "handshakes_per_s": ok / span,
        "server_cpu_us_per_handshake": (cpu1 - cpu0) * 1e6 / ok if ok else None,
        "server_cpu_util": server_util,
        "loadgen_cpu_util": loadgen_util,
        "loadgen_max_process_util": max_proc,
        "other_processes_cpu_util": other_util,
        "bottleneck": bottleneck(server_util, loadgen_util, max_proc, other_util, env),
        "errors": _errors(results),
        "profile": profile_path,
    }


async def slow_consumers(
    env: Env,
    kind: ServerKind,
    label: str,
    subscribers: int,
    stuck: int,
    messages: int,
    size: int = 1024,
    window: int = 32,
    max_seconds: float = 60.0,
    server_args: list[str] | None = None,
) -> dict[str, Any]:
    """Flood messages of ``size`` with and without ``stuck`` never-reading members."""
    clean_phase = Phase(f"{label} (no stuck)", messages, size, window, None, max_seconds)
    (clean,) = await fanout(env, kind, subscribers, [clean_phase], 0, server_args)
    (dirty,) = await fanout(
        env, kind, subscribers, [replace(clean_phase, label=label)], stuck, server_args
    )
    ratio = None
    if clean["per_member_msgs_per_s"]:
        ratio = dirty["per_member_msgs_per_s"] / clean["per_member_msgs_per_s"]
    keep = ("messages_sent", "lost", "per_member_msgs_per_s", "server_rss_growth_mb")
    return {
        **dirty,
        "without_stuck": {k: clean[k] for k in keep},
        "normal_throughput_vs_no_stuck": ratio,
    }
