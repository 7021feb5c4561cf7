"""The hub's abuse limits, pushed by misbehaving clients on real sockets:
message rate (token bucket), rooms per connection, room names, connections per IP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.checks import assert_no_errors_logged, wait_connections
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import Wire

BURST = 5
MAX_ROOMS = 3
PER_IP = 4
ROOM_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def _serve(*args: str) -> Iterator[HubProcess]:
    running = HubProcess(*args)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rated() -> Iterator[HubProcess]:
    # 0.5 token/s: a refill needs 2 s, far longer than these bursts take.
    yield from _serve("--rate_limit=0.5", f"--rate_burst={BURST}")


@pytest.fixture(scope="module")
def capped() -> Iterator[HubProcess]:
    yield from _serve(
        "--rate_limit=0",
        f"--max_rooms_per_connection={MAX_ROOMS}",
        f"--max_connections_per_ip={PER_IP}",
    )


@pytest.fixture(autouse=True)
def no_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whichever server the test used must log no exception during it."""
    servers = [request.getfixturevalue(n) for n in ("rated", "capped") if n in request.fixturenames]
    marks = [s.mark() for s in servers]
    yield
    for server, mark in zip(servers, marks, strict=True):
        assert server.alive()
        assert_no_errors_logged(server, since=mark)


@pytest.fixture
def member(capped: HubProcess) -> Iterator[HubWire]:
    """One /ws connection shared by the examples of a property test."""
    with HubWire(capped.port) as wire:
        yield wire


def close_code(wire: Wire) -> int | None:
    """Read (skipping frames) until the server closes; its close code."""
    return wire.ending(timeout=5).code


# -- message rate -------------------------------------------------------------------------


def test_burst_is_served_then_rate_limited_errors_keep_the_connection(rated: HubProcess) -> None:
    with HubWire(rated.port) as wire:
        for i in range(BURST):
            wire.send_json({"type": "publish", "room": "nowhere", "data": i, "id": i})
            assert wire.recv_json()["code"] == "not_joined"  # served: a real answer
        for _ in range(BURST):  # refused, but not yet closed
            wire.send_json({"type": "publish", "room": "nowhere", "data": 0})
            assert wire.recv_json()["code"] == "rate_limited"


def flood(wire: Wire, frame: bytes | str, count: int) -> None:
    """Send ``count`` frames without reading; stop quietly if the server hangs up."""
    try:
        for _ in range(count):
            wire.send(frame)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_persistent_flooding_is_closed_with_1008(rated: HubProcess) -> None:
    before = rated.health()["closed_for_rate"]
    with HubWire(rated.port) as wire:
        flood(wire, '{"type":"join","room":"flood"}', BURST * 10)
        assert close_code(wire) == 1008
    assert rated.health()["closed_for_rate"] == before + 1
    wait_connections(rated, 0)


def test_replies_queued_before_the_rate_close_are_delivered(rated: HubProcess) -> None:
    """The flooder is told why: its BURST answers and BURST rate_limited errors
    come before the 1008 close, even when all its frames arrive in one read."""
    with HubWire(rated.port) as wire:
        flood(wire, '{"type":"join","room":"flood"}', BURST * 10)
        ending = wire.ending(timeout=5)
    kinds = [
        json.loads(f.payload).get("code", json.loads(f.payload)["type"]) for f in ending.frames
    ]
    assert ending.code == 1008
    assert kinds == ["joined"] * BURST + ["rate_limited"] * BURST, kinds


def test_one_flooder_does_not_limit_anyone_else(rated: HubProcess) -> None:
    with HubWire(rated.port, "calm") as calm, HubWire(rated.port, "flood") as flood:
        for _ in range(BURST * 3):
            flood.send("not json")
        assert close_code(flood) == 1008
        for i in range(BURST):
            calm.send_json({"type": "publish", "room": "nowhere", "data": i, "id": i})
            assert calm.recv_json()["code"] == "not_joined"


@pytest.mark.parametrize(
    "frame", [b"\x00binary", "not json", '{"type":"nope"}'], ids=["binary", "bad-json", "unknown"]
)
def test_every_kind_of_message_counts_against_the_rate(rated: HubProcess, frame) -> None:
    """Otherwise a client could make the server work (and answer) without limit."""
    with HubWire(rated.port) as wire:
        flood(wire, frame, BURST * 4)
        assert close_code(wire) == 1008


def test_rate_limit_zero_turns_it_off(capped: HubProcess) -> None:
    with HubWire(capped.port) as wire:
        for i in range(300):
            wire.send_json({"type": "publish", "room": "nowhere", "data": i, "id": i})
        codes = {wire.recv_json()["code"] for _ in range(300)}
    assert codes == {"not_joined"}


# -- rooms per connection ----------------------------------------------------------------


def test_room_cap_refuses_the_next_room_but_keeps_the_connection(capped: HubProcess) -> None:
    with HubWire(capped.port) as wire:
        for i in range(MAX_ROOMS):
            wire.join(f"room-{i}")
        wire.send_json({"type": "join", "room": "one-too-many"})
        error = wire.expect("error")
        assert error["code"] == "too_many_rooms"
        wire.join("room-0")  # rejoining a room it is in is not a new room
        wire.send_json({"type": "leave", "room": "room-1"})
        assert wire.expect("left")["room"] == "room-1"
        wire.join("one-too-many")  # a freed slot can be used
        assert capped.health()["memberships"] == MAX_ROOMS
    wait_for(lambda: capped.health()["memberships"] == 0, 5, what="memberships back to 0")


def test_many_join_attempts_past_the_cap_leave_no_state(capped: HubProcess) -> None:
    with HubWire(capped.port) as wire:
        for i in range(200):
            wire.send_json({"type": "join", "room": f"spam-{i}"})
        replies = [wire.recv_json() for _ in range(200)]
        assert sum(r["type"] == "joined" for r in replies) == MAX_ROOMS
        health = capped.health()
        assert health["rooms"] == MAX_ROOMS and health["memberships"] == MAX_ROOMS
    wait_for(lambda: capped.health()["rooms"] == 0, 5, what="rooms back to 0")


def test_errors_of_join_and_leave_repeat_the_request_id(capped: HubProcess) -> None:
    """docs/protocol.md: an error caused by a request carrying an id repeats that id."""
    with HubWire(capped.port) as wire:
        for i in range(MAX_ROOMS):
            wire.join(f"r{i}")
        wire.send_json({"type": "join", "room": "r-extra", "id": "j1"})
        assert wire.expect("error").get("id") == "j1"
        wire.send_json({"type": "leave", "room": "not-in-it", "id": "l1"})
        assert wire.expect("error").get("id") == "l1"


# -- room names ---------------------------------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    room=st.one_of(
        st.text(max_size=80),
        st.from_regex(r"[A-Za-z0-9_.:\-]{60,70}", fullmatch=True),
        st.text(st.characters(max_codepoint=127), max_size=70),
    )
)
def test_room_names_are_accepted_exactly_when_valid(member: HubWire, room: str) -> None:
    member.send_json({"type": "join", "room": room, "id": "j"})
    reply = member.recv_json()
    if ROOM_NAME.fullmatch(room):
        assert reply["type"] == "joined" and reply["room"] == room, reply
        member.send_json({"type": "leave", "room": room})
        assert member.expect("left")["room"] == room
    else:
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        assert reply.get("id") == "j"
    member.still_open()


# -- connections per client address -----------------------------------------------------


def test_connections_per_ip_are_capped_and_slots_are_given_back(capped: HubProcess) -> None:
    before = capped.health()["rejected_per_ip"]
    kept: list[Wire] = []
    try:
        for i in range(PER_IP):
            path = "/ws/echo" if i % 2 else "/ws?name=n"
            kept.append(Wire(capped.port, path))
        refused = []
        for _ in range(20):  # a burst of newcomers from the same address
            with Wire(capped.port) as extra:
                assert extra.status == 101
                refused.append(close_code(extra))
        assert refused == [1008] * 20
        health = capped.health()
        assert health["connections"] == PER_IP
        assert health["rejected_per_ip"] == before + 20
        with Wire(capped.port, source="127.0.0.2") as elsewhere:  # another address: its own quota
            assert elsewhere.status == 101
            elsewhere.send("hi")
            assert elsewhere.recv_data().payload == b"hi"
        kept.pop().abort()
        wait_connections(capped, PER_IP - 1)
        with Wire(capped.port) as again:  # the freed slot is usable
            again.send("back")
            assert again.recv_data().payload == b"back"
    finally:
        for wire in kept:
            wire.abort()
    wait_connections(capped, 0)


def test_per_ip_refusals_happen_before_any_hub_state(capped: HubProcess) -> None:
    """A refused connection must not be welcomed, joined, or counted."""
    kept = [Wire(capped.port) for _ in range(PER_IP)]
    try:
        with Wire(capped.port, "/ws?name=late") as late:
            late.send('{"type":"join","room":"sneak"}')
            ending = late.ending(timeout=5)
        assert ending.code == 1008
        assert not [f for f in ending.frames if b"welcome" in f.payload or b"joined" in f.payload]
        assert capped.health()["rooms"] == 0
    finally:
        for wire in kept:
            wire.abort()
    wait_connections(capped, 0)
