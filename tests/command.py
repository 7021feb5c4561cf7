"""The server started the way a user starts it (``wshub`` or ``python server.py``)
as a subprocess: its listening addresses read from the log, stderr drained."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence

from tests.support import REPO

SERVER = os.path.join(REPO, "server.py")
LISTENING = re.compile(r"listening on (\S+)((?: and \S+)*) \(")
URL = re.compile(r"http://(\[[0-9a-f:]+\]|[\d.]+):(\d+)/")


def run_server_command(*args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """``python server.py ARGS`` expected to exit by itself (a start-up mistake, --help)."""
    return subprocess.run(
        [sys.executable, SERVER, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Command:
    """One long-running server process; ``urls`` are the addresses it logged."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: str = REPO,
        env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self.urls: list[tuple[str, int]] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._ready.wait(start_timeout) or not self.urls:
            self.stop()
            raise RuntimeError(f"{argv} did not start:\n{self.log()}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if not self.urls and LISTENING.search(line):
                self.urls = [(h.strip("[]"), int(p)) for h, p in URL.findall(line)]
                self._ready.set()
        self._ready.set()  # exited before listening

    @property
    def port(self) -> int:
        return self.urls[0][1]

    def log(self) -> str:
        return "".join(self.lines)

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

    def __enter__(self) -> Command:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
