"""`hub.peer.Sink` for a connection Tornado keeps (one that negotiated
permessage-deflate, or that ``open()`` refused): frames go straight into its
``IOStream``. `handlers.public_sink` has the one for ``--handoff=off``; a
handed-off connection's sink is its `handlers.socket_connection.SocketConnection`."""

from __future__ import annotations

from collections.abc import Callable

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from handlers.tornado_compat import stream_backlog


class WebSocketSink:
    """Writes pre-framed bytes straight to the handler's stream.

    Bypassing ``write_message`` skips per-call framing and a Future per
    message; the frames come from `hub.frames`, already complete.
    """

    __slots__ = ("handler",)

    fd = -1
    """Never written to directly (see `handlers.fanout.batch_writer`): Tornado's stream owns it."""

    def __init__(self, handler: WebSocketHandler) -> None:
        self.handler = handler

    def write(self, data: bytes) -> int:
        connection = self.handler.ws_connection
        if connection is None or connection.is_closing():
            return 0  # closing: nothing may follow the close frame
        stream = connection.stream
        try:
            stream.write(data)
        except StreamClosedError:
            return 0
        return stream_backlog(stream)

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
