"""One server's numbers for /healthz that the hub cannot see: open sockets,
armed timers, asyncio tasks and errors logged. Soak and churn tests read them
to prove that nothing is left behind once clients are gone.

Each server (each `server.make_app`) has its own `Diagnostics`, handed to its
handlers and connections, so that two servers in one process (tests) never
see each other's counts.
"""

from __future__ import annotations

import asyncio
import logging


class ErrorCounter(logging.Handler):
    """Counts log records at ERROR or above (every uncaught exception is one)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class Diagnostics:
    """The counters of one server instance."""

    __slots__ = ("open_sockets", "armed_timers", "direct_upgrades", "errors")

    def __init__(self) -> None:
        self.open_sockets = 0
        """Connections handed off and not yet closed (see `SocketConnection`)."""
        self.armed_timers = 0
        """Close-handshake timeouts currently armed."""
        self.direct_upgrades = 0
        """Upgrades answered straight off the accepted socket (`handlers.direct_upgrade`);
        the others went through Tornado's HTTP/1 path."""
        self.errors = ErrorCounter()
        """Counts only once `install`ed."""

    def install(self) -> None:
        """Count error records from now on. Call after Tornado has set up its
        own log output, which it skips when the root logger has any handler."""
        logging.getLogger().addHandler(self.errors)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self.errors)

    def stats(self) -> dict[str, int]:
        """The counters, as /healthz reports them."""
        return {
            "handed_off_sockets": self.open_sockets,
            "close_timers": self.armed_timers,
            "direct_upgrades": self.direct_upgrades,
            "tasks": len(asyncio.all_tasks()),
            "errors_logged": self.errors.count,
        }
