"""Moving a connection from Tornado's WebSocket machinery to `SocketConnection`.

Two ways in:

* `upgrade_directly`: for a plain RFC 6455 upgrade (version 13, no
  permessage-deflate to negotiate) the handler answers the 101 itself, calls
  ``open()`` and hands the socket over; the 101 and the ``welcome`` leave in one
  write. About a third of a handshake's CPU is saved against Tornado's path.
* `HandoffProtocol`: anything else goes through Tornado's upgrade; where Tornado
  would then await its frame-reading coroutine for the connection's whole life
  (keeping the request, the handler's response state and a chain of suspended
  coroutines alive), the socket is handed over right after ``open()``.

Connections that negotiated permessage-deflate, that came over TLS (their
session lives in Tornado's ``SSLIOStream``: `handlers.tls`), or that ``open()``
refused on Tornado's path, stay with Tornado (and `StrictWebSocketProtocol`'s fixes), as
every connection does with ``--handoff=off`` (the handler's ``handoff``).
The Tornado internals this needs are in `handlers.tornado_compat`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from typing import Any

import tornado
from tornado.websocket import WebSocketProtocol

from handlers.socket_connection import SocketConnection
from handlers.strict_protocol import StrictWebSocketProtocol
from handlers.tls import is_tls_stream
from handlers.tornado_compat import default_protocol_params, release_socket


async def adopt(
    handler: Any, connection: SocketConnection, sock: socket.socket, buffered: bytes
) -> None:
    """Put ``sock`` under ``connection`` on the event loop's transport."""
    connection.received_early(buffered)
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_accepted_socket(lambda: connection, sock)
    except OSError as error:  # the socket died in between: the peer leaves now
        sock.close()
        connection.connection_lost(error)
    # After get() returns, Tornado's _execute still reads some handler state;
    # trim the handler on the next loop iteration, once that has finished.
    loop.call_soon(handler.trim_after_handoff)


_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_SWITCHING = (
    # The Server header is the one Tornado sends, so both upgrade paths look alike.
    f"HTTP/1.1 101 Switching Protocols\r\nServer: TornadoServer/{tornado.version}\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
).encode()


WEBSOCKET_KEY_LENGTH = 24
"""A Sec-WebSocket-Key is 16 random bytes in base64 (RFC 6455 section 4.1): 24 characters."""


def upgrade_refusal(request: Any) -> str | None:
    """Why a WebSocket upgrade request is malformed (the reason of a 400), or None.

    Checked before either path answers, so our own 101 and Tornado's refuse
    the same requests: an upgrade over HTTP/1.0, and a version-13 key that is
    not 16 bytes in base64 (Tornado would answer any string, 4,000 characters
    included). Requests that are no upgrade, or of another version, are left
    to Tornado's own answers (400, 426).
    """
    headers = request.headers
    if headers.get("Upgrade", "").lower() != "websocket":
        return None
    if request.version == "HTTP/1.0":
        return "WebSocket upgrades need HTTP/1.1"
    if headers.get("Sec-WebSocket-Version") != "13":
        return None
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        valid = len(key) == WEBSOCKET_KEY_LENGTH and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    return None if valid else "Sec-WebSocket-Key must be 16 bytes in base64"


def plain_upgrade_key(request: Any, compression: bool) -> str | None:
    """The Sec-WebSocket-Key of an upgrade we can answer ourselves, else None
    (Tornado then answers it, errors included)."""
    headers = request.headers
    if request.method != "GET" or headers.get("Sec-WebSocket-Version") != "13":
        return None
    if headers.get("Upgrade", "").lower() != "websocket":
        return None
    if "upgrade" not in (t.strip().lower() for t in headers.get("Connection", "").split(",")):
        return None
    if compression and "permessage-deflate" in headers.get("Sec-WebSocket-Extensions", ""):
        return None
    return headers.get("Sec-WebSocket-Key") or None


def answer_upgrade(handler: Any) -> SocketConnection:
    """Our own 101 for the handler's (plain) upgrade, then ``open()``: the returned
    connection holds the 101 and the ``welcome``, to leave in one write once it
    has the socket."""
    key = handler.request.headers["Sec-WebSocket-Key"]
    accept = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest())
    connection = SocketConnection(handler, handler.max_message_size, handler.diagnostics)
    connection.write(_SWITCHING + accept + b"\r\n\r\n")
    handler.set_status(101)
    handler.application.log_request(handler)
    handler.socket_connection = connection
    handler.open()
    handler.flush_queued()  # the welcome joins the 101 in one write
    return connection


async def upgrade_directly(handler: Any) -> None:
    """Answer the upgrade with our own 101, run ``open()``, hand the socket over."""
    stream = handler.detach()
    try:
        connection = answer_upgrade(handler)
    except BaseException:
        stream.close()
        raise
    released = release_socket(stream)
    if released is None:  # the client is gone already
        stream.close()
        connection.connection_lost(None)
        return
    sock, buffered = released
    await adopt(handler, connection, sock, buffered)


class HandoffProtocol(StrictWebSocketProtocol):
    """Tornado's protocol for the handshake; a `SocketConnection` afterwards."""

    async def receive_frames(self) -> None:
        handler: Any = self.handler
        peer = getattr(handler, "peer", None)
        released = None
        if (
            peer is not None
            and not self.compressing
            and not is_tls_stream(self.stream)
            and not (self.server_terminated or self.client_terminated)
        ):
            released = release_socket(self.stream)
        if released is None:
            await super().receive_frames()
            return
        sock, buffered = released
        connection = SocketConnection(handler, self.params.max_message_size, handler.diagnostics)
        peer.sink = connection
        handler.ws_connection = None
        await adopt(handler, connection, sock, buffered)


class HandoffMixin:
    """Put first in a WebSocketHandler's bases to hand connections off after ``open()``
    (unless the handler's ``handoff`` is False: then `StrictWebSocketProtocol`
    serves the connection for its whole life).

    Tornado builds its protocol first; we reuse its params so the size and
    compression settings stay exactly Tornado's.
    """

    handoff = True

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        params = default_protocol_params(self)  # type: ignore[arg-type]
        if params is None:
            return None  # unsupported version: Tornado answers 426
        protocol = HandoffProtocol if self.handoff else StrictWebSocketProtocol
        return protocol(self, False, params)  # type: ignore[arg-type]
