"""permessage-deflate (``--compression``) under hostile offers and payloads.

Stock Tornado aborts the handshake on an offer it cannot honour and lets a
corrupt deflate stream raise out of its frame loop; handlers/strict_protocol
declines such offers and closes such connections with a proper code.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.checks import assert_no_errors_logged, wait_connections
from tests.hostile.deflate import RSV1, deflate, inflate
from tests.hostile.proc import HubProcess
from tests.hostile.wire import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Wire, encode_frame

MAX_MESSAGE = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[HubProcess]:
    with HubProcess("--compression", f"--max_message_size={MAX_MESSAGE}") as running:
        yield running


@pytest.fixture(autouse=True)
def still_serving(server: HubProcess) -> Iterator[None]:
    mark = server.mark()
    yield
    assert server.alive(), server.log()[-3000:]
    wait_connections(server, 0)
    assert_no_errors_logged(server, since=mark)


def deflate_wire(server: HubProcess, offer: str = "permessage-deflate") -> Wire:
    wire = Wire(server.port, headers={"Sec-WebSocket-Extensions": offer})
    assert wire.status == 101, wire.response_head
    return wire


def agreed(wire: Wire) -> str | None:
    for line in wire.response_head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            return value.strip()
    return None


@pytest.mark.parametrize(
    ("offer", "accepted"),
    [
        ("permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
        ("permessage-deflate; server_max_window_bits=10", "server_max_window_bits=10"),
        ("permessage-deflate; server_no_context_takeover", "server_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=8", None),  # zlib cannot do 8
        ("permessage-deflate; server_max_window_bits=8, permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; server_max_window_bits", None),  # value required
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=abc", None),
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover=yes", None),
        ("permessage-deflate; bogus=1", None),
        ("permessage-deflate; bogus, permessage-deflate", "permessage-deflate"),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_offers_we_cannot_honour_are_declined_not_aborted(
    server: HubProcess, offer: str, accepted: str | None
) -> None:
    with deflate_wire(server, offer) as wire:
        extension = agreed(wire)
        if accepted is None:
            assert extension is None
            wire.send("plain")
            assert wire.recv_data().payload == b"plain"
        else:
            assert extension is not None and accepted in extension
            wire.send(deflate(b"squeezed"), OP_TEXT, rsv=RSV1)
            echo = wire.recv_data()
            assert (inflate(echo.payload) if echo.rsv & RSV1 else echo.payload) == b"squeezed"


def test_corrupt_deflate_data_closes_1002(server: HubProcess) -> None:
    with deflate_wire(server) as wire:
        wire.send(b"\xff\xff\xff\xff garbage", OP_BINARY, rsv=RSV1)
        assert wire.ending(timeout=5).code == 1002


def test_compressed_invalid_utf8_closes_1007(server: HubProcess) -> None:
    with deflate_wire(server) as wire:
        wire.send(deflate(b"ok \xed\xa0\x80 not ok"), OP_TEXT, rsv=RSV1)
        assert wire.ending(timeout=5).code == 1007


def test_decompression_bomb_closes_1009(server: HubProcess) -> None:
    bomb = deflate(b"\x00" * (16 * MAX_MESSAGE))
    assert len(bomb) < MAX_MESSAGE // 16
    with deflate_wire(server) as wire:
        wire.send(bomb, OP_BINARY, rsv=RSV1)
        assert wire.ending(timeout=5).code == 1009


def test_compressed_bit_on_a_control_frame_closes_1002(server: HubProcess) -> None:
    with deflate_wire(server) as wire:
        wire.send_raw(encode_frame(b"ping", OP_PING, rsv=RSV1))
        assert wire.ending(timeout=5).code == 1002


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=st.binary(max_size=500), opcode=st.sampled_from([OP_TEXT, OP_BINARY]))
def test_random_compressed_payloads(server: HubProcess, payload: bytes, opcode: int) -> None:
    with deflate_wire(server) as wire:
        wire.send(payload, opcode, rsv=RSV1)
        wire.send_close(1000)
        ending = wire.ending(timeout=5)
    assert ending.code in (1000, 1002, 1007, 1009), ending.code


def test_unmasked_frame_on_a_compressed_connection_closes_1002(server: HubProcess) -> None:
    """Compressed connections stay on Tornado's reader, which accepts unmasked
    frames; strict_protocol fails them as RFC 6455 5.1 requires."""
    with deflate_wire(server) as wire:
        wire.send_raw(encode_frame(deflate(b"naked"), OP_TEXT, rsv=RSV1, masked=False))
        ending = wire.ending(timeout=6)
    assert ending.code == 1002
    assert not ending.frames


@pytest.mark.parametrize("control", [OP_PING, OP_PONG])
def test_control_frame_between_compressed_fragments(server: HubProcess, control: int) -> None:
    """RFC 6455 5.4: control frames may come between the fragments of a message.
    The compressed bit belongs to the message (its first frame), not to them."""
    body = deflate(b"fragmented and compressed " * 20)
    with deflate_wire(server) as wire:
        wire.send_raw(encode_frame(body[:10], OP_TEXT, fin=False, rsv=RSV1))
        wire.send_raw(encode_frame(b"mid", control))
        wire.send_raw(encode_frame(body[10:], OP_CONT))
        echo = wire.recv_data()
        assert echo.opcode == OP_TEXT
        payload = inflate(echo.payload) if echo.rsv & RSV1 else echo.payload
        assert payload == b"fragmented and compressed " * 20
