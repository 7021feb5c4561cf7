"""Requests that never finish, and a server run out of descriptors (issue 11, finding 2).

Real server processes with their default timeouts and caps; a canary keeps
publishing and reading throughout, and RSS and descriptors are read from /proc
before, during and after.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.hostile.canary import Canary, Footprint
from tests.hostile.checks import assert_fresh_client_served, wait_fds
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import abort_socket, connect_tcp, handshake_request

BODY_TIMEOUT = 10.0  # server.py: --body_timeout default
PENDING_PER_IP = 256  # server.py: --max_pending_per_ip default
ATTACKER = "127.0.0.2"  # the slow requests come from here; everyone else from 127.0.0.1


def unfinished_request(port: int, i: int) -> bytes:
    """Complete headers announcing a 60,000-byte body that never comes: half
    ``POST /healthz``, half a WebSocket upgrade."""
    if i % 2:
        head = handshake_request(port, "/ws?name=slow").rstrip(b"\r\n")
        return head + b"\r\nContent-Length: 60000\r\n\r\n"
    return (
        f"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 60000\r\n\r\n"
    ).encode()


def answer_or_eof(sock: socket.socket) -> bytes:
    """What the server sends before closing (b"" for a bare close)."""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@pytest.fixture
def server() -> Iterator[HubProcess]:
    with HubProcess() as running:
        yield running


def test_unfinished_requests_are_capped_per_address_and_cut_after_the_body_timeout(
    server: HubProcess,
) -> None:
    footprint = Footprint(server)
    with Canary(server) as canary:
        canary.served()
        _, idle_fds = footprint.read("before")
        held = []
        try:
            for i in range(PENDING_PER_IP + 44):
                sock = connect_tcp(server.port, timeout=BODY_TIMEOUT + 10, source=ATTACKER)
                sock.sendall(unfinished_request(server.port, i))
                held.append(sock)
            # Beyond the per-address cap the server answers 503 at once and closes.
            sock = held.pop()
            assert answer_or_eof(sock).startswith(b"HTTP/1.1 503 "), "no 503 beyond the cap"
            sock.close()
            _, fds = footprint.read("during")
            assert fds <= idle_fds + PENDING_PER_IP + 2, footprint
            # Everyone else is still served: /healthz, a newcomer's handshake, the canary.
            assert server.health()["status"] == "ok"
            assert_fresh_client_served(server)
            canary.served()
            # The body timeout cuts every unfinished request: EOF comes within each
            # socket's timeout (BODY_TIMEOUT + 10 s), else recv raises socket.timeout.
            for sock in held:
                answer_or_eof(sock)
        finally:
            for sock in held:
                abort_socket(sock)
        wait_fds(server, idle_fds)
        footprint.read("after")
        canary.check()
    rss_before, _ = footprint.readings["before"]
    rss_after, _ = footprint.readings["after"]
    assert rss_after < rss_before + 20_000, footprint  # KiB


def test_accept_backs_off_when_descriptors_run_out_and_recovers(tmp_path) -> None:
    """At the open-file limit the accept loop pauses instead of spinning and logs
    at most about once a second; /healthz and handshakes come back once
    descriptors are free again."""
    limit = 300
    with HubProcess(nofile=limit) as server:
        footprint = Footprint(server)
        with Canary(server) as canary:
            canary.served()
            _, idle_fds = footprint.read("before")
            members: list[HubWire] = []
            idle: list[socket.socket] = []
            try:
                for _ in range(150):
                    members.append(HubWire(server.port, name="m"))
                for _ in range(limit - 150 + 60):  # the last ones wait in the listen backlog
                    idle.append(connect_tcp(server.port, timeout=10))
                wait_for(
                    lambda: footprint.read("during")[1] >= limit - 2,
                    what="server at its open-file limit",
                )
                mark = server.mark()
                window_start = time.monotonic()
                time.sleep(3.0)  # the condition under test is "nothing happens": observe it
                window = time.monotonic() - window_start
                accept_lines = [line for line in server.lines[mark:] if "accept" in line]
                assert len(accept_lines) <= window + 3, "".join(accept_lines[:20])
                assert not server.errors(mark), "".join(server.errors(mark)[:20])
                canary.check()
            finally:
                for sock in idle:
                    abort_socket(sock)
                for member in members:
                    member.abort()
            wait_for(lambda: _healthz_ok(server), timeout=10, what="/healthz answers again")
            assert_fresh_client_served(server)
            wait_fds(server, idle_fds + 2)
            rss_after, _ = footprint.read("after")
            canary.check()
        assert rss_after < footprint.readings["before"][0] + 30_000, footprint  # KiB
        assert "accept out of resources" in server.log(), server.log()[-2000:]


def _healthz_ok(server: HubProcess) -> bool:
    try:
        return server.health(timeout=2)["status"] == "ok"
    except OSError:
        return False
