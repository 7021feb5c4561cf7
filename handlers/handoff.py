"""Moving a connection from Tornado's WebSocket machinery to `SocketConnection`.

Tornado does the HTTP upgrade and calls the handler's ``open()``. Where it
would then await its frame-reading coroutine for the connection's whole life
(keeping the request, the handler's response state and a chain of suspended
coroutines alive), `HandoffProtocol` passes the socket to a `SocketConnection`
and returns, so all of that is freed.

Connections that negotiated permessage-deflate, or that ``open()`` refused,
stay on Tornado's path (with `StrictWebSocketProtocol`'s fixes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.iostream import IOStream
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from handlers.socket_connection import SocketConnection
from handlers.strict_protocol import StrictWebSocketProtocol
from handlers.transport import stream_backlog


def release_socket(stream: IOStream) -> tuple[Any, bytes] | None:
    """Take the socket out of an idle ``stream`` without closing it.

    Returns the socket and the bytes Tornado had read past the handshake, or
    None when the stream is not idle (unsent output, a read in progress).
    Tornado has no public API for this; the private attributes it touches are
    read here and nowhere else.
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


class HandoffProtocol(StrictWebSocketProtocol):
    """Tornado's protocol for the handshake; a `SocketConnection` afterwards."""

    async def _receive_frame_loop(self) -> None:
        handler: Any = self.handler
        peer = getattr(handler, "peer", None)
        released = None
        if (
            peer is not None
            and self._compressor is None
            and not (self.server_terminated or self.client_terminated)
        ):
            released = release_socket(self.stream)
        if released is None:
            await super()._receive_frame_loop()
            return
        sock, buffered = released
        connection = SocketConnection(handler, self.params.max_message_size, buffered)
        peer.transport = connection
        handler.ws_connection = None
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: connection, sock)
        # After get() returns, Tornado's _execute still reads some handler state;
        # trim the handler on the next loop iteration, once that has finished.
        loop.call_soon(handler.trim_after_handoff)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Tornado's close, after the replies the hub still has queued."""
        if not self.server_terminated:
            flush_queued = getattr(self.handler, "flush_queued", None)
            if flush_queued is not None:
                flush_queued()
        super().close(code, reason)


class HandoffMixin:
    """Put first in a WebSocketHandler's bases to hand connections off after ``open()``.

    Tornado builds its protocol first; we reuse its params so the size and
    compression settings stay exactly Tornado's.
    """

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        stock = WebSocketHandler.get_websocket_protocol(self)  # type: ignore[arg-type]
        if not isinstance(stock, WebSocketProtocol13):
            return stock  # unsupported version: Tornado answers 426
        return HandoffProtocol(self, False, stock.params)  # type: ignore[arg-type]
