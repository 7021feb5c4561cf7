"""A WebSocket connection after the handshake, on the event loop's own transport.

Tornado performs the HTTP upgrade and calls ``open()``; then `handoff` moves
the socket to an asyncio transport (uvloop's, in C, when installed) with this
protocol on top. What stays per connection is the transport, this object, its
parser and a trimmed handler: about 2 KB, where Tornado's own machinery (a
suspended coroutine chain and Task, the request, an IOStream) costs 15 KB. It
is also a shorter path for every frame in and out.

Writes go to the transport, which sends at once what the kernel takes and
buffers the rest (``backlog``); the hub bounds that by ``send_buffer_limit``.
While that buffer is empty, ``fd`` names the socket so that the batch writer
(`handlers.fanout.batch_writer`) may send to it directly; the transport tells us when
its buffer fills and drains (pause_writing / resume_writing, with a high-water
mark of 0), so keeping ``fd`` right costs nothing per write.

Where a connection is in its life is one `ConnectionState`; `NEXT_STATES`
lists the moves it may make, and every move is checked against it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from handlers.access_log import Traffic, tcp_traffic
from handlers.diagnostics import Diagnostics
from hub.frame_parser import FrameParser, WireError, parse_close
from hub.frames import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_payload,
    frame,
)
from hub.metrics import CLOSE_NO_STATUS

log = logging.getLogger("wshub.connection")

CLOSE_HANDSHAKE_TIMEOUT = 5.0
"""Seconds the closing handshake may take before the socket is dropped, as in Tornado."""

PAUSE_READING_ABOVE = 64 * 1024
"""Unsent bytes to a client above which we stop reading from it until they have
left: what it asks for (echoes of its publishes, pongs, replies) then waits for
its own reads, so a prompt reader is paced instead of piling up output, and a
client that never reads cannot make us produce more for it."""


class ConnectionState(Enum):
    """Where one connection is in its life (see `NEXT_STATES` for the moves)."""

    OPEN = "open"
    """Frames flow both ways; output written before the transport exists waits
    in an early buffer until `SocketConnection.connection_made`."""
    CLOSING = "closing"
    """Our close frame is out, nothing may follow it; input is still read, for
    the client's close frame, for at most ``CLOSE_HANDSHAKE_TIMEOUT``."""
    DROPPING = "dropping"
    """Closing, and dropped before the transport existed: `connection_made`
    aborts it at once."""
    FINISHING = "finishing"
    """The WebSocket is closed and the handler told; TCP is ending (our EOF is
    out, input is read and ignored until the client's EOF or the timeout)."""
    CLOSED = "closed"
    """The transport is gone, or never came (the client left before the hand-off)."""


OPEN, CLOSING, DROPPING, FINISHING, CLOSED = ConnectionState  # read on every frame in and out

NEXT_STATES: dict[ConnectionState, frozenset[ConnectionState]] = {
    OPEN: frozenset({CLOSING, CLOSED}),  # we send a close frame; the socket dies
    CLOSING: frozenset({DROPPING, FINISHING, CLOSED}),  # dropped early; client's close; gone
    DROPPING: frozenset({FINISHING, CLOSED}),  # the client's close came with the handshake
    FINISHING: frozenset({CLOSED}),
    CLOSED: frozenset({CLOSED}),  # a second connection_lost changes nothing
}
"""The moves `SocketConnection._enter` allows; anything else is a bug."""


class SocketConnection(asyncio.Protocol):
    """One client connection: parses frames in, writes ready-made frames out.

    It is the peer's `hub.peer.Sink` (the hub writes into it); ``transport`` is
    the asyncio transport under it. Events go to the handler's ``on_message``,
    ``on_pong`` and, once, ``on_close``.
    """

    __slots__ = (
        "transport",
        "fd",
        "_socket_fd",
        "handler",
        "parser",
        "_buffered",
        "_early",
        "_connection_state",
        "_timer",
        "_reading_paused",
        "_on_drained",
        "counters",
        "close_code",
    )

    def __init__(
        self, handler: Any, max_message_size: int, counters: Diagnostics | None = None
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # the socket while nothing is queued in user space and it is open, else -1
        self._socket_fd = -1
        self.handler = handler
        self.parser = FrameParser(max_message_size)
        self._buffered = b""  # what arrived with the handshake, handled first
        self._early: list[bytes] | None = []  # written before the transport existed
        self._connection_state = OPEN
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False  # paused by our own backlog (PAUSE_READING_ABOVE)
        self._on_drained: list[Callable[[], None]] | None = None  # see `on_drained`
        self.counters = counters or Diagnostics()  # the server's, for /healthz
        self.close_code: int | None = None  # the first close frame's, sent or received

    def received_early(self, data: bytes) -> None:
        """Bytes the client sent right behind its handshake, before the hand-off."""
        self._buffered = data

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        return self._connection_state

    def _enter(self, state: ConnectionState) -> None:
        now = self._connection_state
        assert state in NEXT_STATES[now], f"{now.name} -> {state.name}"
        self._connection_state = state

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send what was written meanwhile, replay a close decided meanwhile,
        then handle what arrived with the handshake."""
        self.transport = transport  # type: ignore[assignment]
        self.counters.open_sockets += 1
        transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        # Direct sends only on a plain socket: under TLS they would bypass the encryption.
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self._socket_fd = sock.fileno()
            if self._connection_state is OPEN:
                self.fd = self._socket_fd
        early, self._early = self._early, None
        if early:
            self.transport.write(b"".join(early))
        state = self._connection_state
        if state is DROPPING:
            self._drop()
        elif state is FINISHING:
            self._end_tcp()
        elif state is not OPEN:
            self._arm_timer()
        buffered, self._buffered = self._buffered, b""
        if buffered:
            self.data_received(buffered)

    def data_received(self, data: bytes) -> None:
        if self._connection_state is FINISHING:
            return  # draining until the client closes too
        events = self.parser.feed(data)
        handler = self.handler
        for opcode, payload in events:
            if self._connection_state is FINISHING:
                return
            if opcode == OP_TEXT:
                if self._connection_state is not OPEN:
                    continue  # closing: the application can no longer answer
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
                    return
                self._dispatch(handler.on_message, text)
            elif opcode == OP_BINARY:
                if self._connection_state is OPEN:
                    self._dispatch(handler.on_message, payload)
            elif opcode == OP_PING:
                self._dispatch(self._answer_ping, payload)
            elif opcode == OP_PONG:
                self._dispatch(handler.on_pong, payload)
            else:
                self._on_close_frame(payload)
        error = self.parser.error
        if error is not None:
            self._fail(error.code, error.reason)

    def eof_received(self) -> bool:
        return False  # the client is gone: close our side too

    def pause_writing(self) -> None:
        """The transport holds unsent bytes: direct sends would overtake them."""
        self.fd = -1

    def resume_writing(self) -> None:
        """The transport's buffer is empty again."""
        if self._connection_state is OPEN:
            self.fd = self._socket_fd
        self._resume_reading()
        self._run_drained()

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is gone (or never came: the client left before the hand-off)."""
        self.fd = -1
        if self.transport is not None:
            self.counters.open_sockets -= 1
        self._enter(CLOSED)
        self._early = None
        self._on_drained = None
        self._disarm_timer()
        self._notify_handler()
        self.transport = None

    # -- hub.peer.Sink ----------------------------------------------------------

    def write(self, data: bytes) -> int:
        if self._connection_state is not OPEN:
            return 0  # nothing may follow a close frame
        transport = self.transport
        if transport is None:
            early = self._early
            assert early is not None  # open, and no transport yet: it buffers
            early.append(data)
            return self.backlog()
        transport.write(data)
        backlog = transport.get_write_buffer_size()
        if backlog > PAUSE_READING_ABOVE and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        return backlog

    def backlog(self) -> int:
        transport = self.transport
        if transport is None:
            return sum(map(len, self._early)) if self._early else 0
        return 0 if self._connection_state is CLOSED else transport.get_write_buffer_size()

    def on_drained(self, callback: Callable[[], None]) -> None:
        """``callback()`` once the transport's buffer is empty (soon, if it is)."""
        if self._connection_state is CLOSED:
            return
        if self._on_drained is None:
            self._on_drained = []
        self._on_drained.append(callback)
        if self.transport is not None and not self.transport.get_write_buffer_size():
            asyncio.get_running_loop().call_soon(self._run_drained)

    def close(self, code: int, reason: str, abort: bool) -> None:
        """Send a close frame; then wait for the client's (or, with ``abort``, don't)."""
        if self._connection_state is not OPEN:
            return
        self._send_close(code, reason)
        if abort:
            self._drop()
        else:
            self._arm_timer()

    def traffic(self) -> Traffic | None:
        """The bytes the TCP connection carried so far, by the kernel's count
        (read at close: nothing is counted per frame)."""
        transport = self.transport
        if transport is None:
            return None
        return tcp_traffic(transport.get_extra_info("socket"))

    # -- output pacing ----------------------------------------------------------

    def _answer_ping(self, payload: bytes) -> None:
        """A pong is output like any other: a hub peer's goes through the hub, which
        counts it against the send buffer limit and the ping rate."""
        handler = self.handler
        if handler is None:
            return  # closed meanwhile
        pong = frame(payload, OP_PONG)
        peer = getattr(handler, "peer", None)
        if peer is None:
            self.write(pong)  # not (or not yet) registered: nothing to count it against
            handler.on_pong(payload)
        else:
            handler.hub.ping(peer, pong)

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and self._connection_state is not CLOSED:
                self.transport.resume_reading()

    def _run_drained(self) -> None:
        callbacks, self._on_drained = self._on_drained, None
        if callbacks and self._connection_state is not CLOSED:
            if self.transport is not None and self.transport.get_write_buffer_size():
                self._on_drained = callbacks  # filled again meanwhile: at the next drain
                return
            for callback in callbacks:
                callback()

    # -- closing ----------------------------------------------------------------

    def _dispatch(self, callback: Any, argument: Any) -> None:
        try:
            callback(argument)
        except Exception:
            log.exception("error handling a WebSocket frame; closing the connection")
            self._fail(CLOSE_INTERNAL_ERROR, "internal error")

    def _on_close_frame(self, payload: bytes) -> None:
        try:
            code, _ = parse_close(payload)
        except WireError as error:
            self._fail(error.code, error.reason)
            return
        if self._connection_state is OPEN:  # (_send_close records the code)
            self._send_close(code, "")  # echo the client's code (RFC 6455 5.5.1)
        self._finish()

    def _fail(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_: close frame with ``code``, then end TCP."""
        if self._connection_state is OPEN:
            self._send_close(code, reason)
        self._finish()

    def _send_close(self, code: int | None, reason: str) -> None:
        """OPEN -> CLOSING: the replies still queued, then our close frame."""
        if self.close_code is None:
            self.close_code = CLOSE_NO_STATUS if code is None else code
        if self.handler is not None:
            self.handler.flush_queued()
        self.write(frame(close_payload(code, reason), OP_CLOSE))
        self._enter(CLOSING)
        self.fd = -1
        self._resume_reading()  # the client's close frame must be read

    def _finish(self) -> None:
        """The WebSocket is closed: tell the handler now; end TCP once our frames
        are out (the server closes first), still reading until the client closes
        too, so that unread input cannot turn our FIN into a reset that destroys
        the close frame in flight."""
        if self._connection_state is FINISHING or self._connection_state is CLOSED:
            return
        self._enter(FINISHING)
        self.fd = -1
        self._notify_handler()
        if self.transport is not None:  # else connection_made ends TCP
            self._end_tcp()

    def _end_tcp(self) -> None:
        """Our EOF once our frames are out (or, where TCP cannot half-close, a drop)."""
        transport = self.transport
        assert transport is not None
        if transport.can_write_eof():
            transport.write_eof()
            self._arm_timer()
        else:
            self._drop()

    def _drop(self) -> None:
        """Drop the connection now, unsent output and all."""
        self.fd = -1
        if self.transport is None:
            if self._connection_state is not CLOSED:
                self._enter(DROPPING)  # connection_made aborts it
        elif self._connection_state is not CLOSED:
            self.transport.abort()

    def _arm_timer(self) -> None:
        """Bound the closing handshake: the connection is dropped after the timeout."""
        closed = self._connection_state is CLOSED
        if self._timer is None and not closed and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(CLOSE_HANDSHAKE_TIMEOUT, self._drop)
            self.counters.armed_timers += 1

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.counters.armed_timers -= 1

    def _notify_handler(self) -> None:
        handler, self.handler = self.handler, None
        if handler is None:
            return
        handler.close_code = self.close_code  # as Tornado sets it (and on_close reads it)
        try:
            handler.on_close()
        except Exception:
            log.exception("error in on_close")
