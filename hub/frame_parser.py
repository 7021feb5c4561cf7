"""Client-to-server WebSocket frames, parsed without I/O (RFC 6455 section 5).

`FrameParser` turns the bytes a client sends into complete messages and
control frames, enforcing the rules a server must: frames masked, reserved
bits clear (no extension is negotiated on this path), control frames short
and unfragmented, continuations only inside a fragmented message, and the
message size limit checked as soon as a frame header arrives, so a client can
never make the server buffer more than ``max_size`` plus one header.

It is the reading half of RFC 6455 beside `hub.frames` (constants, the
server's frames); bytes in, events out, no socket: the hand-off connection
(`handlers.socket_connection`) feeds it.
"""

from __future__ import annotations

import codecs
import struct

from hub.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PONG,
    OP_TEXT,
    close_frame_problem,
)


class WireError(Exception):
    """The client broke the protocol: close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask``, as one big-integer operation."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a client's close frame; `WireError` if it is malformed."""
    problem = close_frame_problem(payload)
    if problem is not None:
        raise WireError(CLOSE_PROTOCOL_ERROR, problem)
    if not payload:
        return None, ""
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8")


class FrameParser:
    """Accumulates client bytes; `feed` returns the (opcode, payload) events completed.

    A protocol violation sets ``error`` instead of raising, so that the events
    completed before it (in the same read) are still handled first, as the
    client expects: answers to earlier messages, then the close.
    """

    __slots__ = (
        "max_size",
        "error",
        "_buffer",
        "_fragments",
        "_fragment_opcode",
        "_utf8",
        "_checked",
    )

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.error: WireError | None = None
        self._buffer = bytearray()
        self._fragments: bytearray | None = None  # a fragmented message in progress
        self._fragment_opcode = 0
        # UTF-8 of a text message that arrives in pieces (fragments, or one frame
        # over several reads) is checked as it comes, so bad text fails at once.
        self._utf8: codecs.IncrementalDecoder | None = None
        self._checked = 0  # bytes of the incomplete frame already checked

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add ``data``; return complete messages (opcode 1/2) and control frames.

        After a violation (see ``error``) nothing more is parsed.
        """
        events: list[tuple[int, bytes]] = []
        if self.error is None:
            try:
                self._parse(data, events)
            except WireError as error:
                self.error = error
        return events

    def _parse(self, data: bytes, events: list[tuple[int, bytes]]) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if first & 0x70:
                raise WireError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise WireError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            opcode = first & 0x0F
            final = first & 0x80
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, pos + 2)
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
                header = 10
            self._check_header(opcode, final, length)
            start = pos + header + 4
            text = opcode == OP_TEXT or (opcode == OP_CONTINUATION and self._fragment_opcode == 1)
            if end - start < length:
                if text and end - start > self._checked:
                    self._check_partial(buffer, start, end)
                break
            payload = unmask(
                bytes(buffer[start : start + length]), bytes(buffer[start - 4 : start])
            )
            pos = start + length
            if text and (self._utf8 is not None or not final):
                self._check_text(payload[self._checked :], bool(final))
            self._checked = 0
            event = self._assemble(opcode, final, payload)
            if event is not None:
                events.append(event)
            del buffer[:pos]
            end -= pos
            pos = 0

    def _check_partial(self, buffer: bytearray, start: int, end: int) -> None:
        """Check the text bytes of a frame that has not fully arrived yet."""
        offset = self._checked
        turn = offset % 4
        mask = bytes(buffer[start - 4 : start])
        self._check_text(unmask(bytes(buffer[start + offset : end]), mask[turn:] + mask[:turn]))
        self._checked = end - start

    def _check_text(self, chunk: bytes, final: bool = False) -> None:
        decoder = self._utf8
        if decoder is None:
            decoder = self._utf8 = codecs.getincrementaldecoder("utf-8")()
        try:
            decoder.decode(chunk, final)
        except UnicodeDecodeError:
            raise WireError(CLOSE_INVALID_DATA, "invalid UTF-8") from None
        if final:
            self._utf8 = None

    def _check_header(self, opcode: int, final: int, length: int) -> None:
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                raise WireError(CLOSE_PROTOCOL_ERROR, "unknown control opcode")
            if length > 125 or not final:
                raise WireError(CLOSE_PROTOCOL_ERROR, "control frames are short and whole")
            return
        if opcode > OP_BINARY:
            raise WireError(CLOSE_PROTOCOL_ERROR, "unknown data opcode")
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                raise WireError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            length += len(self._fragments)
        elif self._fragments is not None:
            raise WireError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        if length > self.max_size:
            raise WireError(CLOSE_TOO_BIG, "message too big")

    def _assemble(self, opcode: int, final: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= OP_CLOSE:
            return opcode, payload
        if opcode == OP_CONTINUATION:
            assert self._fragments is not None
            self._fragments += payload
            if not final:
                return None
            message = bytes(self._fragments)
            self._fragments = None
            return self._fragment_opcode, message
        if final:
            return opcode, payload
        self._fragments = bytearray(payload)
        self._fragment_opcode = opcode
        return None
