"""A minimal asyncio WebSocket client on raw streams, cheap enough to run
thousands of in one test process (the churn test)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

from tests.hostile.wire import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, close_payload, encode_frame


class AsyncWire:
    """One connection: handshake on `open`, then frames both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str) -> AsyncWire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    def send_json(self, message: dict[str, Any]) -> None:
        self.writer.write(encode_frame(json.dumps(message).encode(), OP_TEXT))

    async def recv(self) -> tuple[int, bytes]:
        """Next (opcode, payload); pings are answered here and not returned."""
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == OP_PING:
                self.writer.write(encode_frame(payload, OP_PONG))
                continue
            return opcode, payload

    async def recv_json(self) -> dict[str, Any]:
        while True:
            opcode, payload = await self.recv()
            if opcode == OP_CLOSE:
                raise ConnectionError(f"closed by server: {payload[:2].hex()} {payload[2:]!r}")
            if opcode == OP_TEXT:
                return json.loads(payload)

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self.recv_json()
            if message["type"] == kind:
                return message

    async def close_politely(self, timeout: float = 5.0) -> None:
        """Close frame, wait for the server's, then FIN."""
        self.writer.write(encode_frame(close_payload(1000), OP_CLOSE))
        try:
            async with asyncio.timeout(timeout):
                while (await self.recv())[0] != OP_CLOSE:
                    pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.writer.close()

    def abort(self) -> None:
        """RST: gone without a word."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def drop(self) -> None:
        """FIN without a close frame."""
        self.writer.close()
