"""Run the real hub server (``python server.py``) as a subprocess for the browser tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.support import handoff_args

REPO = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO / "server.py"
LISTENING = re.compile(r"http://127\.0\.0\.1:(\d+)/")
START_TIMEOUT = 15.0


class ServerProcess:
    """One server on 127.0.0.1; ``restart()`` brings it back on the same port.

    The port is kept across restarts because the pages under test reconnect
    to the address they were loaded from, as a browser would after a deploy.
    Output goes to ``log_path`` for post-mortems.
    """

    def __init__(self, log_path: Path, *options: str) -> None:
        self.options = list(options)
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        cmd = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--logging=info",
            *handoff_args(),
            *self.options,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.starts += 1
        found = threading.Event()
        log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed by the reader)
        log.write(f"--- start #{self.starts}: {' '.join(cmd)}\n")

        def read(proc: subprocess.Popen[str]) -> None:
            # Keep draining so the server never blocks on a full pipe.
            with log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    match = LISTENING.search(line)
                    if match and not found.is_set():
                        self.port = int(match.group(1))
                        found.set()

        threading.Thread(target=read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start; see {self.log_path}")
        self._wait_healthy(deadline)
        return self

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server at {self.url} never became healthy")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop (every client gets 1001, all in-memory history is gone) and start again."""
        self.stop()
        self.start()
