"""Hostile WebSocket frames against a real server process (/ws/echo).

Each example opens its own raw connection, sends something a broken or
malicious client might, and checks that the server ends that connection the
way RFC 6455 asks (or at least promptly), while a canary connection opened at
the start keeps being echoed and nothing is logged as an error.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.frames import is_valid_close_code
from tests.hostile.checks import (
    assert_echoes,
    assert_fresh_client_served,
    assert_no_errors_logged,
    wait_connections,
)
from tests.hostile.proc import HubProcess
from tests.hostile.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Wire,
    abort_socket,
    close_payload,
    connect_tcp,
    encode_frame,
    handshake_request,
)

MAX_MESSAGE = 64 * 1024
FUZZ = settings(
    max_examples=120,
    deadline=None,  # each example waits on a real server; bounded by socket timeouts
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server() -> Iterator[HubProcess]:
    with HubProcess(f"--max_message_size={MAX_MESSAGE}") as running:
        yield running


@pytest.fixture(autouse=True)
def still_serving(server: HubProcess, canary: Wire) -> Iterator[None]:
    """After every test: the server is up, the canary echoes, nobody else is
    left connected, and the log shows no exception."""
    mark = server.mark()
    yield
    assert server.alive(), server.log()[-3000:]
    assert_echoes(canary)
    assert_fresh_client_served(server)
    wait_connections(server, 1)
    assert_no_errors_logged(server, since=mark)


def ended_promptly(wire: Wire, timeout: float = 5.0) -> int | None:
    """Say we are done (FIN) and wait for the server to finish; return its close code."""
    wire.half_close()
    try:
        ending = wire.ending(timeout)
    except TimeoutError:
        pytest.fail("server neither closed nor dropped the connection after our FIN")
    return ending.code


# -- frame soup: random but frame-shaped input ------------------------------------


@st.composite
def frame_bytes(draw: st.DrawFn) -> bytes:
    """One frame with any header bits, possibly unmasked and possibly lying about its length."""
    payload = draw(st.binary(max_size=300))
    opcode = draw(st.integers(0, 15))
    if opcode & 0x8 and draw(st.booleans()):
        payload = payload[:125]
    lie = draw(st.one_of(st.none(), st.integers(0, 2**16 + 10), st.integers(0, 2**63 - 1)))
    return encode_frame(
        payload,
        opcode,
        fin=draw(st.booleans()),
        rsv=draw(st.integers(0, 7)) if draw(st.booleans()) else 0,
        masked=draw(st.booleans()) or draw(st.booleans()),
        length=lie,
    )


frame_soup = st.lists(frame_bytes(), min_size=1, max_size=6).map(b"".join)


@FUZZ
@given(data=st.one_of(st.binary(min_size=1, max_size=4096), frame_soup))
def test_random_bytes_after_handshake_end_the_connection_cleanly(
    server: HubProcess, data: bytes
) -> None:
    with Wire(server.port) as wire:
        assert wire.status == 101
        try:
            wire.send_raw(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server already gave up on us: fine
        code = ended_promptly(wire)
    assert code is None or is_valid_close_code(code), code


@FUZZ
@given(
    payload=st.binary(min_size=1, max_size=2000),
    opcode=st.sampled_from([OP_TEXT, OP_BINARY, OP_PING]),
    cut=st.floats(0, 1, exclude_max=True),
    vanish=st.booleans(),
)
def test_truncated_frames_are_cleaned_up(
    server: HubProcess, payload: bytes, opcode: int, cut: float, vanish: bool
) -> None:
    if opcode == OP_PING:
        payload = payload[:125]
    frame = encode_frame(payload, opcode)
    with Wire(server.port) as wire:
        wire.send_raw(frame[: int(len(frame) * cut)])
        if vanish:
            return  # RST via Wire.__exit__; still_serving checks it was forgotten
        ended_promptly(wire)


@pytest.mark.parametrize(
    "length", [MAX_MESSAGE + 1, 2**20, 2**32, 2**63 - 1], ids=["max+1", "1MiB", "4GiB", "2^63-1"]
)
def test_oversized_frame_header_closes_1009_without_waiting_for_the_payload(
    server: HubProcess, length: int
) -> None:
    with Wire(server.port) as wire:
        wire.send_raw(encode_frame(b"x" * 10, OP_BINARY, length=length))
        assert wire.ending(timeout=5).code == 1009


def test_fragments_adding_up_past_the_limit_close_1009(server: HubProcess) -> None:
    piece = b"a" * (MAX_MESSAGE // 2 + 1)
    with Wire(server.port) as wire:
        wire.send_raw(encode_frame(piece, OP_TEXT, fin=False))
        wire.send_raw(encode_frame(piece, OP_CONT, fin=True))
        assert wire.ending(timeout=5).code == 1009


# -- UTF-8 --------------------------------------------------------------------------

INVALID_UTF8 = [
    b"\x80",  # lone continuation byte
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong, 3 bytes
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xff",
    b"\xfe",
    b"\xe2\x82",  # truncated sequence (at the end of the message)
]


def chop(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def send_fragmented(wire: Wire, opcode: int, pieces: list[bytes]) -> None:
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        wire.send_raw(encode_frame(piece, OP_CONT if index else opcode, fin=last))


@FUZZ
@given(
    prefix=st.text(max_size=50),
    bad=st.one_of(
        st.sampled_from(INVALID_UTF8),
        st.binary(min_size=1, max_size=40).filter(lambda b: not _is_utf8(b)),
    ),
    suffix=st.text(max_size=50),
    cuts=st.lists(st.integers(0, 400), max_size=3),
)
def test_invalid_utf8_in_text_closes_1007(
    server: HubProcess, prefix: str, bad: bytes, suffix: str, cuts: list[int]
) -> None:
    message = prefix.encode() + bad + suffix.encode()
    if _is_utf8(message):  # e.g. "\xe2\x82" completed by the suffix
        return
    with Wire(server.port) as wire:
        send_fragmented(wire, OP_TEXT, chop(message, cuts))
        ending = wire.ending(timeout=5)
    assert ending.code == 1007
    assert not [f for f in ending.frames if f.opcode == OP_TEXT], "invalid text was echoed"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(text=st.text(max_size=3000), cuts=st.lists(st.integers(0, 12000), max_size=4))
def test_any_valid_text_is_echoed_exactly_however_fragmented(
    server: HubProcess, text: str, cuts: list[int]
) -> None:
    with Wire(server.port) as wire:
        send_fragmented(wire, OP_TEXT, chop(text.encode(), cuts))
        echo = wire.recv_data(timeout=5)
        assert (echo.opcode, echo.payload) == (OP_TEXT, text.encode())


# -- close frames ---------------------------------------------------------------------


@FUZZ
@given(
    code=st.integers(0, 0xFFFF),
    reason=st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=40)),
)
def test_close_frames_are_echoed_if_valid_and_answered_1002_if_not(
    server: HubProcess, code: int, reason: bytes
) -> None:
    reason = reason[:123]
    with Wire(server.port) as wire:
        wire.send_close(code, reason)
        ending = wire.ending(timeout=5, reply=False)
    valid = is_valid_close_code(code) and _is_utf8(reason)
    assert ending.code == (code if valid else 1002)


@pytest.mark.parametrize(
    ("payload", "expected"), [(b"", None), (b"\x03", 1002)], ids=["empty", "one-byte"]
)
def test_close_without_code(server: HubProcess, payload: bytes, expected: int | None) -> None:
    with Wire(server.port) as wire:
        wire.send_raw(encode_frame(payload, OP_CLOSE))
        ending = wire.ending(timeout=5, reply=False)
    assert ending.close is not None and ending.code == expected


# -- control frames -------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(b"p" * 126, OP_PING),  # control payloads are at most 125 bytes
        encode_frame(b"p", OP_PING, fin=False),  # control frames are never fragmented
        encode_frame(b"orphan", OP_CONT),  # nothing to continue
        encode_frame(b"x", OP_TEXT, rsv=4),  # RSV1 without an extension
        encode_frame(b"x", 0x3),  # reserved data opcode
        encode_frame(b"x", 0xB),  # reserved control opcode
        encode_frame(b"a", OP_TEXT, fin=False) + encode_frame(b"b", OP_TEXT),  # interleaved
    ],
    ids=["long-ping", "fragmented-ping", "orphan-cont", "rsv1", "op3", "op11", "interleaved"],
)
def test_protocol_violations_fail_the_connection(server: HubProcess, frame: bytes) -> None:
    with Wire(server.port) as wire:
        wire.send_raw(frame)
        ending = wire.ending(timeout=5)
    assert ending.eof
    assert ending.code in (None, 1002), ending.code  # RFC 6455 7.1.7: close or just drop


def test_ping_flood_without_reading_keeps_the_server_up(server: HubProcess) -> None:
    """Pongs to a client that never reads are coalesced by Tornado: bounded memory."""
    with Wire(server.port) as wire:
        wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flood = encode_frame(b"p" * 125, OP_PING) * 200
        sent = 0
        wire.sock.settimeout(5)
        try:
            for _ in range(100):  # 20k pings, ~2.6 MB
                wire.send_raw(flood)
                sent += 200
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        assert sent > 0


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_unmasked_client_frames_fail_the_connection(server: HubProcess, opcode: int) -> None:
    """RFC 6455 5.1: a server MUST close the connection on an unmasked client frame."""
    payload = close_payload(1000) if opcode == OP_CLOSE else b"naked"
    with Wire(server.port) as wire:
        wire.send_raw(encode_frame(payload, opcode, masked=False))
        ending = wire.ending(timeout=6)
    assert ending.code in (None, 1002), ending.code
    assert not [f for f in ending.frames if f.payload == b"naked"], "unmasked frame was served"


def test_frames_pipelined_with_the_handshake_are_served(server: HubProcess) -> None:
    """A client may send its first frames right behind the upgrade request."""
    request = handshake_request(server.port) + encode_frame(b"early", OP_TEXT)
    sock = connect_tcp(server.port)
    try:
        sock.sendall(request + encode_frame(b"second", OP_BINARY))
        received = b""
        while received.count(b"early") + received.count(b"second") < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert received.index(b"early") < received.index(b"second")
    finally:
        abort_socket(sock)
