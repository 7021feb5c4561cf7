"""RFC 6455 in one place, without I/O: opcodes, close codes, close-frame rules,
and the server's frames, built once and reused.

A broadcast is framed once and the same bytes are written to every member's
stream; that is why the hub frames messages itself instead of calling
``write_message`` per member. Server frames are never masked.

Every other module (the hand-off connection's parser `hub.frame_parser`, the Tornado-side
`handlers.strict_protocol`, the hub's rules) takes its constants from here.
"""

from __future__ import annotations

import struct

# Opcodes (RFC 6455 section 5.2).
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_FIN = 0x80

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
# The hub's own codes, from the range RFC 6455 7.4.2 leaves to applications
# (docs/protocol.md lists them).
CLOSE_PING_TIMEOUT = 4000
CLOSE_SLOW_CONSUMER = 4001
CLOSE_UNAUTHORIZED = 4003
CLOSE_TOKEN_EXPIRED = 4004
CLOSE_DISCONNECTED = 4005

MAX_CLOSE_REASON = 123
"""Bytes of reason a close frame can carry: control payloads are at most 125."""


def is_valid_close_code(code: int) -> bool:
    """True if a peer may send ``code`` in a close frame (RFC 6455 section 7.4).

    1004-1006 and 1015 are reserved and must never be on the wire, 1016-2999
    are reserved for future RFCs, 3000-4999 belong to libraries and apps.
    """
    if 1000 <= code <= 1003 or 1007 <= code <= 1014:
        return True
    return 3000 <= code <= 4999


def close_frame_problem(payload: bytes) -> str | None:
    """Why a received close frame's payload is malformed (answer 1002), or None."""
    if len(payload) == 1:
        return "close payload of 1 byte"
    if len(payload) >= 2:
        (code,) = struct.unpack("!H", payload[:2])
        if not is_valid_close_code(code):
            return "invalid close code"
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return "close reason is not UTF-8"
    return None


def close_payload(code: int | None, reason: str) -> bytes:
    """The payload of our close frame: the code, then at most 123 bytes of reason."""
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode()[:MAX_CLOSE_REASON]


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """Return one unfragmented, unmasked frame carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN | opcode, length))
    elif length < 0x10000:
        header = struct.pack("!BBH", _FIN | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN | opcode, 127, length)
    return header + payload


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole, unmasked frame in ``data``, as `frame` built them.

    For a sink that must hand Tornado payloads rather than frames
    (`handlers.public_sink`); ``data`` is always our own output.
    """
    frames = []
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        opcode = data[pos] & 0x0F
        length = data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        frames.append((opcode, bytes(view[pos : pos + length])))
        pos += length
    return frames


PING_FRAME = frame(b"", OP_PING)
"""The heartbeat ping: empty payload, identical for every connection."""
