"""RFC 6455 strictness that stock Tornado 6.6.1 lacks, added by subclassing.

Tornado's ``WebSocketProtocol13`` echoes any close code it receives (so a peer
sending the reserved code 1005 gets 1005 back, which fails Autobahn 7.9.x), and
it answers invalid UTF-8 in a text message by dropping TCP instead of closing
with 1007.  :class:`StrictWebSocketProtocol` (which `handlers.handoff`
subclasses for every handler) fixes those and a few hostile-input paths (unmasked client frames,
corrupt deflate data, the compressed bit of fragmented messages, extension
offers Tornado cannot honour), without touching Tornado's files or module
globals.  See docs/conformance.md for what each fix is for and the results.
"""

from __future__ import annotations

import struct
import zlib
from asyncio import Future
from typing import Any

from tornado import httputil
from tornado.websocket import (  # the private error is what Tornado's decompressor raises
    WebSocketProtocol13,
    _DecompressTooLargeError,
)

from handlers.deflate import settings_in

# Close codes (RFC 6455 section 7.4.1).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

_OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA

# permessage-deflate parameters we can honour (RFC 7692 section 7.1).
_DEFLATE_PARAMS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


def is_valid_close_code(code: int) -> bool:
    """True if a peer may send ``code`` in a close frame (RFC 6455 section 7.4).

    1004-1006 and 1015 are reserved and must never be on the wire, 1016-2999
    are reserved for future RFCs, 3000-4999 belong to libraries and apps.
    """
    if 1000 <= code <= 1003 or 1007 <= code <= 1014:
        return True
    return 3000 <= code <= 4999


def _window_bits_ok(value: str | None, *, lowest: int, may_be_empty: bool) -> bool:
    if value is None:
        return may_be_empty
    return value.isdigit() and lowest <= int(value) <= 15


def parse_extension_offers(header: str) -> list[tuple[str, dict[str, str | None]]]:
    """``a; x=1; y, b`` -> ``[("a", {"x": "1", "y": None}), ("b", {})]`` (RFC 6455 9.1).

    An offer that repeats a parameter is dropped: RFC 7692 says to decline it.
    """
    offers = []
    for item in header.split(","):
        name, *raw_params = (part.strip() for part in item.split(";"))
        if not name:
            continue
        params: dict[str, str | None] = {}
        for raw in raw_params:
            key, eq, value = raw.partition("=")
            key = key.strip().lower()
            if key in params:
                break
            params[key] = value.strip().strip('"') if eq else None
        else:
            offers.append((name.lower(), params))
    return offers


def acceptable_deflate_offer(params: dict[str, str | None]) -> bool:
    """True if we can accept this permessage-deflate offer as it stands.

    Tornado raises ValueError on unknown parameters (which aborts the
    handshake) and zlib cannot compress with an 8-bit window, so such offers
    are declined instead.
    """
    if not set(params) <= _DEFLATE_PARAMS:
        return False
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if flag in params and params[flag] is not None:
            return False
    if "server_max_window_bits" in params and not _window_bits_ok(
        params["server_max_window_bits"], lowest=9, may_be_empty=False
    ):
        return False
    return "client_max_window_bits" not in params or _window_bits_ok(
        params["client_max_window_bits"], lowest=8, may_be_empty=True
    )


class StrictWebSocketProtocol(WebSocketProtocol13):
    """WebSocketProtocol13 that fails bad input with the close code RFC 6455 asks for.

    ``_handle_message`` (called once per complete message or control frame)
    and ``_parse_extensions_header`` are overridden, and the 2-byte header of
    each frame is looked at as Tornado reads it (mask bit, compressed bit);
    frame parsing, size limits and pings stay Tornado's.
    """

    _at_frame_start = False
    _message_compressed = False  # RSV1 of the first frame of the current data message
    _control_compressed = False  # RSV1 of the latest control frame

    def _fail(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``; Tornado drops TCP after 5 s.

        Frames still arriving are parsed by Tornado but discarded (see
        `_handle_message`), except the client's close frame, which ends it.
        """
        self.close(code, reason)

    async def _receive_frame(self) -> None:
        self._at_frame_start = True
        await super()._receive_frame()

    async def _read_bytes(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if self._at_frame_start:  # Tornado reads a frame's 2-byte header first
            self._at_frame_start = False
            self._note_header(data[0], data[1])
        return data

    def _note_header(self, first: int, second: int) -> None:
        """Check and remember what Tornado does not keep, or keeps per frame.

        Tornado would accept an unmasked client frame, which RFC 6455 5.1 says
        a server MUST fail. And it keeps the compressed bit per frame, so a
        ping between two fragments of a compressed message made it treat the
        message as uncompressed; RFC 7692 ties the bit to the message.
        """
        if not second & 0x80:
            self._fail(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        opcode = first & self.OPCODE_MASK
        if opcode & 0x8:
            self._control_compressed = bool(first & self.RSV1)
        elif opcode != 0:
            self._message_compressed = bool(first & self.RSV1)

    def _handle_message(self, opcode: int, data: bytes) -> Future[None] | None:
        if self.client_terminated:
            return None
        if opcode & 0x8 and self._control_compressed and self._decompressor is not None:
            # RFC 7692: RSV1 is only meaningful on data frames.
            self._fail(CLOSE_PROTOCOL_ERROR, "compressed control frame")
            return None
        if opcode == _OP_CLOSE:
            return self._handle_close_frame(data)
        if opcode in (_OP_PING, _OP_PONG):
            return super()._handle_message(opcode, data)
        if opcode not in (_OP_TEXT, _OP_BINARY):
            self._fail(CLOSE_PROTOCOL_ERROR, "unknown opcode")
            return None
        if self.server_terminated:
            # We already sent a close frame: discard data instead of handing the
            # application messages it can no longer answer.
            return None
        compressed = self._message_compressed and self._decompressor is not None
        payload = self._inflate(data) if compressed else data
        if payload is None:
            return None
        self._message_bytes_in += len(payload)
        if opcode == _OP_BINARY:
            return self._run_callback(self.handler.on_message, payload)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
            return None
        return self._run_callback(self.handler.on_message, text)

    def _inflate(self, data: bytes) -> bytes | None:
        """Decompress one message; on failure close the connection, return None."""
        assert self._decompressor is not None
        try:
            return self._decompressor.decompress(data)
        except zlib.error:
            # Corrupt deflate stream: Tornado would let zlib.error escape.
            self._fail(CLOSE_PROTOCOL_ERROR, "bad deflate data")
        except _DecompressTooLargeError:
            self.close(CLOSE_TOO_BIG, "message too big after decompression")
            self._abort()
        return None

    def _handle_close_frame(self, data: bytes) -> None:
        """Echo a valid close frame (Tornado does that); answer an invalid one with 1002."""
        problem = None
        if len(data) == 1:
            problem = "close payload of 1 byte"
        elif len(data) >= 2:
            (code,) = struct.unpack(">H", data[:2])
            if not is_valid_close_code(code):
                problem = "invalid close code"
            else:
                try:
                    data[2:].decode("utf-8")
                except UnicodeDecodeError:
                    problem = "close reason is not UTF-8"
        if problem is None:
            super()._handle_message(_OP_CLOSE, data)
            return None
        # The peer has closed its side; reply once and drop the connection.
        self.client_terminated = True
        self.close(CLOSE_PROTOCOL_ERROR, problem)
        return None

    def _parse_extensions_header(
        self, headers: httputil.HTTPHeaders
    ) -> list[tuple[str, dict[str, str | None]]]:
        """Offers parsed with their valueless parameters, minus those we cannot honour.

        Tornado's own parser drops parameters without ``=``, so it would accept
        ``server_no_context_takeover`` without honouring or confirming it
        (RFC 7692 section 7.1.1.1 requires both). Dropping offers we cannot
        honour lets Tornado pick the client's next offer, or none.
        """
        if self.mask_outgoing:  # client side: server responses are Tornado's business
            return super()._parse_extensions_header(headers)  # type: ignore[return-value]
        settings = settings_in(self._compression_options)
        offers = parse_extension_offers(headers.get("Sec-WebSocket-Extensions", ""))
        return [
            (name, settings.accept(params) if settings and name == "permessage-deflate" else params)
            for name, params in offers
            if name != "permessage-deflate" or acceptable_deflate_offer(params)
        ]

    def _get_compressor_options(
        self, side: str, agreed_parameters: dict[str, Any], compression_options: Any = None
    ) -> dict[str, Any]:
        """Tornado's, but our compressor's window within ``window_bits`` even when
        the client did not ask for a smaller one (a smaller window than agreed
        is always safe for the peer's decompressor)."""
        options = super()._get_compressor_options(side, agreed_parameters, compression_options)
        settings = settings_in(compression_options)
        if settings is not None and side == "server" and not self.mask_outgoing:
            options["max_wbits"] = min(options["max_wbits"], settings.window_bits)
        return options

    async def _receive_frame_loop(self) -> None:
        """Tornado's loop; when it ends the connection is over, and zlib's state
        (hundreds of KB, invisible to the garbage collector) is freed at once
        instead of whenever the collector reaches the objects still referring
        to this protocol (tracebacks of a reset connection do)."""
        try:
            await super()._receive_frame_loop()
        finally:
            self._compressor = None
            self._decompressor = None
            error = self.stream.error if self.stream is not None else None
            if error is not None:
                error.__traceback__ = None
