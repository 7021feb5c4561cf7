"""The server started the way a user starts it (``wshub`` or ``python server.py``)
as a subprocess: its listening addresses read from the log, stderr drained."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence

from tests.hostile.proc import HubProcess
from tests.support import REPO

SERVER = os.path.join(REPO, "server.py")
LISTENING = re.compile(r"listening on (\S+)((?: and \S+)*) \(")
URL = re.compile(r"https?://(\[[0-9a-f:]+\]|[\d.]+):(\d+)/")


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


class Command(HubProcess):
    """One long-running server started by any command line (``wshub``, another
    host); ``urls`` are the addresses it logged, IPv6 ones included."""

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        cwd: str | os.PathLike[str] = REPO,
        env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.args = tuple(str(arg) for arg in argv)
        self.proc = subprocess.Popen(
            self.args,
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
            raise RuntimeError(f"{self.args} did not start:\n{self.log()}")
        self.port = self.urls[0][1]

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if not self.urls and LISTENING.search(line):
                self.urls = [(h.strip("[]"), int(p)) for h, p in URL.findall(line)]
                self._ready.set()
        self._ready.set()  # exited before listening
