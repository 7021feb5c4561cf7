"""Huge integers in client JSON (issue 11, finding 8), against a real server process.

60 KB of 4,291-digit integers used to cost milliseconds per message to parse and
relay; a burst of them stalled everyone. Now each such message gets a
``bad_request`` error, the sender's connection stays open, and a canary
publishing and reading throughout is served promptly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from hub.protocol import MAX_INTEGER_DIGITS
from tests.hostile.canary import Canary, Footprint
from tests.hostile.checks import assert_no_errors_logged, wait_fds
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess
from tests.hubkit import HandHub

BURST = 150


def huge_integers(digits: int, size: int = 60_000) -> str:
    """A JSON list of ``digits``-digit integers, about ``size`` characters long."""
    number = "9" * digits
    return "[" + ",".join([number] * (size // (digits + 1))) + "]"


@pytest.fixture
def server() -> Iterator[HubProcess]:
    with HubProcess("--rate_limit=0") as running:
        yield running


@pytest.mark.parametrize("digits", [4291, MAX_INTEGER_DIGITS + 1])
def test_integers_beyond_the_bound_get_bad_request_and_the_connection_stays(
    server: HubProcess, digits: int
) -> None:
    data = huge_integers(digits)
    footprint = Footprint(server)
    with Canary(server) as canary, HubWire(server.port, name="big") as sender:
        canary.served()
        footprint.read("before")
        sender.join("numbers")
        mark = server.mark()
        for i in range(BURST):
            sender.send(f'{{"type":"publish","room":"numbers","id":{i},"data":{data}}}')
        for i in range(BURST):
            reply = sender.recv_json(timeout=10)
            assert reply["type"] == "error" and reply["code"] == "bad_request", reply
            assert reply["id"] == i and f"{MAX_INTEGER_DIGITS} digits" in reply["detail"]
        footprint.read("during")
        assert sender.still_open() == []  # nothing was relayed, and it is still served
        canary.served()
        canary.check()
        assert_no_errors_logged(server, since=mark)
    _, idle_fds = footprint.readings["before"]
    wait_fds(server, idle_fds - 2)  # canary and sender gone
    rss_after, _ = footprint.read("after")
    assert rss_after < footprint.readings["before"][0] + 20_000, footprint  # KiB


def test_integers_within_the_bound_are_relayed_exactly(server: HubProcess) -> None:
    data = [int("7" * MAX_INTEGER_DIGITS), -(10**20), 3, 1.5e300]
    with HubWire(server.port, name="ok") as sender:
        sender.join("numbers")
        sender.send_json({"type": "publish", "room": "numbers", "id": "n", "data": data})
        relayed = next(m for m in sender.until_id("n") if m["type"] == "message")
        assert relayed["data"] == data
        # A relayed integer is the client's digits, not a rounded float.
        sender.send_json({"type": "publish", "room": "numbers", "id": "m", "data": 2**70})
        frame = [m for m in sender.until_id("m") if m["type"] == "message"]
        assert json.dumps(frame[0]["data"]) == str(2**70)


def test_parse_time_is_charged_against_the_rate() -> None:
    """A message whose parsing takes 5 ms costs 5 tokens, not 1 (hand-driven hub:
    the clock moves 5 ms at every reading, so each parse appears to take 5 ms;
    the first millisecond is the message's own token, the other four are charged)."""
    hand = HandHub(rate_limit=1, rate_burst=10)
    ann = hand.connect("ann")

    def slow_clock() -> float:
        hand.now += 0.005
        return hand.now

    hand.hub.clock = slow_clock
    codes = [hand.say(ann, type="leave", room="r")[0]["code"] for _ in range(4)]
    # 10 tokens: 1 + 4 for the first message, 1 + 4 for the second, none for the third.
    assert codes[:2] == ["not_joined", "not_joined"] and "rate_limited" in codes[2:], codes
