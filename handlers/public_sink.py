"""`hub.peer.Sink` through Tornado's public ``WebSocketHandler`` API only,
for ``--handoff=off``: slower than the fast path, but it needs none of the
internals in `handlers.tornado_compat` beyond the protocol hooks.

The hub frames every message once, for all its members; here each frame is
taken apart again (`hub.frames.split_frames`) and its payload handed to
``write_message``, or to ``ping`` for the heartbeat. Tornado exposes no
write buffer, so the backlog the slow-consumer bound needs is counted from
``write_message``'s futures: the bytes of every message whose write has not
finished yet. That errs high by at most one loop iteration (a future
resolves in the iteration after the kernel took its bytes).
"""

from __future__ import annotations

from asyncio import Future
from functools import partial

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from handlers.sink import WebSocketSink
from hub.frames import OP_BINARY, OP_PING, OP_TEXT, split_frames


class PublicApiSink(WebSocketSink):
    """Writes with ``write_message`` and ``ping``; closes with ``close``."""

    __slots__ = ("in_flight",)

    def __init__(self, handler: WebSocketHandler) -> None:
        super().__init__(handler)
        self.in_flight = 0  # payload bytes whose write_message future is pending

    def write(self, data: bytes) -> int:
        handler = self.handler
        for opcode, payload in split_frames(data):
            try:
                if opcode == OP_PING:
                    handler.ping(payload)
                    continue
                if opcode not in (OP_TEXT, OP_BINARY):
                    raise ValueError(f"the hub writes no frames of opcode {opcode:#x}")
                written = handler.write_message(payload, binary=opcode == OP_BINARY)
            except WebSocketClosedError:
                return 0  # closing: nothing may follow the close frame
            self.in_flight += len(payload)
            written.add_done_callback(partial(self._written, len(payload)))
        return self.in_flight

    def _written(self, size: int, future: Future[None]) -> None:
        self.in_flight -= size
        if not future.cancelled():
            future.exception()  # retrieved: a closed connection is not an error to log

    def backlog(self) -> int:
        connection = self.handler.ws_connection
        if connection is None or connection.is_closing():
            return 0
        return self.in_flight
