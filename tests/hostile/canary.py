"""A well-behaved client that publishes and reads for the whole of an abuse
test, in a thread, and the server's memory and descriptors read from /proc
before, during and after it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.hostile.checks import open_fds
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for

ROUND_TRIP_BOUND = 2.0
"""Generous: a canary served normally answers in milliseconds even on a busy
test machine; one stalled behind an abuser waits for seconds or for ever."""


class Canary(threading.Thread):
    """Publishes to its own room every ``interval`` and waits for its own message.

    ``round_trips`` holds every publish-to-delivery time; ``failure`` the first
    exception, if the canary stopped being served.
    """

    def __init__(self, server: HubProcess, interval: float = 0.02, room: str = "canary") -> None:
        super().__init__(daemon=True)
        self.wire = HubWire(server.port, name="canary")
        self.wire.join(room)
        self.room = room
        self.interval = interval
        self.round_trips: list[float] = []
        self.failure: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        count = 0
        try:
            while not self.stopping.is_set():
                count += 1
                sent = time.monotonic()
                self.wire.send_json(
                    {"type": "publish", "room": self.room, "data": count, "id": count}
                )
                while True:
                    message = self.wire.recv_json(timeout=ROUND_TRIP_BOUND * 5)
                    if message["type"] == "message" and message["data"] == count:
                        break
                self.round_trips.append(time.monotonic() - sent)
                self.stopping.wait(self.interval)
        except BaseException as error:  # reported by `check`
            self.failure = error

    def __enter__(self) -> Canary:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(ROUND_TRIP_BOUND * 6)
        self.wire.abort()

    def served(self, more: int = 3, timeout: float = 10.0) -> None:
        """Wait until ``more`` further round trips have completed."""
        target = len(self.round_trips) + more
        wait_for(lambda: len(self.round_trips) >= target or self.failure, timeout, what="canary")
        assert self.failure is None, f"canary stopped: {self.failure!r}"

    def check(self, at_least: int = 5) -> float:
        """The canary was served throughout; returns its worst round trip."""
        assert self.failure is None, f"canary stopped: {self.failure!r}"
        assert len(self.round_trips) >= at_least, self.round_trips
        worst = max(self.round_trips)
        assert worst < ROUND_TRIP_BOUND, f"canary round trip {worst:.3f}s"
        return worst


@dataclass
class Footprint:
    """RSS (KiB) and open descriptors of the server at named moments."""

    server: HubProcess
    readings: dict[str, tuple[int, int]] = field(default_factory=dict)

    def read(self, moment: str) -> tuple[int, int]:
        reading = (self.server.rss_kib(), open_fds(self.server))
        self.readings[moment] = reading
        return reading

    def __str__(self) -> str:
        return ", ".join(f"{k}: {r} KiB RSS, {f} fds" for k, (r, f) in self.readings.items())
