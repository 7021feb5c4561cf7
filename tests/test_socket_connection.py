"""SocketConnection on a real transport (a socketpair), with a recording handler."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from handlers.diagnostics import Diagnostics
from handlers.socket_connection import NEXT_STATES, ConnectionState, SocketConnection
from tests.hostile.wire import OP_CLOSE, encode_frame
from tests.support import wait_until


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.closed = 0
        self.flushed = 0
        self.connection: SocketConnection | None = None  # whose state on_close records
        self.state_at_close: ConnectionState | None = None

    def on_message(self, message: str | bytes) -> None:
        self.messages.append(message)

    def on_pong(self, data: bytes) -> None:
        pass

    def on_close(self) -> None:
        self.closed += 1
        if self.connection is not None:
            self.state_at_close = self.connection.state

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


OPEN, CLOSING, DROPPING, FINISHING, CLOSED = ConnectionState


def watched() -> tuple[SocketConnection, RecordingHandler, Diagnostics]:
    handler = RecordingHandler()
    counters = Diagnostics()
    connection = SocketConnection(handler, 1024, counters)
    handler.connection = connection
    return connection, handler, counters


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A server's (unmasked) close frame."""
    return bytes([0x88, 2 + len(reason)]) + struct.pack("!H", code) + reason


@pytest.mark.parametrize("closed_before_the_transport", [False, True])
async def test_open_closing_finishing_closed_when_the_server_closes_first(
    closed_before_the_transport: bool,
) -> None:
    """Our close frame (before the hand-off: a registration the hub refused),
    the client's answer, then TCP's end: each step in its state."""
    server_side, client_side = socket.socketpair()
    client_side.setblocking(False)
    connection, handler, counters = watched()
    loop = asyncio.get_running_loop()
    assert connection.state is OPEN
    if closed_before_the_transport:
        connection.close(4000, "bye", False)
        assert connection.state is CLOSING and counters.armed_timers == 0
    await loop.connect_accepted_socket(lambda: connection, server_side)
    if not closed_before_the_transport:
        assert connection.state is OPEN and connection.fd >= 0
        connection.close(4000, "bye", False)
    assert connection.state is CLOSING and connection.fd == -1
    assert counters.armed_timers == 1  # the closing handshake is bounded
    assert connection.write(b"after the close") == 0
    assert await loop.sock_recv(client_side, 100) == close_frame(4000, b"bye")

    await loop.sock_sendall(client_side, encode_frame(struct.pack("!H", 4000), OP_CLOSE))
    assert await read_until_eof(client_side) == b""  # our EOF, nothing after the close
    assert connection.state is FINISHING and handler.state_at_close is FINISHING
    client_side.close()
    await wait_until(lambda: connection.state is CLOSED)
    assert handler.closed == 1 and counters.open_sockets == 0 and counters.armed_timers == 0


async def test_dropped_before_the_transport_is_aborted_once_it_comes() -> None:
    server_side, client_side = socket.socketpair()
    client_side.setblocking(False)
    connection, handler, counters = watched()
    connection.write(b"HELLO")
    connection.close(4001, "slow consumer", True)  # the hub drops it before the hand-off
    assert connection.state is DROPPING and connection.write(b"more") == 0
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: connection, server_side)
    assert await read_until_eof(client_side) == b"HELLO" + close_frame(4001, b"slow consumer")
    await wait_until(lambda: connection.state is CLOSED)
    assert handler.state_at_close is CLOSED and handler.closed == 1
    assert counters.open_sockets == 0 and counters.armed_timers == 0
    client_side.close()


async def test_dropped_before_the_transport_with_the_clients_close_behind_its_handshake() -> None:
    """The one move out of DROPPING other than CLOSED: the client's close frame
    was already there, so the WebSocket closes (FINISHING) as the drop lands."""
    server_side, client_side = socket.socketpair()
    client_side.setblocking(False)
    connection, handler, counters = watched()
    connection.received_early(encode_frame(struct.pack("!H", 1000), OP_CLOSE))
    connection.close(4001, "slow consumer", True)
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: connection, server_side)
    assert handler.state_at_close is FINISHING and handler.closed == 1
    await wait_until(lambda: connection.state is CLOSED)
    assert counters.open_sockets == 0 and counters.armed_timers == 0
    client_side.close()


async def test_open_to_closed_when_the_client_vanishes() -> None:
    server_side, client_side = socket.socketpair()
    connection, handler, counters = watched()
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: connection, server_side)
    client_side.close()
    await wait_until(lambda: connection.state is CLOSED)
    assert handler.state_at_close is CLOSED and handler.closed == 1
    assert connection.fd == -1 and connection.backlog() == 0 and counters.open_sockets == 0
    connection.close(1000, "", False)  # too late: nothing changes
    assert connection.state is CLOSED


def test_every_state_ends_closed_and_nothing_goes_back() -> None:
    """The table of moves: CLOSED from anywhere (the socket can die at any
    point) and only itself after it; OPEN is never entered again."""
    assert set(NEXT_STATES) == set(ConnectionState)
    assert all(CLOSED in moves for moves in NEXT_STATES.values())
    assert NEXT_STATES[CLOSED] == {CLOSED}
    assert all(OPEN not in moves for moves in NEXT_STATES.values())


def test_a_move_outside_the_table_is_refused() -> None:
    connection, _, _ = watched()
    with pytest.raises(AssertionError, match="OPEN -> FINISHING"):
        connection._enter(FINISHING)  # a WebSocket cannot end without a close frame
    connection.connection_lost(None)
    with pytest.raises(AssertionError, match="CLOSED -> CLOSING"):
        connection._enter(CLOSING)
    assert connection.state is CLOSED
