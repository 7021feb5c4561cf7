"""RFC 6455 strictness that stock Tornado 6.6.1 lacks, added by subclassing.

Tornado's ``WebSocketProtocol13`` echoes any close code it receives (so a peer
sending the reserved code 1005 gets 1005 back, which fails Autobahn 7.9.x), and
it answers invalid UTF-8 in a text message by dropping TCP instead of closing
with 1007.  :class:`StrictWebSocketProtocol` (which `handlers.handoff`
subclasses, and which serves every connection under ``--handoff=off``) fixes
those and a few hostile-input paths (unmasked client frames, corrupt deflate
data, the compressed bit of fragmented messages, extension offers Tornado
cannot honour), without touching Tornado's files or module globals. It hooks
into Tornado only through `handlers.tornado_compat.ProtocolHooks`. See
docs/conformance.md for what each fix is for and the results.
"""

from __future__ import annotations

import zlib
from asyncio import Future
from typing import Any

from tornado import httputil

from handlers.deflate import settings_in
from handlers.tornado_compat import DecompressTooLarge, ProtocolHooks
from hub.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame_problem,
)

# permessage-deflate parameters we can honour (RFC 7692 section 7.1).
_DEFLATE_PARAMS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


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


class StrictWebSocketProtocol(ProtocolHooks):
    """WebSocketProtocol13 that fails bad input with the close code RFC 6455 asks for.

    Each complete message or control frame (`handle_frame`) and the extension
    offers are checked, and the 2-byte header of each frame is looked at as
    Tornado reads it (mask bit, compressed bit); frame parsing, size limits
    and pings stay Tornado's.
    """

    _message_compressed = False  # RSV1 of the first frame of the current data message
    _control_compressed = False  # RSV1 of the latest control frame

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Tornado's close, after the replies the hub still has queued."""
        if not self.server_terminated:
            flush_queued = getattr(self.handler, "flush_queued", None)
            if flush_queued is not None:
                flush_queued()
        super().close(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``; Tornado drops TCP after 5 s.

        Frames still arriving are parsed by Tornado but discarded (see
        `handle_frame`), except the client's close frame, which ends it.
        """
        self.close(code, reason)

    def frame_header(self, first: int, second: int) -> None:
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

    def handle_frame(self, opcode: int, data: bytes) -> Future[None] | None:
        if self.client_terminated:
            return None
        if opcode & 0x8 and self._control_compressed and self.decompressor is not None:
            # RFC 7692: RSV1 is only meaningful on data frames.
            self._fail(CLOSE_PROTOCOL_ERROR, "compressed control frame")
            return None
        if opcode == OP_CLOSE:
            return self._handle_close_frame(data)
        if opcode in (OP_PING, OP_PONG):
            return self.tornado_handle_frame(opcode, data)
        if opcode not in (OP_TEXT, OP_BINARY):
            self._fail(CLOSE_PROTOCOL_ERROR, "unknown opcode")
            return None
        if self.server_terminated:
            # We already sent a close frame: discard data instead of handing the
            # application messages it can no longer answer.
            return None
        compressed = self._message_compressed and self.decompressor is not None
        payload = self._inflate(data) if compressed else data
        if payload is None:
            return None
        if opcode == OP_BINARY:
            return self.deliver(self.handler.on_message, payload, len(payload))
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
            return None
        return self.deliver(self.handler.on_message, text, len(payload))

    def _inflate(self, data: bytes) -> bytes | None:
        """Decompress one message; on failure close the connection, return None."""
        decompressor = self.decompressor
        assert decompressor is not None
        try:
            return decompressor.decompress(data)
        except zlib.error:
            # Corrupt deflate stream: Tornado would let zlib.error escape.
            self._fail(CLOSE_PROTOCOL_ERROR, "bad deflate data")
        except DecompressTooLarge:
            self.close(CLOSE_TOO_BIG, "message too big after decompression")
            self.abort()
        return None

    def _handle_close_frame(self, data: bytes) -> None:
        """Echo a valid close frame (Tornado does that); answer an invalid one with 1002."""
        problem = close_frame_problem(data)
        if problem is None:
            self.tornado_handle_frame(OP_CLOSE, data)
            return None
        # The peer has closed its side; reply once and drop the connection.
        self.client_terminated = True
        self.close(CLOSE_PROTOCOL_ERROR, problem)
        return None

    def extension_offers(
        self, headers: httputil.HTTPHeaders
    ) -> list[tuple[str, dict[str, str | None]]]:
        """Offers parsed with their valueless parameters, minus those we cannot honour.

        Tornado's own parser drops parameters without ``=``, so it would accept
        ``server_no_context_takeover`` without honouring or confirming it
        (RFC 7692 section 7.1.1.1 requires both). Dropping offers we cannot
        honour lets Tornado pick the client's next offer, or none.
        """
        if self.mask_outgoing:  # client side: server responses are Tornado's business
            return self.tornado_extension_offers(headers)
        settings = settings_in(self.compression_settings)
        offers = parse_extension_offers(headers.get("Sec-WebSocket-Extensions", ""))
        return [
            (name, settings.accept(params) if settings and name == "permessage-deflate" else params)
            for name, params in offers
            if name != "permessage-deflate" or acceptable_deflate_offer(params)
        ]

    def compressor_options(
        self, side: str, agreed_parameters: dict[str, Any], compression_options: Any = None
    ) -> dict[str, Any]:
        """Tornado's, but our compressor's window within ``window_bits`` even when
        the client did not ask for a smaller one (a smaller window than agreed
        is always safe for the peer's decompressor)."""
        options = self.tornado_compressor_options(side, agreed_parameters, compression_options)
        settings = settings_in(compression_options)
        if settings is not None and side == "server" and not self.mask_outgoing:
            options["max_wbits"] = min(options["max_wbits"], settings.window_bits)
        return options

    async def receive_frames(self) -> None:
        """Tornado's loop; when it ends the connection is over, and zlib's state
        (hundreds of KB, invisible to the garbage collector) is freed at once
        instead of whenever the collector reaches the objects still referring
        to this protocol (tracebacks of a reset connection do)."""
        try:
            await super().receive_frames()
        finally:
            self.release_compression()
