"""The sans-I/O frame parser of handed-off connections (no sockets)."""

import os
import struct
import subprocess
import sys

import pytest

from hub.frame_parser import FrameParser, WireError, parse_close, unmask
from tests.support import REPO


def client_frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + mask + unmask(payload, mask)


def test_whole_frames_in_one_read_and_split_across_reads() -> None:
    parser = FrameParser(1 << 20)
    data = client_frame(b"one") + client_frame(b"\x00" * 70000, opcode=2) + client_frame(b"")
    assert parser.feed(data[:5]) == []
    events = parser.feed(data[5:100]) + parser.feed(data[100:])
    assert events == [(1, b"one"), (2, b"\x00" * 70000), (1, b"")]


def test_fragments_are_assembled_with_control_frames_between() -> None:
    parser = FrameParser(100)
    data = (
        client_frame(b"he", fin=False)
        + client_frame(b"!", opcode=0x9)
        + client_frame(b"llo", opcode=0)
    )
    assert parser.feed(data) == [(0x9, b"!"), (1, b"hello")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(b"x", rsv=0x40), 1002),
        (client_frame(b"x", opcode=3), 1002),
        (client_frame(b"x", opcode=0xB), 1002),
        (client_frame(b"x", opcode=0), 1002),
        (client_frame(b"x" * 126, opcode=0x9), 1002),
        (client_frame(b"x", opcode=0x9, fin=False), 1002),
        (client_frame(b"a", fin=False) + client_frame(b"b"), 1002),
        (client_frame(b"x" * 101), 1009),
        (b"\x81\x05hello", 1002),  # unmasked
    ],
)
def test_violations_set_the_close_code(data: bytes, code: int) -> None:
    parser = FrameParser(100)
    parser.feed(data)
    assert parser.error is not None and parser.error.code == code


def test_events_before_a_violation_are_kept() -> None:
    parser = FrameParser(100)
    events = parser.feed(client_frame(b"first") + client_frame(b"x", rsv=0x20))
    assert events == [(1, b"first")] and parser.error.code == 1002
    assert parser.feed(client_frame(b"ignored")) == []


def test_oversize_is_refused_from_the_header_before_the_payload_arrives() -> None:
    parser = FrameParser(1000)
    parser.feed(client_frame(b"y" * 5000)[:14])
    assert parser.error.code == 1009


def test_close_payloads() -> None:
    assert parse_close(b"") == (None, "")
    assert parse_close(struct.pack("!H", 4001) + "bye é".encode()) == (4001, "bye é")
    for bad, code in [(b"\x03", 1002), (struct.pack("!H", 1005), 1002), (b"\x03\xe8\xff", 1002)]:
        with pytest.raises(WireError) as caught:
            parse_close(bad)
        assert caught.value.code == code


def test_invalid_utf8_fails_at_the_first_bad_fragment() -> None:
    parser = FrameParser(1000)
    assert parser.feed(client_frame("κό".encode(), fin=False)) == []
    assert parser.error is None
    parser.feed(client_frame(b"\xce\xba\xff", opcode=0, fin=False))
    assert parser.error is not None and parser.error.code == 1007


def test_invalid_utf8_fails_before_the_frame_is_complete() -> None:
    parser = FrameParser(1000)
    data = client_frame(b"ok \xf4\x90\x80\x80 and then much more text" * 5)
    assert parser.feed(data[:12]) == [] and parser.error is None
    parser.feed(data[12:20])
    assert parser.error is not None and parser.error.code == 1007


def test_text_split_across_reads_and_fragments_still_arrives_whole() -> None:
    parser = FrameParser(1000)
    text = "grüße, κόσμε, 世界".encode()
    data = client_frame(text[:7], fin=False) + client_frame(text[7:], opcode=0)
    events = [event for i in range(len(data)) for event in parser.feed(data[i : i + 1])]
    assert events == [(1, text)] and parser.error is None


def test_truncated_utf8_at_the_end_of_a_fragmented_message_is_invalid() -> None:
    parser = FrameParser(1000)
    parser.feed(client_frame(b"ab", fin=False) + client_frame(b"\xe2\x82", opcode=0))
    assert parser.error is not None and parser.error.code == 1007


def test_the_parser_and_rfc6455_module_load_without_tornado() -> None:
    """hub.frame_parser and hub.frames are I/O-free: importing them pulls in no Tornado."""
    probe = (
        "import sys, hub.frame_parser, hub.frames; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tornado'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
