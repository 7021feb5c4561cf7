"""Random JSON and random protocol messages on /ws against a real server process.

Property: whatever a client sends as text, the server answers with protocol
frames only (errors are `{"type":"error","code":...}`), keeps the connection
open, keeps serving everyone else, and logs no exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.checks import assert_no_errors_logged, wait_connections
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server() -> Iterator[HubProcess]:
    # No rate limit here: the fuzzer sends faster than a person would (limits
    # have their own tests); a short history_ttl keeps fuzzed rooms from piling up.
    with HubProcess("--rate_limit=0", "--history_ttl=1") as running:
        yield running


@pytest.fixture(scope="module")
def bystander(server: HubProcess) -> Iterator[HubWire]:
    """A well-behaved client in room "calm"; it must keep being served."""
    wire = HubWire(server.port, "bystander")
    wire.join("calm")
    try:
        yield wire
    finally:
        wire.abort()


@pytest.fixture
def fuzzer(server: HubProcess) -> Iterator[HubWire]:
    wire = HubWire(server.port, "fuzzer")
    try:
        yield wire
    finally:
        wire.abort()


@pytest.fixture(autouse=True)
def still_serving(server: HubProcess, bystander: HubWire) -> Iterator[None]:
    mark = server.mark()
    yield
    assert server.alive(), server.log()[-3000:]
    bystander.send_json({"type": "publish", "room": "calm", "data": "still?", "id": "calm"})
    got = bystander.until_id("calm")
    assert [m["data"] for m in got if m["type"] == "message"] == ["still?"]
    wait_connections(server, 1)
    assert_no_errors_logged(server, since=mark)


def exchange(wire: HubWire, text: str) -> list[dict[str, Any]]:
    """Send ``text``; return the replies up to the probe, which proves the connection lives."""
    wire.send(text)
    return wire.still_open()


# -- strategies -------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
room_names = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True),
    st.text(max_size=80),
    json_values,
)
protocol_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "leave", "publish"]) | st.text(max_size=10) | json_values},
    optional={
        "room": room_names,
        "data": json_values,
        "id": json_values,
        "since": st.integers(-5, 10**20) | json_values,
        "epoch": st.text(max_size=12) | json_values,
        "ephemeral": st.booleans() | json_values,
    },
)


@FUZZ
@given(document=json_values)
def test_random_json_documents_get_protocol_answers(fuzzer: HubWire, document: Any) -> None:
    replies = exchange(fuzzer, json.dumps(document))
    if not isinstance(document, dict):
        assert [r["code"] for r in replies] == ["bad_request"], replies


@FUZZ
@given(message=protocol_messages)
def test_random_protocol_messages_get_protocol_answers(fuzzer: HubWire, message: Any) -> None:
    exchange(fuzzer, json.dumps(message))


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_is_bad_json_unless_it_parses(fuzzer: HubWire, text: str) -> None:
    replies = exchange(fuzzer, text)
    try:
        json.loads(text)
    except ValueError:
        assert [r["code"] for r in replies] == ["bad_json"], replies


@FUZZ
@given(payload=st.binary(max_size=200))
def test_binary_frames_are_refused_but_keep_the_connection(fuzzer: HubWire, payload: bytes) -> None:
    fuzzer.send(payload)
    replies = fuzzer.still_open()
    assert [r["code"] for r in replies] == ["bad_request"], replies


NASTY = {
    "deep-array": "[" * 30_000 + "]" * 30_000,
    "deep-data": '{"type":"publish","room":"r","data":' + "[" * 5000 + "]" * 5000 + "}",
    "deep-but-parseable": '{"type":"publish","room":"r","data":' + "[" * 900 + "]" * 900 + "}",
    "huge-int": '{"type":"publish","room":"r","data":' + "9" * 5000 + "}",
    "inf-float": '{"type":"publish","room":"r","data":1e400}',
    "nan": '{"type":"publish","room":"r","data":NaN}',
    "lone-surrogate-data": '{"type":"publish","room":"r","data":"\\ud800"}',
    "lone-surrogate-id": '{"type":"publish","room":"r","data":1,"id":"\\udfff"}',
    "lone-surrogate-type": '{"type":"\\ud800"}',
    "lone-surrogate-room": '{"type":"join","room":"\\ud800"}',
    "duplicate-keys": '{"type":"join","type":"publish","room":"r","data":1}',
    "nul": '{"type":"publish","room":"r","data":"\\u0000"}',
    "big-string": '{"type":"publish","room":"r","data":"' + "x" * 60_000 + '"}',
    "many-keys": json.dumps({"type": "publish", "room": "r", **{f"k{i}": i for i in range(3000)}}),
    "bool-id": '{"type":"publish","room":"r","data":1,"id":true}',
    "object-id": '{"type":"publish","room":"r","data":1,"id":{"a":1}}',
    "negative-since": '{"type":"join","room":"r","since":-1}',
    "huge-since": '{"type":"join","room":"r","since":' + "9" * 300 + "}",
}


@pytest.mark.parametrize("text", NASTY.values(), ids=NASTY.keys())
def test_nasty_documents(fuzzer: HubWire, text: str) -> None:
    fuzzer.join("r")
    replies = exchange(fuzzer, text)
    assert all(r["type"] in {"error", "message", "ack", "joined", "presence"} for r in replies)
