"""`hub.peer.Sink` for a connection Tornado keeps (one that negotiated
permessage-deflate, or that ``open()`` refused): frames go straight into its
``IOStream``. `handlers.public_sink` has the one for ``--handoff=off``; a
handed-off connection's sink is its `handlers.socket_connection.SocketConnection`."""

from __future__ import annotations

from collections.abc import Callable

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from handlers.access_log import Traffic
from handlers.tornado_compat import stream_backlog, wire_bytes


class WebSocketSink:
    """Writes pre-framed bytes straight to the handler's stream.

    Bypassing ``write_message`` skips per-call framing and a Future per
    message; the frames come from `hub.frames`, already complete.
    """

    __slots__ = ("handler", "protocol", "bytes_out")

    fd = -1
    """Never written to directly (see `handlers.fanout.batch_writer`): Tornado's stream owns it."""

    def __init__(self, handler: WebSocketHandler) -> None:
        self.handler = handler
        self.protocol = handler.ws_connection  # kept for its byte counts at close
        self.bytes_out = 0  # frames written past Tornado's own counting (straight to the stream)

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
        self.handler.close(code, reason)
        if abort:
            # The close frame went out if the socket had room; a dead or stuck
            # peer gets no more time than that.
            connection.stream.close()
