"""Connections that open and vanish, in every state, round after round: the
server keeps serving, forgets them (connections, rooms, descriptors), and its
memory comes back to the baseline instead of growing with each round."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.hostile.checks import (
    assert_echoes,
    assert_fresh_client_served,
    assert_no_errors_logged,
    open_fds,
    wait_fds,
)
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import (
    OP_TEXT,
    Wire,
    abort_socket,
    connect_tcp,
    encode_frame,
    handshake_request,
)
from tests.support import HANDOFF

ROUNDS_WARMUP = 2 if HANDOFF else 6
"""Rounds before the baseline is read. With --handoff=off every connection stays on
Tornado's path (about 18 KB of objects each), and the allocator's pools take a
few more rounds to reach their size: 14 rounds grew by 470 KB a round for four
rounds, then stayed within 0.6 MB."""
ROUNDS_MEASURED = 5
ROOMS = 10  # publishes are ephemeral, so no history grows between rounds
RSS_SLACK_KIB = 3 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[HubProcess]:
    # Pings every 2 s: a write is how the server learns of a peer whose RST it
    # missed (see test_reset_right_after_a_partial_frame_is_noticed); the long
    # ping_timeout keeps the quiet canary from being evicted.
    with HubProcess("--ping_interval=2", "--ping_timeout=60") as running:
        yield running


def one_round(port: int) -> None:
    """~300 connections, each vanishing (mostly RST) at a different stage."""
    request = handshake_request(port)
    for i in range(60):  # TCP only
        sock = connect_tcp(port)
        abort_socket(sock) if i % 2 else sock.close()
    for i in range(60):  # half an HTTP request
        sock = connect_tcp(port)
        sock.sendall(request[: 10 + i])
        abort_socket(sock)
    for i in range(60):  # upgraded, then half a frame
        wire = Wire(port)
        wire.send_raw(encode_frame(os.urandom(200), OP_TEXT)[: 3 + i])
        wire.abort()
    for i in range(60):  # hub client: join, publish, gone without reading or closing
        wire = Wire(port, f"/ws?name=v{i}")
        room = f"vanish-{i % ROOMS}"
        wire.send(json.dumps({"type": "join", "room": room}))
        wire.send(
            json.dumps({"type": "publish", "room": room, "data": "x" * 1000, "ephemeral": True})
        )
        wire.abort()
    for _ in range(30):  # a big echo nobody will read
        wire = Wire(port)
        wire.send(os.urandom(60_000))
        wire.abort()


def settle(server: HubProcess, idle_fds: int) -> dict:
    """Wait until only the canary is left; return /healthz then."""
    health = wait_for(
        lambda: (h := server.health())["connections"] == 1 and h["memberships"] == 0 and h,
        10,
        what="only the canary connected, no memberships",
    )
    assert health["rooms"] == 0 and health["queued_peers"] == 0, health
    assert health["history_rooms"] <= ROOMS, health
    wait_fds(server, idle_fds)
    # Debug counters, where the server reports them: only the canary is left.
    quiet = {"pending_callbacks": 0, "per_ip_entries": 1, "close_timers": 0}
    quiet["handed_off_sockets"] = 1
    wait_for(
        lambda: all(server.health().get(k, v) <= v for k, v in quiet.items()),
        10,
        what=f"debug counters at most {quiet}",
    )
    return health


def test_vanishing_connections_leave_no_trace_and_memory_returns(server: HubProcess) -> None:
    mark = server.mark()
    with Wire(server.port) as canary:
        # Warm-up: allocator pools, caches and descriptors the event loop opens
        # lazily (uvloop keeps one more after the first round) reach their size.
        idle_fds = open_fds(server) + 2
        for _ in range(ROUNDS_WARMUP):
            one_round(server.port)
            settle(server, idle_fds)
        idle_fds = open_fds(server)  # from now on: exactly back to this
        baseline = server.rss_kib()
        readings = []
        for _ in range(ROUNDS_MEASURED):
            one_round(server.port)
            assert_echoes(canary)
            settle(server, idle_fds)
            readings.append(server.rss_kib())
        print(f"\nRSS baseline {baseline} KiB, after each round: {readings}")
        # Within slack of the baseline, and no steady climb round over round.
        assert max(readings) <= baseline + RSS_SLACK_KIB, (baseline, readings)
        assert readings[-1] <= readings[0] + RSS_SLACK_KIB // 2, (baseline, readings)
        assert_fresh_client_served(server)
    assert_no_errors_logged(server, since=mark)


def test_reset_right_after_a_partial_frame_is_noticed() -> None:
    """A peer that sends half a frame and resets at once must be forgotten
    promptly, not at the next ping (25 s by default)."""
    server = HubProcess()
    try:
        for i in range(20):
            wire = Wire(server.port)
            wire.send_raw(encode_frame(os.urandom(200), OP_TEXT)[: 3 + i])
            wire.abort()
        wait_for(lambda: server.health()["connections"] == 0, 2.0, what="all 20 forgotten")
    finally:
        server.stop()
