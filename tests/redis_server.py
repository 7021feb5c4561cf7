"""A real ``redis-server`` on a free loopback port, for the scale-out tests.

Started with persistence off (``--save "" --appendonly no``), so a restart
comes back empty, exactly like a Redis that lost its data; `stop` and `start`
keep the port, so nodes can reconnect to the same URL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
INSTALL_HINT = "redis-server is missing (apt-get install redis-server)"


def require_redis() -> str:
    """The redis-server binary, or skip the test saying how to install it."""
    if not shutil.which(REDIS_SERVER):
        pytest.skip(INSTALL_HINT)
    return REDIS_SERVER


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process bound to 127.0.0.1."""

    def __init__(self, port: int | None = None, transport: str = "tcp") -> None:
        """``transport``: ``tcp``, ``tls`` (a certificate made here with trustme) or ``unix``."""
        self.binary = require_redis()
        self.port = port or free_port()
        self.transport = transport
        self.dir = tempfile.mkdtemp(prefix="wshub-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.listen_args = ["--port", str(self.port)]
        if transport == "tls":
            self.listen_args = ["--port", "0", "--tls-port", str(self.port), *self._certificate()]
        elif transport == "unix":
            self.socket_path = os.path.join(self.dir, "redis.sock")
            self.listen_args += ["--unixsocket", self.socket_path]

    def _certificate(self) -> list[str]:
        trustme = pytest.importorskip("trustme", reason="pip install trustme")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = os.path.join(self.dir, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        cert.private_key_pem.write_to_path(key := os.path.join(self.dir, "key.pem"))
        cert.cert_chain_pems[0].write_to_path(crt := os.path.join(self.dir, "cert.pem"))
        # The hub checks Redis's certificate; Redis asks none of its clients.
        return [
            *("--tls-cert-file", crt, "--tls-key-file", key, "--tls-ca-cert-file", self.ca_path),
            *("--tls-auth-clients", "no"),
        ]

    @property
    def url(self) -> str:
        if self.transport == "tls":
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_path}"
        if self.transport == "unix":
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) on the same port; return once it accepts connections."""
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            [
                self.binary,
                *self.listen_args,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "yes",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._answers():
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Whether it answers a PING (over TLS: whether the port accepts)."""
        try:
            if self.transport == "unix":
                conn = socket.socket(socket.AF_UNIX)
                conn.settimeout(0.2)
                conn.connect(self.socket_path)
            else:
                conn = socket.create_connection(("127.0.0.1", self.port), 0.2)
            with conn:
                if self.transport == "tls":
                    return True
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it (its data is gone: persistence is off)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def cpu_seconds(self) -> float:
        """User + system CPU the server has used so far (from /proc)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")
