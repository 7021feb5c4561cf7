"""A blocking raw-socket WebSocket client that can send anything: bad bits,
lying lengths, half frames, garbage handshakes. Loopback only."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import struct
from dataclasses import dataclass, field

HOST = "127.0.0.1"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` (RFC 6455 section 5.3), fast for big payloads."""
    n = len(data)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(
    payload: bytes,
    opcode: int = OP_TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame. ``length`` overrides the header's length (to lie about it)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 0x10000:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + apply_mask(payload, key)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


def handshake_request(
    port: int, path: str = "/ws/echo", headers: dict[str, str] | None = None, eol: str = "\r\n"
) -> bytes:
    """A valid opening handshake; ``headers`` add to or replace the defaults; ``eol``
    ends its lines (HTTP/1.1 servers also take a bare LF)."""
    fields = {
        "Host": f"{HOST}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
    return (eol.join(lines) + eol + eol).encode()


class Closed(Exception):
    """The server closed the TCP connection."""


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


@dataclass
class Ending:
    """How the server ended a connection: its close frame (if any) and what came before."""

    close: Frame | None
    frames: list[Frame] = field(default_factory=list)
    eof: bool = False

    @property
    def code(self) -> int | None:
        return self.close.close_code if self.close else None


def connect_tcp(
    port: int, timeout: float = 5.0, source: str | None = None, rcvbuf: int | None = None
) -> socket.socket:
    """``rcvbuf`` sets SO_RCVBUF before connecting (a small receive window)."""
    if rcvbuf is None:
        sock = socket.create_connection(
            (HOST, port), timeout=timeout, source_address=(source, 0) if source else None
        )
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.connect((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def abort_socket(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the peer vanishes without a goodbye."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Wire:
    """One raw WebSocket connection; the handshake is done in the constructor."""

    def __init__(
        self,
        port: int,
        path: str = "/ws/echo",
        timeout: float = 5.0,
        source: str | None = None,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        eol: str = "\r\n",
    ) -> None:
        """``tls``: speak wss:// with this client context (handshake done here too);
        ``eol``: the request's line ends."""
        self.sock = connect_tcp(port, timeout, source, rcvbuf)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=HOST)
            except BaseException:
                self.sock.close()
                raise
        self.buffer = b""
        try:
            self.sock.sendall(handshake_request(port, path, headers, eol))
            while b"\r\n\r\n" not in self.buffer:
                self._fill()
        except BaseException:
            self.sock.close()
            raise
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.response_head = head.decode("latin-1")
        self.status = int(head.split(b" ", 2)[1])

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, payload: bytes | str, opcode: int | None = None, **kw: object) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
            opcode = OP_TEXT if opcode is None else opcode
        self.send_raw(encode_frame(payload, OP_BINARY if opcode is None else opcode, **kw))  # type: ignore[arg-type]

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.send_raw(encode_frame(close_payload(code, reason), OP_CLOSE))

    def recv(self, timeout: float | None = None) -> Frame:
        """The next server frame; raises `Closed` on EOF and socket.timeout if none comes."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._take(8))[0]
        if second & 0x80:
            raise AssertionError("server frames must not be masked")
        return Frame(bool(first & 0x80), (first >> 4) & 0x7, first & 0xF, self._take(length))

    def recv_data(self, timeout: float = 5.0) -> Frame:
        """The next data frame, skipping pings and pongs."""
        while True:
            frame = self.recv(timeout)
            if frame.opcode not in (OP_PING, OP_PONG):
                return frame

    def ending(self, timeout: float = 5.0, reply: bool = True) -> Ending:
        """Read until the server's close frame and then its EOF (or just EOF).

        With ``reply`` the close is answered, as a polite client would.
        Raises socket.timeout if the server neither closes nor drops in time.
        """
        result = Ending(close=None)
        self.sock.settimeout(timeout)
        try:
            while True:
                frame = self.recv()
                if frame.opcode == OP_CLOSE:
                    result.close = frame
                    if reply:
                        with contextlib.suppress(OSError):
                            self.send_raw(encode_frame(frame.payload[:2], OP_CLOSE))
                    break
                result.frames.append(frame)
            while True:  # after the close frame only EOF may follow
                self._fill()
        except (Closed, ConnectionResetError):
            result.eof = True
        return result

    def half_close(self) -> None:
        """Send FIN: "no more from me", while still reading."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        abort_socket(self.sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
