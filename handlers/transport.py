"""`hub.peer.Transport` on top of a Tornado WebSocket connection (the fast
one; `handlers.public_transport` has the one for ``--handoff=off``)."""

from __future__ import annotations

from collections.abc import Callable

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from handlers.access_log import NOT_CLOSED, Ending, Traffic
from handlers.tornado_compat import stream_backlog, wire_bytes


class WebSocketTransport:
    """Writes pre-framed bytes straight to the handler's stream.

    Bypassing ``write_message`` skips per-call framing and a Future per
    message; the frames come from `hub.frames`, already complete.
    """

    __slots__ = ("handler", "protocol", "bytes_out", "closed_with")

    fd = -1
    """Never written to directly (see `handlers.batch_writer`): Tornado's stream owns it."""

    def __init__(self, handler: WebSocketHandler) -> None:
        self.handler = handler
        self.protocol = handler.ws_connection  # kept for its byte counts at close
        self.bytes_out = 0  # frames written past Tornado's own counting (straight to the stream)
        self.closed_with = NOT_CLOSED  # our close frame, once we sent one

    def write(self, data: bytes) -> int:
        connection = self.handler.ws_connection
        if connection is None or connection.is_closing():
            return 0  # closing: nothing may follow the close frame
        stream = connection.stream
        try:
            stream.write(data)
        except StreamClosedError:
            return 0
        self.bytes_out += len(data)
        return stream_backlog(stream)

    @property
    def ending(self) -> Ending:
        """Our close code if we closed first, else the client's (Tornado records it)."""
        if self.closed_with is not NOT_CLOSED:
            return self.closed_with
        code = getattr(self.handler, "close_code", None)
        if code is None and self.protocol is not None:
            code = self.protocol.close_code
        return NOT_CLOSED if code is None else Ending(code, "client")

    def traffic(self) -> Traffic:
        """WebSocket bytes both ways: Tornado's counts plus the frames we wrote past it."""
        read, written = wire_bytes(self.protocol)
        return Traffic(bytes_in=read, bytes_out=written + self.bytes_out)

    def backlog(self) -> int:
        connection = self.handler.ws_connection
        if connection is None or connection.stream.closed():
            return 0
        return stream_backlog(connection.stream)

    def on_drained(self, callback: Callable[[], None]) -> None:
        connection = self.handler.ws_connection
        if connection is None or connection.stream.closed():
            return
        try:
            # Resolves once everything written so far has left the stream's buffer.
            flushed = connection.stream.write(b"")
        except StreamClosedError:
            return
        IOLoop.current().add_future(flushed, lambda future: future.exception() or callback())

    def close(self, code: int, reason: str, abort: bool) -> None:
        connection = self.handler.ws_connection
        if connection is None:
            return
        if self.closed_with is NOT_CLOSED and not connection.is_closing():
            self.closed_with = Ending(code, "server")
        self.handler.close(code, reason)
        if abort:
            # The close frame went out if the socket had room; a dead or stuck
            # peer gets no more time than that.
            connection.stream.close()
