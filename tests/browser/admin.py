"""Traffic for the admin dashboard's tests and its screenshot: members in rooms, a
publisher, an error and a closed connection, on raw sockets (tests.hostile)."""

from __future__ import annotations

import select
import threading
import time
from typing import Any

from tests.hostile.hubwire import HubWire

ROOMS = {"lobby": 4, "chat:ops": 2}
"""Rooms and how many members each gets."""
LONG_ROOM = "a-room-with-the-longest-name-a-room-may-have-" + "x" * 19
"""64 characters: the widest name the rooms table must fit on a phone."""
MAX_PUBLISHES = 20_000
MAX_SECONDS = 60.0


class Traffic:
    """Members in `ROOMS` (and one in `LONG_ROOM`), a publisher sending to the
    lobby from a thread until stopped (bounded in count and time), one
    ``not_joined`` error and one connection closed with 1000."""

    def __init__(self, port: int, interval: float = 0.005) -> None:
        self.port = port
        self.interval = interval
        self.members: list[HubWire] = []
        for room, count in {**ROOMS, LONG_ROOM: 1}.items():
            for n in range(count):
                member = HubWire(port, name=f"m{n}")
                member.join(room)
                self.members.append(member)
        self.publisher = self.members[0]  # in the lobby: it reads its own copies
        self.published = 0
        self.sent_at: list[float] = []  # time.monotonic() of each acknowledged publish
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def error_and_close(self) -> None:
        """One ``not_joined`` error frame and one connection closed with 1000."""
        leaver = HubWire(self.port, name="leaver")
        leaver.send_json({"type": "publish", "room": "nowhere", "data": 1, "id": "x"})
        assert leaver.until_id("x")[-1]["code"] == "not_joined"
        leaver.send_close(1000)
        leaver.ending()
        leaver.close()

    def start(self) -> Traffic:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=target, daemon=True) for target in (self._run, self._drain)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _drain(self) -> None:
        """Read (and drop) what the other members are sent: readers, not slow consumers."""
        readers = {member.sock: member for member in self.members[1:]}
        deadline = time.monotonic() + MAX_SECONDS + 5
        while not self._stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select(list(readers), [], [], 0.1)
            for sock in ready:
                if not sock.recv(65536):
                    del readers[sock]
            if not readers:
                return

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and self.published < MAX_PUBLISHES:
            if time.monotonic() > deadline:
                break
            tag = f"p{self.published}"
            self.publisher.send_json({"type": "publish", "room": "lobby", "data": 1, "id": tag})
            self.publisher.until_id(tag)
            self.sent_at.append(time.monotonic())
            self.published += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def close(self) -> None:
        self.stop()
        for member in self.members:
            member.abort()

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def busiest(sent_at: list[float], seconds: float) -> int:
    """The most of ``sent_at`` (sorted times) that fall in any ``seconds``-long window."""
    most, first = 0, 0
    for last, at in enumerate(sent_at):
        while at - sent_at[first] > seconds:
            first += 1
        most = max(most, last - first + 1)
    return most
