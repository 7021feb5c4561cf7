"""Issue 11, finding 3: what compressed connections cost, and that churn of them
gives every byte back.

zlib's state (up to ~300 KB a connection at zlib's defaults) is invisible to
the garbage collector; while reference cycles kept closed connections' objects
alive, it stayed until a rare full collection and RSS grew with every cycle of
connect, talk, close. Each test runs a canary (a client publishing and reading
throughout) and reads RSS and descriptors from /proc before, during and after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.hostile.checks import assert_no_errors_logged, open_fds, wait_connections, wait_fds
from tests.hostile.deflate import RSV1, deflate
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess
from tests.hostile.roundtrip import RoundTripCanary
from tests.hostile.wire import OP_TEXT, Wire

OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
MESSAGE = json.dumps({"text": "squeeze me " * 40}).encode()
CANARY_BOUND_S = 2.0
"""A generous bound on the canary's worst round trip (about 1 ms when idle)."""


@pytest.fixture()
def server() -> Iterator[HubProcess]:
    with HubProcess("--compression") as running:
        yield running


def talk_compressed(port: int, cycle: int) -> Wire:
    """Open a compressed connection and make both zlib directions work once:
    /ws gets a compressed publish (acked), /ws/echo a compressed message it
    sends back compressed."""
    if cycle % 2:
        wire = Wire(port, "/ws/echo", headers=OFFER)
        assert wire.status == 101 and "permessage-deflate" in wire.response_head
        wire.send(deflate(MESSAGE), OP_TEXT, rsv=RSV1)
        assert wire.recv_data().rsv & RSV1
        return wire
    wire = HubWire(port, name="churn", headers=OFFER)
    assert "permessage-deflate" in wire.response_head
    room = f"churn-{cycle % 7}"
    wire.join(room)
    request = {"type": "publish", "room": room, "data": MESSAGE.decode(), "id": "p"}
    wire.send(deflate(json.dumps(request).encode()), OP_TEXT, rsv=RSV1)
    assert wire.until_id("p")[-1]["type"] == "ack"
    return wire


def end(wire: Wire, cycle: int) -> None:
    """Alternate a FIN and an RST, as the issue's attacker did."""
    if cycle % 4 < 2:
        wire.close()
    else:
        wire.abort()


def test_churn_of_compressed_connections_gives_memory_back(server: HubProcess) -> None:
    mark = server.mark()
    with RoundTripCanary(server.port) as canary:
        for cycle in range(200):  # warm-up: the allocator's and Tornado's steady state
            end(talk_compressed(server.port, cycle), cycle)
        wait_connections(server, 1)
        rss_before, fds_before = server.rss_kib(), open_fds(server)
        peak = rss_before
        for cycle in range(1_500):
            end(talk_compressed(server.port, cycle), cycle)
            if cycle % 100 == 0:
                peak = max(peak, server.rss_kib())
        wait_connections(server, 1)
        wait_fds(server, fds_before)
        rss_after = server.rss_kib()
        worst = canary.stop()
    # Measured: +28-40 KiB with the fix; +15.5-16 MB (10 KB a cycle) before it, kept.
    assert rss_after - rss_before < 4_000, (rss_before, peak, rss_after)
    assert worst < CANARY_BOUND_S, worst
    assert_no_errors_logged(server, since=mark)


def test_a_live_compressed_connection_costs_tens_of_kb_and_closing_makes_it_reusable(
    server: HubProcess,
) -> None:
    """Three rounds of 300 live compressed connections, each closed before the next.

    Freed memory may stay with the allocator (a high-water mark), but the next
    round must reuse it instead of growing the process again.
    """
    live = 300
    with RoundTripCanary(server.port) as canary:
        for cycle in range(50):  # warm-up, as above
            end(talk_compressed(server.port, cycle), cycle)
        wait_connections(server, 1)
        fds_before = open_fds(server)
        after_round = []
        for _ in range(3):
            rss_before = server.rss_kib()
            wires = [talk_compressed(server.port, cycle) for cycle in range(live)]
            try:
                wait_connections(server, live + 1)
                if not after_round:
                    per_connection_kib = (server.rss_kib() - rss_before) / live
            finally:
                for cycle, wire in enumerate(wires):
                    end(wire, cycle)
            wait_connections(server, 1)
            wait_fds(server, fds_before)
            after_round.append(server.rss_kib())
        worst = canary.stop()
    # Measured: ~30 KiB each; 178-197 KiB before (a compressor kept per connection).
    assert per_connection_kib < 64, per_connection_kib
    # Measured: +0.3 MB from round 1 to 3; before the fix +56 MB (dead connections kept).
    assert after_round[2] - after_round[0] < 2_000, after_round
    assert worst < CANARY_BOUND_S, worst


def test_the_answer_announces_the_bounds(server: HubProcess) -> None:
    """The server compresses each message on its own and caps the client's window."""
    with Wire(server.port, headers=OFFER) as wire:
        agreed = next(
            line
            for line in wire.response_head.split("\r\n")
            if line.lower().startswith("sec-websocket-extensions")
        )
    assert "server_no_context_takeover" in agreed
    assert "client_max_window_bits=12" in agreed
