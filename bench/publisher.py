"""The publishing client: sends timestamped messages under a bounded window.

Each publish carries an ``id`` so the server acks it; at most ``window``
publishes are un-acked at any time, and an optional ``lag`` callback lets the
caller hold the publisher back while subscribers are too far behind (so a
slow load generator shows up as lower throughput, not as server-side queues
growing until clients are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench import wsframe
from bench.tls import client_context


@dataclass
class PublishResult:
    """What the publisher observed."""

    sent: int
    acked: int
    echoes: int  # copies of its own messages it received as a room member
    first_send_ns: int
    last_send_ns: int
    last_ack_ns: int
    errors: list[str]


class PublisherClient(asyncio.Protocol):
    """Full-parsing client used for the publisher (one per run, cost is moot)."""

    def __init__(self, request: bytes, room: str) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.room = room
        self.ready: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._upgraded = False
        self._splitter = wsframe.FrameSplitter()
        self.acked = 0
        self.last_ack_ns = 0
        self.echoes = 0
        self.errors: list[str] = []
        self.ack_event = asyncio.Event()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.errors.append(f"publisher connection lost: {exc!r}")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("publisher closed before joining"))
        self.ack_event.set()

    def data_received(self, data: bytes) -> None:
        if not self._upgraded:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            problem = wsframe.check_upgrade_response(self._head[:end])
            if problem:
                self.ready.set_exception(ConnectionError(problem))
                self.transport.abort()
                return
            data, self._head, self._upgraded = self._head[end + 4 :], b"", True
        for op, payload in self._splitter.feed(data):
            if op == wsframe.OP_TEXT:
                self._on_text(payload)
            elif op == wsframe.OP_PING:
                self.transport.write(wsframe.encode_frame(wsframe.OP_PONG, payload))
            elif op == wsframe.OP_CLOSE:
                self.errors.append(f"publisher got close {payload[:2].hex()}")
                self.transport.close()

    def _on_text(self, payload: bytes) -> None:
        # Cheap checks first: echoes and acks dominate.
        if b'"message"' in payload[:40]:
            self.echoes += 1
            return
        msg = json.loads(payload)
        kind = msg.get("type")
        if kind == "message":
            self.echoes += 1
        elif kind == "ack":
            self.acked += 1
            self.last_ack_ns = time.monotonic_ns()
            self.ack_event.set()
        elif kind == "welcome":
            join = json.dumps({"type": "join", "room": self.room}).encode()
            self.transport.write(wsframe.encode_frame(wsframe.OP_TEXT, join))
        elif kind == "joined" and msg.get("room") == self.room:
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "error":
            self.errors.append(str(msg)[:200])
            self.ack_event.set()
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(str(msg)))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(wsframe.close_frame(1000))
            self.transport.close()


async def connect_publisher(
    host: str, port: int, room: str, timeout: float = 30.0, cafile: str | None = None
) -> PublisherClient:
    """Connect, handshake and join ``room`` (over TLS, trusting ``cafile``, when given)."""
    loop = asyncio.get_running_loop()
    request = wsframe.upgrade_request(host, port, "/ws?name=publisher")
    tls = client_context(cafile) if cafile else None
    async with asyncio.timeout(timeout):
        _, proto = await loop.create_connection(
            lambda: PublisherClient(request, room), host, port, ssl=tls
        )
        proto.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        await proto.ready
    return proto


def _payload_template(room: str, size: int) -> tuple[bytes, bytes]:
    """Split a publish frame around the id and send time; ``size`` ~ bytes of data."""
    pad = "x" * max(0, size - len('{"bt":1234567890123456,"p":""}'))
    head = ('{"type":"publish","room":' + json.dumps(room) + ',"id":').encode()
    return head, (',"data":{"bt":%d,"p":"' + pad + '"}}').encode()


async def publish(
    pub: PublisherClient,
    count: int,
    size: int = 100,
    window: int = 32,
    rate: float | None = None,
    max_seconds: float = 60.0,
    lag: Callable[[int], bool] | None = None,
    ack_timeout: float = 30.0,
) -> PublishResult:
    """Publish up to ``count`` messages (fewer if ``max_seconds`` runs out).

    ``rate`` (messages/s) paces the sends for latency tests; otherwise the
    publisher sends as fast as the ack window and ``lag(sent)`` allow.
    """
    head, tail = _payload_template(pub.room, size)
    transport = pub.transport
    assert transport is not None
    start = time.monotonic_ns()
    stop_at = time.monotonic() + max_seconds
    interval_ns = int(1e9 / rate) if rate else 0
    sent = 0
    last_send = start
    while sent < count and time.monotonic() < stop_at and not transport.is_closing():
        if sent - pub.acked >= window or (lag is not None and lag(sent)):
            pub.ack_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pub.ack_event.wait(), 0.05)
            continue
        if interval_ns:
            due = start + sent * interval_ns
            now = time.monotonic_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
        last_send = time.monotonic_ns()
        body = head + str(sent).encode() + tail % last_send
        transport.write(wsframe.encode_frame(wsframe.OP_TEXT, body))
        sent += 1
    deadline = time.monotonic() + ack_timeout
    while pub.acked < sent and time.monotonic() < deadline and not transport.is_closing():
        pub.ack_event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pub.ack_event.wait(), 0.1)
    return PublishResult(sent, pub.acked, pub.echoes, start, last_send, pub.last_ack_ns, pub.errors)
