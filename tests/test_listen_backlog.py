"""A connection storm is queued by the kernel, not dropped.

While the server is busy (here: stopped with SIGSTOP, so it accepts nothing),
every client of a burst far beyond Tornado's default listen backlog of 128 gets
its TCP handshake completed at once, and once the server runs again each is
upgraded. With a backlog of 128 the kernel drops the SYNs past it and those
clients wait out 1 s, 3 s, 7 s retransmits: a join storm of 10,000 clients
took seconds longer for it.
"""

from __future__ import annotations

import base64
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.hostile.proc import HubProcess

BURST = 400
"""Clients connecting at once: three times Tornado's default backlog."""
TIMEOUT = 10.0


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process frozen (it accepts nothing) for the block, always resumed after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def connect_all(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    return socks


def handshaken(socks: list[socket.socket], timeout: float) -> int:
    """How many of ``socks`` completed their TCP handshake within ``timeout``."""
    pending = {s.fileno(): s for s in socks}
    done = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(pending.values())[:1000], [], 0.1)
        for sock in writable:
            del pending[sock.fileno()]
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done += 1
    return done


def upgrade(sock: socket.socket, port: int) -> bytes:
    """Send a WebSocket upgrade on ``sock``; the status line of the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.setblocking(True)
    sock.settimeout(TIMEOUT)
    sock.sendall(
        (
            f"GET /ws?name=storm HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    with sock.makefile("rb") as answer:
        return answer.readline().rstrip(b"\r\n")


def test_a_burst_past_tornados_default_backlog_is_queued_and_served() -> None:
    # Every client is on 127.0.0.1: lift the per-address caps (256 pending by default).
    with HubProcess("--max_pending_per_ip=0", "--max_connections_per_ip=0") as server:
        socks: list[socket.socket] = []
        try:
            with stopped(server.pid):
                socks = connect_all(server.port, BURST)
                # Completed by the kernel alone: the server is frozen meanwhile.
                assert handshaken(socks, 3.0) == BURST
            statuses = {upgrade(sock, server.port) for sock in socks}
            assert statuses == {b"HTTP/1.1 101 Switching Protocols"}
            assert server.health()["hub_connections"] == BURST
        finally:
            for sock in socks:
                sock.close()
