"""Process-level numbers for /healthz that the hub cannot see: open sockets,
armed timers, asyncio tasks and errors logged. Soak and churn tests read them
to prove that nothing is left behind once clients are gone."""

from __future__ import annotations

import asyncio
import logging

from handlers.socket_connection import SocketConnection


class ErrorCounter(logging.Handler):
    """Counts log records at ERROR or above (every uncaught exception is one)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


ERRORS = ErrorCounter()
"""Attached to the root logger by `install_error_counter` (after Tornado has set
up its own log output, which it skips when the root logger has any handler)."""


def install_error_counter() -> None:
    logging.getLogger().addHandler(ERRORS)


def runtime_stats() -> dict[str, int]:
    """The counters, as /healthz reports them."""
    return {
        "handed_off_sockets": SocketConnection.open_sockets,
        "close_timers": SocketConnection.armed_timers,
        "tasks": len(asyncio.all_tasks()),
        "errors_logged": ERRORS.count,
    }
