"""Server-side WebSocket frames (RFC 6455 section 5.2), built once and reused.

A broadcast is framed once and the same bytes are written to every member's
stream; that is why the hub frames messages itself instead of calling
``write_message`` per member. Server frames are never masked.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
_FIN = 0x80


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


def text_frame(text: str) -> bytes:
    """Frame a text message."""
    return frame(text.encode("utf-8"), OP_TEXT)


PING_FRAME = frame(b"", OP_PING)
"""The heartbeat ping: empty payload, identical for every connection."""
