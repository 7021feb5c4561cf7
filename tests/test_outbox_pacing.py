"""Output a client asks for is paced by its own reads (issue 11, findings 1, 4, 5),
through a real server process.

Each test keeps a canary (a well-behaved client publishing and reading in its own
room throughout) whose round trips must stay within a generous bound, and reads
the server's RSS and open descriptors from /proc before, during and after.

- A resume of a big history (100 x 60 KB) is replayed as fast as the resuming
  client drains it, never judged a slow consumer (on the code before: 4001
  before a single message arrived).
- A client alone in a room publishing 60 KB messages back to back while it reads
  is never dropped for its own echoes (before: 4001 after a few acks).
- Pongs are output like any other: a ping flood past ``ping_rate_limit`` is
  closed with 1008; with the rate limit off, a flooder that never reads its
  pongs is a slow consumer (4001). Memory stays bounded either way (before: no
  bound at all; 1.2 GB in the issue's run).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.hostile.checks import open_fds
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import OP_CLOSE, OP_PING, Closed, Wire, encode_frame

CANARY_BOUND = 2.0
"""Seconds a canary round trip may take while another client misbehaves (it is
~1 ms on an idle machine; the bound allows for a loaded CI host)."""
MB = 1024


class Canary:
    """Publishes with an id and waits for the ack, again and again, on its own thread."""

    def __init__(self, server: HubProcess) -> None:
        self.wire = HubWire(server.port, "canary")
        self.wire.join("canary-room")
        self.round_trips: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for n in range(100_000):  # bounded; stopped long before
                if self._stop.is_set():
                    return
                start = time.monotonic()
                self.wire.send_json({"type": "publish", "room": "canary-room", "data": n, "id": n})
                self.wire.until_id(n, timeout=10)
                self.round_trips.append(time.monotonic() - start)
                self._stop.wait(0.01)
        except Exception as error:  # reported by `check`
            self.error = repr(error)

    def check(self) -> None:
        """A few more round trips after the abuse, then all must have been prompt."""
        wanted = len(self.round_trips) + 3
        wait_for(
            lambda: len(self.round_trips) >= wanted or self.error, 10, what="canary round trips"
        )
        self._stop.set()
        self._thread.join(15)
        assert self.error is None, self.error
        assert max(self.round_trips) < CANARY_BOUND, max(self.round_trips)
        self.wire.close()


class Readings:
    """The server's RSS (KiB) and open fds from /proc: before, peak during, after."""

    def __init__(self, server: HubProcess) -> None:
        self.server = server
        self.rss_before = server.rss_kib()
        self.fds_before = open_fds(server)
        self.rss_peak = self.rss_before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.rss_peak = max(self.rss_peak, self.server.rss_kib())
            except (OSError, RuntimeError):
                return  # the server is gone; `finish` reports what matters

    def finish(self, peak_growth_kib: int, connections: int) -> None:
        """Stop sampling; the peak stayed within ``peak_growth_kib``; connections
        and descriptors are back to the baseline."""
        self._stop.set()
        self._thread.join(5)
        grown = self.rss_peak - self.rss_before
        assert grown < peak_growth_kib, f"RSS grew {grown} KiB at the peak"
        wait_for(lambda: self.server.health()["connections"] == connections, 10)
        wait_for(lambda: open_fds(self.server) <= self.fds_before, 10, what="fds at baseline")
        after = self.server.rss_kib() - self.rss_before
        assert after < peak_growth_kib, f"RSS {after} KiB above the baseline afterwards"


@contextmanager
def watched(*args: str) -> Iterator[tuple[HubProcess, Canary]]:
    with HubProcess(*args) as server:
        canary = Canary(server)
        yield server, canary
        canary.check()
        assert server.alive()


def fill_history(server: HubProcess, room: str, count: int, size: int) -> None:
    """``count`` messages of ~``size`` bytes in ``room``'s history, one at a time."""
    filler = HubWire(server.port, "filler")
    filler.join(room)
    text = os.urandom(size // 2).hex()
    for i in range(count):
        filler.send_json({"type": "publish", "room": room, "data": {"i": i, "f": text}, "id": i})
        filler.until_id(i, timeout=10)
    filler.close()


@pytest.mark.parametrize("compression", [False, True], ids=["handed-off", "tornado-deflate"])
def test_a_resume_of_a_big_history_is_paced_by_the_reader_not_dropped(compression: bool) -> None:
    headers = {"Sec-WebSocket-Extensions": "permessage-deflate"} if compression else None
    # All 6 MB kept (history_bytes off: its 1 MiB default would keep 17 of them).
    args = ("--history_bytes=0", *(("--compression",) if compression else ()))
    with watched(*args) as (server, _canary):
        fill_history(server, "big", 100, 60_000)
        epoch = None
        for since in (0, 50):
            readings = Readings(server)
            # A small receive window: the kernel cannot absorb the replay for us.
            resumer = HubWire(server.port, "resumer", rcvbuf=16384, headers=headers)
            join = {"type": "join", "room": "big", "since": since}
            resumer.send_json(join if epoch is None else {**join, "epoch": epoch})
            joined = resumer.expect("joined")
            assert joined["seq"] == 100
            epoch = joined["epoch"]
            got = []
            while len(got) < 100 - since:
                message = resumer.recv_json(timeout=10)
                if message["type"] == "message":
                    got.append(message["data"]["i"])
                else:
                    raise AssertionError(f"nothing but messages was due: {message}")
            assert got == list(range(since, 100))
            assert resumer.still_open() == []
            resumer.close()
            readings.finish(peak_growth_kib=16 * MB, connections=1)
        assert server.health()["slow_consumers_dropped"] == 0


def test_a_prompt_reader_is_never_dropped_for_its_own_echoes() -> None:
    count = 100  # well inside rate_burst (200)
    with watched() as (server, _canary):
        readings = Readings(server)
        echoer = HubWire(server.port, "echoer", rcvbuf=16384)
        echoer.join("solo")
        acks: list[int] = []
        echoes: list[int] = []
        ending: list[str] = []

        def read() -> None:
            try:
                while len(acks) < count or len(echoes) < count:
                    message = echoer.recv_json(timeout=20)
                    if message["type"] == "ack":
                        acks.append(message["id"])
                    elif message["type"] == "message":
                        echoes.append(message["data"]["i"])
            except (AssertionError, Closed, OSError) as error:
                ending.append(repr(error)[:200])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        text = os.urandom(30_000).hex()  # 60 KB, back to back
        for i in range(count):
            echoer.send_json(
                {"type": "publish", "room": "solo", "data": {"i": i, "f": text}, "id": i}
            )
        reader.join(60)
        assert ending == [] and acks == list(range(count)) and echoes == list(range(count))
        assert server.health()["slow_consumers_dropped"] == 0
        echoer.close()
        readings.finish(peak_growth_kib=16 * MB, connections=1)


def flood_pings(flooder: Wire, batches: int) -> int:
    """Masked 125-byte pings, 1,000 per write, never reading; stops when the server
    stops taking them (it paused reading, or closed). Returns the batches sent."""
    batch = encode_frame(b"p" * 125, OP_PING) * 1000
    flooder.sock.settimeout(2)
    for sent in range(batches):
        try:
            flooder.send_raw(batch)
        except (OSError, TimeoutError):
            return sent
    return batches


def close_code_after(flooder: Wire) -> int | None:
    """Read past the pongs to the server's close frame."""
    try:
        while True:
            frame = flooder.recv(timeout=10)
            if frame.opcode == OP_CLOSE:
                return frame.close_code
    except (Closed, OSError):
        return None


def test_a_sustained_ping_flood_is_a_policy_violation() -> None:
    with watched() as (server, _canary):
        readings = Readings(server)
        flooder = HubWire(server.port, "flood")
        flood_pings(flooder, 200)
        assert close_code_after(flooder) == 1008
        flooder.abort()
        health = server.health()
        assert health["closed_for_ping_rate"] == 1 and health["slow_consumers_dropped"] == 0
        readings.finish(peak_growth_kib=16 * MB, connections=1)


def test_pongs_count_against_the_send_buffer_limit() -> None:
    limit = 64 * 1024
    with watched("--ping_rate_limit=0", f"--send_buffer_limit={limit}") as (server, _canary):
        readings = Readings(server)
        flooder = HubWire(server.port, "flood", rcvbuf=4096)  # and it never reads
        flood_pings(flooder, 200)
        wait_for(lambda: server.health()["slow_consumers_dropped"] == 1, 10, what="4001")
        # The close frame goes out if the socket has room; full of pongs, it is a plain drop.
        assert close_code_after(flooder) in (4001, None)
        flooder.abort()
        readings.finish(peak_growth_kib=16 * MB, connections=1)
        assert server.health()["closed_for_ping_rate"] == 0
