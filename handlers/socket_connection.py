"""A WebSocket connection after the handshake, owning its socket directly.

Tornado performs the HTTP upgrade and calls ``open()``; then `handoff` moves
the socket here. What stays per connection is this object, its parser, the
socket and a trimmed handler: a few KB, where Tornado's own machinery (a
suspended coroutine chain and Task, the request, an IOStream) costs three
times that. It is also a shorter path for every frame in and out.

Writes go straight to the socket; only what the kernel does not take is kept
(``backlog``), and the hub bounds that by ``send_buffer_limit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

from handlers.wire import (
    CLOSE_INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    WireError,
    parse_close,
)
from hub.frames import frame

log = logging.getLogger("wshub.connection")

CLOSE_HANDSHAKE_TIMEOUT = 5.0
"""Seconds to wait for the client's close frame after ours, as Tornado does."""
RECV_SIZE = 65536


class SocketConnection:
    """One client socket: reads and parses frames, writes ready-made ones.

    Implements `hub.peer.Transport`. Events go to the handler's ``on_message``,
    ``on_pong`` and, once, ``on_close``.
    """

    open_sockets = 0
    """Sockets handed off and not yet closed, in this process (for /healthz)."""
    armed_timers = 0
    """Close-handshake timeouts currently armed (for /healthz)."""

    __slots__ = (
        "sock",
        "fd",
        "loop",
        "handler",
        "parser",
        "_out",
        "_queued",
        "_close_sent",
        "_finishing",
        "_closed",
        "_timer",
    )

    def __init__(self, sock: socket.socket, handler: Any, max_message_size: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = asyncio.get_running_loop()
        self.handler = handler
        self.parser = FrameParser(max_message_size)
        self._out: list[bytes] | None = None  # what the kernel did not take yet
        self._queued = 0  # bytes in _out
        self._close_sent = False  # our close frame is queued: nothing may follow it
        self._finishing = False  # the close handshake is decided: drain, then close
        self._closed = False  # the socket is closed
        self._timer: asyncio.TimerHandle | None = None

    def start(self, buffered: bytes) -> None:
        """Begin reading; ``buffered`` is what arrived with the handshake."""
        self.sock.setblocking(False)
        self.loop.add_reader(self.fd, self._on_readable)
        SocketConnection.open_sockets += 1
        if buffered:
            self._receive(buffered)

    # -- Transport ------------------------------------------------------------

    def write(self, data: bytes) -> int:
        if self._close_sent:
            return 0  # nothing may follow a close frame
        if self._out is not None:
            self._out.append(data)
            self._queued += len(data)
            return self._queued
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return 0
        if sent < len(data):
            self._out = [data[sent:]]
            self._queued = len(data) - sent
            self.loop.add_writer(self.fd, self._on_writable)
        return self._queued

    def backlog(self) -> int:
        return self._queued

    def close(self, code: int, reason: str, abort: bool) -> None:
        """Send a close frame; then wait for the client's (or, with ``abort``, don't)."""
        if self._closed or self._close_sent:
            return
        self._send_close(code, reason)
        if abort:
            self._lost()
        else:
            self._arm_timer()

    # -- reading --------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        if not self._finishing:
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except WireError as error:
            self._fail(error.code, error.reason)
            return
        handler = self.handler
        for opcode, payload in events:
            if self._finishing or self._closed:
                return
            if opcode == OP_TEXT:
                if self._close_sent:
                    continue  # closing: the application can no longer answer
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(CLOSE_INVALID_DATA, "invalid UTF-8")
                    return
                self._dispatch(handler.on_message, text)
            elif opcode == OP_BINARY:
                if not self._close_sent:
                    self._dispatch(handler.on_message, payload)
            elif opcode == OP_PING:
                self.write(frame(payload, OP_PONG))
                self._dispatch(handler.on_pong, payload)
            elif opcode == OP_PONG:
                self._dispatch(handler.on_pong, payload)
            else:
                self._on_close_frame(payload)

    def _dispatch(self, callback: Any, argument: Any) -> None:
        try:
            callback(argument)
        except Exception:
            log.exception("error handling a WebSocket frame; closing the connection")
            self._fail(1011, "internal error")

    def _on_close_frame(self, payload: bytes) -> None:
        try:
            code, _ = parse_close(payload)
        except WireError as error:
            self._fail(error.code, error.reason)
            return
        if not self._close_sent:
            self._send_close(code, "")  # echo the client's code (RFC 6455 5.5.1)
        self._finish()

    def _fail(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_: close frame with ``code``, then end TCP."""
        if not self._close_sent:
            self._send_close(code, reason)
        self._finish()

    def _finish(self) -> None:
        """The WebSocket is closed: tell the handler now; end TCP once our frames
        are out (the server closes first), reading and discarding until the
        client closes too, so that unread input cannot turn our FIN into a reset
        that destroys the close frame in flight."""
        if self._finishing or self._closed:
            return
        self._finishing = True
        self._notify_handler()
        if self._out is None:
            self._shutdown_write()
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Bound the closing handshake: the socket is closed within the timeout."""
        if self._timer is None and not self._closed:
            self._timer = self.loop.call_later(CLOSE_HANDSHAKE_TIMEOUT, self._lost)
            SocketConnection.armed_timers += 1

    def _shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._lost()

    def _send_close(self, code: int | None, reason: str) -> None:
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()[:123]
        self.write(frame(payload, OP_CLOSE))
        self._close_sent = True

    # -- writing and teardown ---------------------------------------------------

    def _on_writable(self) -> None:
        out = self._out
        while out:
            chunk = out[0]
            try:
                sent = self.sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._lost()
                return
            self._queued -= sent
            if sent < len(chunk):
                out[0] = chunk[sent:]
                return
            out.pop(0)
        self._out = None
        self.loop.remove_writer(self.fd)
        if self._finishing:
            self._shutdown_write()

    def _lost(self) -> None:
        """Close the socket (whatever state it is in) and tell the handler, once."""
        if self._closed:
            return
        self._closed = True
        self._close_sent = True
        SocketConnection.open_sockets -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            SocketConnection.armed_timers -= 1
        self.loop.remove_reader(self.fd)
        if self._out is not None:
            self.loop.remove_writer(self.fd)
            self._out = None
            self._queued = 0
        with contextlib.suppress(OSError):
            self.sock.close()
        self._notify_handler()

    def _notify_handler(self) -> None:
        handler, self.handler = self.handler, None
        if handler is None:
            return
        try:
            handler.on_close()
        except Exception:
            log.exception("error in on_close")
