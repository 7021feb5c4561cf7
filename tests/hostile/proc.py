"""``python server.py`` as a subprocess, its log drained so it can never block,
and the readings the hostile tests assert on (RSS, /healthz, logged errors)."""

from __future__ import annotations

import json
import os
import re
import resource
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.support import handoff_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r"listening on https?://([\d.]+):(\d+)/")
# What a server that handled an input badly would print; 4xx access-log lines are fine.
ERROR_LINE = re.compile(r"Traceback|^\[E |Exception|ERROR", re.MULTILINE)


class HubProcess:
    """One server process on a free loopback port.

    stderr is read by a thread for the whole life of the process: a test that
    provokes thousands of warnings must not fill the pipe and freeze the server.
    """

    client_tls: ssl.SSLContext | None = None

    def __init__(
        self,
        *args: str,
        start_timeout: float = 15.0,
        nofile: int | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``nofile``: the open-file limit (soft and hard), to run the server out of them.
        ``client_tls``: the server runs with ``--certfile``/``--keyfile`` among ``args``;
        `url` and `health` then use https:// with this client context."""
        self.args = args
        self.client_tls = client_tls
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "server.py"), "--port=0", *handoff_args(), *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            preexec_fn=None if nofile is None else lambda: _limit_files(nofile),
        )
        self.lines: list[str] = []
        self._port: int | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._ready.wait(start_timeout) or self._port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + self.log())
        self.port: int = self._port

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if self._port is None:
                match = LISTENING.search(line)
                if match:
                    self._port = int(match.group(2))
                    self._ready.set()
        self._ready.set()  # exited before listening

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return "".join(self.lines)

    def mark(self) -> int:
        """A position in the log, for `errors` to look only at what came after it."""
        return len(self.lines)

    def errors(self, since: int = 0) -> list[str]:
        """Log lines (after ``since``) that show an exception or an error-level record."""
        return [line for line in self.lines[since:] if ERROR_LINE.search(line)]

    def url(self, path: str) -> str:
        scheme = "https" if self.client_tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def health(self, timeout: float = 5.0) -> dict[str, Any]:
        url = self.url("/healthz")
        with urllib.request.urlopen(url, timeout=timeout, context=self.client_tls) as response:
            return json.loads(response.read())

    def rss_kib(self) -> int:
        """Resident set size of the server, from /proc (Linux)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _limit_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``.

    Returns the truthy value, so callers can poll and read in one go.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"not met within {timeout}s: {what or condition} (last: {last!r})")
        time.sleep(interval)
