"""Stuck readers cost only themselves (issue 10), through real sockets.

One room: a publisher and a healthy member that read everything as fast as
they can, and members that join and then never read again (``SO_RCVBUF`` =
4096 set before connecting). The publisher writes bursts of about 256 KiB of
messages at once (one read of the server's) and sends the next burst only when
every healthy reader has the last one. What must hold: every healthy reader
gets every message, in order, and keeps its connection; each stuck member is
dropped and counted once in ``slow_consumers_dropped``.

On the code before the fix one burst's frames, queued to a member within one
loop iteration and not yet offered to its socket, were counted as a slow
consumer's backlog: every member, the healthy ones first, was dropped (4001).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from handlers.fanout.batch_writer import send_many
from hub.settings import HubSettings
from tests.hostile.hubwire import HubWire
from tests.hostile.threaded import LOOPS, ThreadedServer
from tests.hostile.wire import OP_CLOSE, OP_TEXT, Closed, encode_frame, handshake_request

BIG = 256 * 1024
"""The biggest message size tried; for it the limit is the issue's 256 KiB."""
SMALL_LIMIT = 128 * 1024
"""The limit for smaller messages: half of one read of the server's (256 KiB), so
that any loop's read of a burst passes it (asyncio completes 7 of 8 32 KiB
messages per read, under the issue's 256 KiB limit on their own)."""
DEFLATE = {"Sec-WebSocket-Extensions": "permessage-deflate"}
BURST_BYTES = 256 * 1024
"""Bytes of messages the publisher writes at once: what one read of the server takes."""
TOTAL_BYTES = 3 << 20
"""Bytes published per case: enough for stuck members to pass the limit, bounded in time."""


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


def stuck_member(port: int, name: str, headers: dict[str, str] | None) -> socket.socket:
    """A member that joins and never reads again; its receive buffer is tiny."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(handshake_request(port, f"/ws?name={name}", headers))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    sock.sendall(encode_frame(json.dumps({"type": "join", "room": "r"}).encode(), OP_TEXT))
    return sock


@dataclass
class HealthyReader:
    """A connection read on its own thread as fast as frames come."""

    wire: HubWire
    seen: list[int] = field(default_factory=list)
    others: list[dict] = field(default_factory=list)
    close_code: int | None = None
    ended: bool = False

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                frame = self.wire.recv(timeout=60)
                if frame.opcode == OP_CLOSE:
                    self.close_code = frame.close_code
                    break
                if frame.opcode != OP_TEXT:
                    continue
                message = json.loads(frame.payload)
                if message["type"] == "message":
                    self.seen.append(message["data"]["i"])
                elif message["type"] != "presence":
                    self.others.append(message)
        except (Closed, OSError):
            pass
        self.ended = True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.wire.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.wire.close()


def publish_in_bursts(
    publisher: HubWire, readers: list[HealthyReader], size: int, count: int
) -> None:
    """``count`` messages of ~``size`` bytes, ~BURST_BYTES of them per write,
    each burst once every healthy reader has received the previous one."""
    filler = os.urandom(max(size // 2 - 16, 1)).hex()  # incompressible text
    burst = max(1, BURST_BYTES // size)
    sent = 0
    while sent < count:
        deadline = time.monotonic() + 20
        while any(len(r.seen) < sent for r in readers):
            stalled = [(len(r.seen), r.close_code, r.ended) for r in readers]
            assert time.monotonic() < deadline, f"healthy readers stalled at {sent}: {stalled}"
            assert not any(r.ended for r in readers), f"a healthy reader ended: {stalled}"
            time.sleep(0.002)
        frames = [
            encode_frame(
                json.dumps({"type": "publish", "room": "r", "data": {"i": i, "f": filler}}).encode()
            )
            for i in range(sent, min(sent + burst, count))
        ]
        publisher.send_raw(b"".join(frames))
        sent += len(frames)


@dataclass(frozen=True)
class Case:
    stuck: int = 8
    size: int = 32 * 1024
    loop: str = "uvloop" if "uvloop" in LOOPS else "asyncio"
    send_threads: int | None = None  # None: the server's default
    compression: bool = False
    member: bool = True  # False: the publisher is the only healthy reader (a bystander of its own)

    def __str__(self) -> str:
        threads = "default" if self.send_threads is None else self.send_threads
        return (
            f"{self.stuck}stuck-{self.size}B-{self.loop}-threads{threads}"
            f"-{'deflate' if self.compression else 'plain'}-{'member' if self.member else 'alone'}"
        )


BASE = Case()
CASES = [
    BASE,
    Case(stuck=1),
    Case(stuck=64),
    Case(size=100),
    Case(size=4096),
    Case(size=BIG),
    Case(send_threads=0),
    Case(loop="asyncio"),
    Case(loop="asyncio", send_threads=0),
    Case(compression=True),
    Case(compression=True, size=4096, loop="asyncio"),
    Case(member=False),
    Case(member=False, size=100, stuck=64),
]


@pytest.mark.skipif(send_many is None, reason="handlers.fanout._send_many is not built")
@pytest.mark.parametrize("case", [c for c in CASES if c.loop in LOOPS], ids=str)
def test_stuck_members_are_dropped_and_healthy_readers_get_every_message(case: Case) -> None:
    limit = BIG if case.size >= BIG else SMALL_LIMIT
    settings = HubSettings(
        send_buffer_limit=limit, rate_limit=0, ping_interval=120, ping_timeout=120
    )
    headers = DEFLATE if case.compression else None
    count = max(3, TOTAL_BYTES // case.size)
    before = rss_kib()
    with ThreadedServer(
        case.loop, settings, case.compression, 1 << 20, case.send_threads
    ) as server:
        publisher = HubWire(server.port, "pub", headers=headers)
        publisher.join("r")
        healthy = [publisher]
        if case.member:
            member = HubWire(server.port, "member", headers=headers)
            member.join("r")
            healthy.append(member)
        stuck = [stuck_member(server.port, f"s{i}", headers) for i in range(case.stuck)]
        members = len(healthy) + case.stuck
        server.wait_for(lambda s: s["memberships"] == members)
        readers = [HealthyReader(wire) for wire in healthy]
        try:
            publish_in_bursts(publisher, readers, case.size, count)
            deadline = time.monotonic() + 20
            while any(len(r.seen) < count and not r.ended for r in readers):
                assert time.monotonic() < deadline, [len(r.seen) for r in readers]
                time.sleep(0.005)
            stats = server.wait_for(lambda s: s["connections"] == len(healthy), timeout=20)
            grown = rss_kib() - before
        finally:
            for reader in readers:
                reader.stop()
            for sock in stuck:
                sock.close()
    for reader in readers:
        assert reader.close_code is None, f"a healthy reader was closed: {reader.close_code}"
        assert reader.seen == list(range(count)), "gaps or disorder"
        assert reader.others == []
    assert stats["slow_consumers_dropped"] == case.stuck
    # History (100 messages) plus a few times the limit per stuck member, with room for
    # the allocator and this process's own client buffers.
    assert grown < (100 * case.size + case.stuck * 4 * limit) // 1024 + 64 * 1024, grown


def test_the_rate_limit_error_says_how_to_lift_it_and_names_the_request() -> None:
    """A backend publisher on /ws past the default rate limit learns why, what to
    do, and which of its requests were dropped."""
    with ThreadedServer() as server:
        publisher = HubWire(server.port, "backend")
        publisher.join("r")
        count = HubSettings().rate_burst + 50
        publisher.send_raw(
            b"".join(
                encode_frame(
                    json.dumps({"type": "publish", "room": "r", "data": i, "id": f"p{i}"}).encode()
                )
                for i in range(count)
            )
        )
        answers = [m for m in publisher.until_id(f"p{count - 1}") if m["type"] != "message"]
        publisher.close()
    refused = [m for m in answers if m["type"] == "error"]
    assert refused and all(m["code"] == "rate_limited" for m in refused)
    assert "--rate_limit=0 lifts it" in refused[0]["detail"], refused[0]
    assert sorted(m["id"] for m in answers) == sorted(f"p{i}" for i in range(count))
