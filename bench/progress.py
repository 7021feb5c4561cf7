"""One-line progress display on stderr during ramp-up and load phases.

On a terminal the line is redrawn in place; otherwise (CI logs) a line is
printed at most every few seconds so logs stay short.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Rate-limited status line."""

    def __init__(self, enabled: bool = True, stream=sys.stderr) -> None:
        self.enabled = enabled
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 3.0):
            return
        self._last = now
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str | None = None) -> None:
        if not self.enabled:
            return
        if text:
            self.update(text, force=True)
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0

    def log(self, text: str) -> None:
        """Print a permanent line (ends any in-place line first)."""
        if not self.enabled:
            return
        self.done()
        self.stream.write(text + "\n")
        self.stream.flush()
