"""Every use of Tornado's private internals, and a start-up check that they exist.

Tornado has no public API for what the fast path does: taking the socket out
of an idle IOStream (`release_socket`), reading how much a stream still holds
unsent (`stream_backlog`), dropping a handler's request state once its socket
is gone (`trim_handler`), and hooking into ``WebSocketProtocol13``'s frame
reading for RFC 6455 strictness (`ProtocolHooks`). They are all here, tested
against the pinned Tornado (setup.cfg), so that a Tornado upgrade is checked
in one file: `self_check` names what is missing in one line, and
``--handoff=off`` (docs/performance.md) needs only the protocol hooks.

Nothing outside this module may touch a ``_name`` of a Tornado object.
"""

from __future__ import annotations

import socket
from asyncio import Future
from collections.abc import Callable, Iterable
from typing import Any

import tornado
import tornado.websocket
from tornado import httputil
from tornado.iostream import IOStream
from tornado.websocket import WebSocketHandler, WebSocketProtocol13

SUPPORTED = "6.6.x"
"""The Tornado series these internals were read from (the pin in setup.cfg)."""

STREAM_INTERNALS = ("_read_buffer", "_read_buffer_size", "_state", "_write_buffer")
"""IOStream attributes the hand-off and the Tornado-side backlog read."""
PROTOCOL_METHODS = (
    "_receive_frame",
    "_read_bytes",
    "_handle_message",
    "_abort",
    "_parse_extensions_header",
    "_receive_frame_loop",
    "_run_callback",
    "_get_compressor_options",
)
"""WebSocketProtocol13 methods `ProtocolHooks` overrides or calls."""
PROTOCOL_STATE = ("_decompressor", "_compressor", "_message_bytes_in", "_compression_options")
"""WebSocketProtocol13 instance attributes `ProtocolHooks` reads."""
WEBSOCKET_PRIVATE = ("_DecompressTooLargeError", "_WebSocketParams")
"""Names of tornado.websocket itself used here."""


class UnsupportedTornado(RuntimeError):
    """This Tornado lacks an internal the server relies on."""


def _missing_names(owner: Any, names: Iterable[str]) -> list[str]:
    return [name for name in names if not hasattr(owner, name)]


def self_check(handoff: bool = True) -> None:
    """Raise `UnsupportedTornado` with a one-line message if an internal is missing.

    Probes real objects (a protocol object, and for the hand-off an IOStream
    on a socketpair) because some of the attributes only exist on instances.
    Call it with an IOLoop current (the IOStream needs one).
    """
    websocket = tornado.websocket
    problems = [f"tornado.websocket.{n}" for n in _missing_names(websocket, WEBSOCKET_PRIVATE)]
    missing = _missing_names(WebSocketProtocol13, PROTOCOL_METHODS)
    problems += [f"WebSocketProtocol13.{n}" for n in missing]
    if not problems:
        protocol = WebSocketProtocol13(None, False, websocket._WebSocketParams())  # type: ignore[arg-type]
        problems += [f"WebSocketProtocol13().{n}" for n in _missing_names(protocol, PROTOCOL_STATE)]
    hint = ""
    if handoff:
        ours, theirs = socket.socketpair()
        stream = IOStream(ours)
        stream_problems = [f"IOStream().{n}" for n in _missing_names(stream, STREAM_INTERNALS)]
        stream.close()
        theirs.close()
        if stream_problems and not problems:
            hint = "; or run with --handoff=off, which does without these"
        problems += stream_problems
    if problems:
        raise UnsupportedTornado(
            f"Tornado {tornado.version} is not supported: it lacks {', '.join(problems)} "
            f"(wshub is tested with Tornado {SUPPORTED}: pip install 'tornado>=6.6.1,<6.7'{hint})"
        )


# -- IOStream -----------------------------------------------------------------


def stream_backlog(stream: IOStream) -> int:
    """Bytes written to ``stream`` that the kernel has not accepted yet
    (``_write_buffer`` is a sized buffer; None once closed)."""
    buffer = stream._write_buffer
    return len(buffer) if buffer is not None else 0


def release_socket(stream: IOStream) -> tuple[Any, bytes] | None:
    """Take the socket out of an idle ``stream`` without closing it.

    Returns the socket and the bytes Tornado had read past the handshake, or
    None when the stream is not idle (unsent output, a read in progress).
    """
    if stream.closed() or stream_backlog(stream) or stream.reading():
        return None
    buffered = bytes(stream._read_buffer[: stream._read_buffer_size])
    if stream._state is not None:
        stream.io_loop.remove_handler(stream.socket)
        stream._state = None
    sock = stream.socket
    stream.socket = None  # type: ignore[assignment]
    return sock, buffered


# -- RequestHandler -------------------------------------------------------------


def trim_handler(handler: WebSocketHandler, keep: Iterable[str]) -> None:
    """Keep only the ``keep`` attributes of ``handler``: Tornado's request and
    response state (headers, arguments, the HTTP connection) would otherwise
    stay alive, several KB a connection, after the socket has left Tornado.

    Relies on Tornado not touching the handler again once its ``get()`` has
    returned and a loop iteration has passed (true of 6.6).
    """
    state = handler.__dict__
    handler.__dict__ = {name: state[name] for name in keep if name in state}


def outside_execute(handler: WebSocketHandler) -> WebSocketHandler:
    """Make ``handler`` able to answer (``send_error``) without Tornado's
    ``_execute``, which would have set its output transforms (none here: no
    gzip, no chunking for a refused upgrade)."""
    handler._transforms = []
    return handler


# -- WebSocketProtocol13 --------------------------------------------------------


class _NeverRaised(Exception):
    """Stands in for a missing Tornado exception, so that `self_check` can report it."""


DecompressTooLarge: type[Exception] = getattr(
    tornado.websocket, "_DecompressTooLargeError", _NeverRaised
)
"""What Tornado's decompressor raises past ``max_message_size``."""


def default_protocol_params(handler: WebSocketHandler) -> Any:
    """The params Tornado's own ``get_websocket_protocol`` would build (sizes,
    pings, compression), taken from the protocol object it returns."""
    stock = WebSocketHandler.get_websocket_protocol(handler)
    return stock.params if isinstance(stock, WebSocketProtocol13) else None


class ProtocolHooks(WebSocketProtocol13):
    """``WebSocketProtocol13`` with its private hook points under public names.

    Subclasses override `frame_header`, `handle_frame`, `extension_offers`
    and `receive_frames`, and call the ``tornado_*`` methods for Tornado's own
    behaviour; nothing else in the project names Tornado's private members.
    """

    _at_frame_start = False

    # Hooks for subclasses.

    def frame_header(self, first: int, second: int) -> None:
        """The first two bytes of each frame, as Tornado reads them."""

    def handle_frame(self, opcode: int, data: bytes) -> Future[None] | None:
        """A complete message or control frame (Tornado has reassembled fragments)."""
        return self.tornado_handle_frame(opcode, data)

    def extension_offers(
        self, headers: httputil.HTTPHeaders
    ) -> list[tuple[str, dict[str, str | None]]]:
        """The client's Sec-WebSocket-Extensions offers Tornado may choose from."""
        return self.tornado_extension_offers(headers)

    async def receive_frames(self) -> None:
        """Run for the connection's life after ``open()``: Tornado's frame loop."""
        await super()._receive_frame_loop()

    def compressor_options(
        self, side: str, agreed_parameters: dict[str, Any], compression_options: Any = None
    ) -> dict[str, Any]:
        """The zlib settings of one side's permessage-deflate (de)compressor."""
        return self.tornado_compressor_options(side, agreed_parameters, compression_options)

    # Tornado's own behaviour, and state it keeps privately.

    def tornado_handle_frame(self, opcode: int, data: bytes) -> Future[None] | None:
        return super()._handle_message(opcode, data)

    def tornado_extension_offers(
        self, headers: httputil.HTTPHeaders
    ) -> list[tuple[str, dict[str, str | None]]]:
        return super()._parse_extensions_header(headers)  # type: ignore[return-value]

    def tornado_compressor_options(
        self, side: str, agreed_parameters: dict[str, Any], compression_options: Any = None
    ) -> dict[str, Any]:
        return super()._get_compressor_options(side, agreed_parameters, compression_options)

    @property
    def compression_settings(self) -> Any:
        """The handler's ``get_compression_options()``, as Tornado keeps it."""
        return self._compression_options

    def release_compression(self) -> None:
        """Drop zlib's state (hundreds of KB the garbage collector cannot see) and
        the traceback of a reset stream, which keeps the protocol alive in a cycle."""
        self._compressor = None
        self._decompressor = None
        error = self.stream.error if self.stream is not None else None
        if error is not None:
            error.__traceback__ = None

    @property
    def decompressor(self) -> Any:
        """permessage-deflate's decompressor, None when not negotiated."""
        return self._decompressor

    @property
    def compressing(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return self._compressor is not None

    def abort(self) -> None:
        """Drop the connection now, as Tornado does on a stream error."""
        self._abort()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Tornado's close, also keeping the code of a close the server starts:
        Tornado records only the client's, and drops the socket right after its
        own 1009, so the handler's ``close_code`` would not say how it ended."""
        if self.close_code is None and code is not None:
            self.close_code = code
        super().close(code, reason)

    def deliver(
        self, callback: Callable[[Any], Any], message: str | bytes, size: int
    ) -> Future[None] | None:
        """Hand a message of ``size`` bytes to the handler, counted and guarded
        (an exception is logged and aborts the connection) as Tornado does."""
        self._message_bytes_in += size
        return self._run_callback(callback, message)

    # Tornado's private methods, routed to the hooks.

    async def _receive_frame(self) -> None:
        self._at_frame_start = True
        await super()._receive_frame()

    async def _read_bytes(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if self._at_frame_start:  # Tornado reads a frame's 2-byte header first
            self._at_frame_start = False
            self.frame_header(data[0], data[1])
        return data

    def _handle_message(self, opcode: int, data: bytes) -> Future[None] | None:
        return self.handle_frame(opcode, data)

    def _parse_extensions_header(
        self, headers: httputil.HTTPHeaders
    ) -> list[tuple[str, dict[str, str | None]]]:
        return self.extension_offers(headers)

    async def _receive_frame_loop(self) -> None:
        await self.receive_frames()

    def _get_compressor_options(
        self, side: str, agreed_parameters: dict[str, Any], compression_options: Any = None
    ) -> dict[str, Any]:
        return self.compressor_options(side, agreed_parameters, compression_options)


# -- byte counts, for the access log ---------------------------------------------


def wire_bytes(protocol: Any) -> tuple[int, int]:
    """The bytes Tornado's WebSocket protocol object read and wrote itself
    (``_wire_bytes_in`` / ``_wire_bytes_out``, kept since Tornado 4 for its
    compression statistics); (0, 0) where a version has none. Read once, at close."""
    return getattr(protocol, "_wire_bytes_in", 0), getattr(protocol, "_wire_bytes_out", 0)
