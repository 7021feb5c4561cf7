"""Start and stop the servers under test as subprocesses on loopback.

The benchmark owns the server's lifetime so that its CPU and memory can be
read from /proc and so that every run starts from the same clean state.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.tls import bench_certificates, client_context

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServerKind:
    """How to launch one implementation of the hub."""

    name: str
    argv: tuple[str, ...]
    # Flags only this implementation understands (appended to every launch).
    extra: tuple[str, ...] = ()
    # Checkout to run from (another one allows A/B runs of a proposed change).
    root: Path = REPO_ROOT
    # Serve https:// and wss:// (bench.tls makes the certificate); clients speak TLS.
    tls: bool = False

    def available(self) -> bool:
        """True if the implementation's entry point exists in its checkout."""
        return "server.py" not in self.argv or (self.root / "server.py").exists()


# Benchmark settings for our server: no per-IP cap or publisher rate limit
# (the load generator is one "client" flooding on purpose), the process's
# whole fd budget for connections, and pings far apart because counting
# clients do not answer them. Everything else stays at production defaults.
OURS = ServerKind(
    "ours",
    (sys.executable, "server.py"),
    (
        "--max_connections=25000",
        "--max_connections_per_ip=0",
        "--rate_limit=0",
        "--ping_interval=3600",
        "--ping_timeout=3600",
    ),
)
# The textbook hub as written, plus TCP_NODELAY: without it Nagle's algorithm
# and delayed ACKs stall its per-client small writes by up to 40 ms, and we
# want to compare fan-out code, not one socket option.
BASELINE = ServerKind(
    "baseline", (sys.executable, "-m", "bench.baseline_server"), ("--nodelay=true",)
)
# Ours with every connection on Tornado's public API: what the hand-off buys.
OURS_HANDOFF_OFF = ServerKind("ours-handoff-off", OURS.argv, (*OURS.extra, "--handoff=off"))
# Ours over TLS (wss://): what encryption costs per delivery and per connection.
OURS_TLS = ServerKind("ours-tls", OURS.argv, OURS.extra, tls=True)
# Ours without /metrics and its broadcast histogram: what the metrics cost.
OURS_METRICS_OFF = ServerKind("ours-metrics-off", OURS.argv, (*OURS.extra, "--metrics=false"))
KINDS = {k.name: k for k in (OURS, BASELINE, OURS_HANDOFF_OFF, OURS_TLS, OURS_METRICS_OFF)}


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently unused TCP port on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A running server under test."""

    kind: ServerKind
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: str
    args: list[str] = field(default_factory=list)
    profile_prefix: str | None = None
    profile_count: int = 0
    cafile: str | None = None  # set when it serves TLS: the CA its clients trust

    @property
    def pid(self) -> int:
        return self.proc.pid

    def healthz(self, timeout: float = 5.0) -> dict:
        """Fetch /healthz as a dict."""
        scheme = "https" if self.cafile else "http"
        url = f"{scheme}://{self.host}:{self.port}/healthz"
        context = client_context(self.cafile) if self.cafile else None
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return json.loads(resp.read())

    def log_tail(self, n: int = 20) -> str:
        """Last ``n`` lines of the server's combined output, for error messages."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


def start_server(
    kind: ServerKind,
    host: str = "127.0.0.1",
    extra_args: list[str] | None = None,
    cpu: int | None = None,
    timeout: float = 20.0,
    profile_prefix: str | None = None,
) -> ServerProcess:
    """Launch ``kind`` on a free port and wait until /healthz answers.

    ``cpu`` pins the server to one core so that it never competes with the
    load generator for the same core.
    """
    port = free_port(host)
    args = [f"--host={host}", f"--port={port}", "--logging=warning", *kind.extra]
    args += extra_args or []
    cafile = None
    if kind.tls:
        certificates = bench_certificates()
        args += certificates.server_flags()
        cafile = certificates.cafile
    fd, log_path = tempfile.mkstemp(prefix=f"bench-{kind.name}-", suffix=".log")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The server's own checkout first (its packages), then ours (bench.*).
    paths = [str(kind.root), str(REPO_ROOT), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    argv = list(kind.argv)
    if profile_prefix:
        # Same process, run under bench.profiled: SIGUSR1/SIGUSR2 toggle cProfile.
        argv = [argv[0], "-m", "bench.profiled", profile_prefix, *argv[1:]]
    proc = subprocess.Popen(
        [*argv, *args],
        cwd=kind.root,
        stdout=fd,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=pin,
    )
    os.close(fd)
    server = ServerProcess(kind, host, port, proc, log_path, args, cafile=cafile)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"{kind.name} server exited with {proc.returncode}:\n{tail}")
        try:
            server.healthz(timeout=1.0)
            return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"{kind.name} server did not answer /healthz in {timeout}s:\n{tail}")
        time.sleep(0.05)
