"""The canary of the memory tests: a well-behaved client that keeps publishing
and reading its own messages in a thread while the abuse runs, so a test can
say how long the worst round trip took."""

from __future__ import annotations

import threading
import time

from tests.hostile.hubwire import HubWire


class RoundTripCanary:
    """Publishes to its own room every ``interval`` seconds and times each message's return."""

    def __init__(self, port: int, room: str = "canary", interval: float = 0.05) -> None:
        self.wire = HubWire(port, name="canary")
        self.wire.join(room)
        self.room = room
        self.interval = interval
        self.round_trips: list[float] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                self.round_trip(n)
                self._stop.wait(self.interval)
        except BaseException as error:  # reported by `stop`
            self.failure = error

    def round_trip(self, n: int) -> float:
        """Publish one message and wait (bounded) for it to come back."""
        started = time.monotonic()
        self.wire.send_json({"type": "publish", "room": self.room, "data": n, "id": f"c{n}"})
        while True:
            message = self.wire.recv_json(timeout=10.0)
            if message["type"] == "message" and message["data"] == n:
                break
        elapsed = time.monotonic() - started
        self.round_trips.append(elapsed)
        return elapsed

    def __enter__(self) -> RoundTripCanary:
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop publishing; return the worst round trip (raises what the thread hit)."""
        self._stop.set()
        self._thread.join(15)
        if self.failure is not None:
            raise AssertionError(f"canary failed: {self.failure!r}") from self.failure
        assert self.round_trips, "the canary never got a message back"
        return max(self.round_trips)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self.wire.abort()
