"""SocketConnection on a real transport (a socketpair), with a recording handler."""

from __future__ import annotations

import asyncio
import socket
import struct

from handlers.diagnostics import Diagnostics
from handlers.socket_connection import SocketConnection
from tests.hostile.wire import OP_CLOSE, encode_frame
from tests.support import wait_until


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.closed = 0
        self.flushed = 0

    def on_message(self, message: str | bytes) -> None:
        self.messages.append(message)

    def on_pong(self, data: bytes) -> None:
        pass

    def on_close(self) -> None:
        self.closed += 1

    def flush_queued(self) -> None:
        self.flushed += 1


async def read_until_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
        data += chunk
    return data


def test_a_client_gone_before_the_hand_off_is_reported_once_and_not_counted() -> None:
    handler = RecordingHandler()
    counters = Diagnostics()
    connection = SocketConnection(handler, 1024, counters)
    connection.connection_lost(None)
    connection.connection_lost(None)
    assert handler.closed == 1 and counters.open_sockets == 0
    assert connection.write(b"late") == 0


async def test_early_output_first_then_early_input_then_the_close_handshake() -> None:
    server_side, client_side = socket.socketpair()
    client_side.setblocking(False)
    handler = RecordingHandler()
    counters = Diagnostics()
    connection = SocketConnection(handler, 1024, counters)
    connection.write(b"HELLO ")  # written before the transport exists
    connection.received_early(encode_frame(b"early"))
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: connection, server_side)
    assert counters.open_sockets == 1
    await loop.sock_sendall(
        client_side, encode_frame(b"next") + encode_frame(struct.pack("!H", 4002), OP_CLOSE)
    )
    received = await read_until_eof(client_side)  # the server ends TCP after its close frame
    assert received.startswith(b"HELLO ")
    assert received[6:] == b"\x88\x02" + struct.pack("!H", 4002)  # our close echoes the code
    assert handler.messages == ["early", "next"] and handler.closed == 1
    assert handler.flushed == 1  # queued replies were flushed before the close frame
    client_side.close()
    await wait_until(lambda: counters.open_sockets == 0)
    assert counters.armed_timers == 0
