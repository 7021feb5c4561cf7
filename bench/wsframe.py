"""Minimal RFC 6455 client framing, just enough for a load generator.

A full client stack (parsing every header, UTF-8 validation, per-frame
objects) would make the load generator slower than the server we measure, so
this module only builds the upgrade request, masked client frames and an
incremental frame splitter used where frames really must be looked at.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# One fixed key is fine for a benchmark: the server only echoes its hash.
WS_KEY = base64.b64encode(b"bench-hub-key-16")
WS_ACCEPT = base64.b64encode(hashlib.sha1(WS_KEY + GUID).digest())

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def upgrade_request(host: str, port: int, path: str) -> bytes:
    """Return the HTTP/1.1 upgrade request for ``path`` (no compression)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def check_upgrade_response(head: bytes) -> str | None:
    """Return None if ``head`` (up to the blank line) is a valid 101, else why not."""
    first, _, rest = head.partition(b"\r\n")
    if b" 101 " not in first + b" ":
        return first.decode("latin-1", "replace")
    if WS_ACCEPT not in rest:
        return "bad Sec-WebSocket-Accept"
    return None


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` using big-int arithmetic (C speed)."""
    n = len(payload)
    if n == 0:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """Build one final, masked client frame (clients must mask, RFC 6455 5.3)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(payload, key)


def close_frame(code: int = 1000) -> bytes:
    """Build a masked close frame with ``code``."""
    return encode_frame(OP_CLOSE, struct.pack("!H", code))


class FrameSplitter:
    """Incrementally split unmasked server frames out of a byte stream.

    ``feed`` returns complete ``(opcode, payload)`` pairs. Fragmented messages
    are reassembled; control frames are returned as they come.
    """

    __slots__ = ("_buf", "_frag_op", "_frag")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frag_op = 0
        self._frag: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            hdr = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            if end - pos < hdr + n:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + n])
            pos += hdr + n
            op = b0 & 0x0F
            fin = b0 & 0x80
            if op >= 0x8:
                out.append((op, payload))
            elif op == OP_CONT:
                self._frag.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frag)))
                    self._frag = []
            elif fin:
                out.append((op, payload))
            else:
                self._frag_op = op
                self._frag = [payload]
        if pos:
            del buf[:pos]
        return out

    def take_rest(self) -> bytes:
        """Return and forget buffered bytes (used when switching to counting)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest
