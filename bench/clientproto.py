"""Raw asyncio protocols that act as hub clients at very low CPU cost.

Why not a real client library: the load generator must stay far cheaper per
delivered frame than the server, otherwise we benchmark the client. Two
tricks keep it cheap:

* Counting connections never split frames once they have joined. Every hub
  "message" frame contains the literal ``"type":"message"`` (or with a space
  after the colon, depending on the server's JSON style), and our payloads
  never do, so ``bytes.count`` over the raw stream counts deliveries at C speed
  (a tail of the previous chunk catches matches split across reads).
* Only a sample of "probe" connections parse frames fully, answer pings and
  read the send time embedded in the payload to measure latency.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from bench import wsframe

PAT_COMPACT = b'"type":"message"'
PAT_SPACED = b'"type": "message"'
# The publisher puts its monotonic send time (ns) under this key in "data".
_BT_RE = re.compile(rb'"bt":\s*(\d+)')
_TYPE_RE = re.compile(rb'"type":( ?)"(\w+)"')


@dataclass
class ClientStats:
    """Counters shared by all connections of one load-generator process."""

    connected: int = 0
    ready: int = 0
    received: int = 0
    closed: int = 0
    failed: int = 0
    last_rx_ns: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # End-to-end latencies in microseconds, only from probe connections.
    latencies_us: array = field(default_factory=lambda: array("q"))


def _close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


class HubClient(asyncio.Protocol):
    """One connection to the hub: handshake, optional join, then count messages.

    ``ready`` resolves once the connection is usable: after the 101 when
    ``room`` is None, after the ``joined`` reply otherwise (the join is sent
    right after the 101, without waiting for the welcome).
    """

    def __init__(
        self,
        request: bytes,
        room: str | None,
        stats: ClientStats,
        probe: bool = False,
        stuck: bool = False,
    ) -> None:
        self.request = request
        self.room = room
        self.stats = stats
        self.probe = probe
        self.stuck = stuck
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._upgraded = False
        self._splitter = wsframe.FrameSplitter()
        self._counting = False
        self._pattern = PAT_COMPACT
        self._tail = b""
        self.received = 0
        self.close_code: int | None = None
        self.lost = False

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats.connected += 1
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.stats.closed += 1
        if self.close_code is None:
            self.stats.close_codes[1006] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        if self._counting:
            # Hot path: count message frames without splitting frames.
            pat = self._pattern
            n = data.count(pat)
            tail = self._tail
            keep = len(pat) - 1
            if tail:
                n += (tail + data[:keep]).count(pat)
            self._tail = data[-keep:] if len(data) >= keep else (tail + data)[-keep:]
            if n:
                self.received += n
                stats = self.stats
                stats.received += n
                stats.last_rx_ns = time.monotonic_ns()
            return
        if not self._upgraded:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > 16384:
                    self._fail("oversized upgrade response")
                return
            problem = wsframe.check_upgrade_response(self._head[:end])
            if problem:
                self._fail(f"upgrade refused: {problem}")
                return
            data = self._head[end + 4 :]
            self._head = b""
            self._upgraded = True
            # Do not wait for the welcome: a server without TCP_NODELAY may hold
            # it back for a delayed ACK (~40 ms), which would make the ramp-up
            # measure Nagle's algorithm instead of the server.
            if self.room is None:
                self._become_ready()
            else:
                self._send_join()
            if self._counting:
                if data:
                    self.data_received(data)
                return
        self._frames(data)

    # -- frame handling ------------------------------------------------------
    def _frames(self, data: bytes) -> None:
        now = time.monotonic_ns()
        for op, payload in self._splitter.feed(data):
            if op == wsframe.OP_TEXT:
                if self._pattern in payload:
                    self._on_message(payload, now)
                elif not self.ready.done():
                    self._on_control_message(payload)
            elif op == wsframe.OP_PING:
                self.transport.write(wsframe.encode_frame(wsframe.OP_PONG, payload))
            elif op == wsframe.OP_CLOSE:
                self.close_code = _close_code(payload)
                self.stats.close_codes[self.close_code] += 1
                self.transport.write(
                    wsframe.close_frame(self.close_code if self.close_code < 5000 else 1000)
                )
                self.transport.close()
                return
        if self._counting:
            # Just switched to the counting fast path: leftover bytes are
            # counted raw, which needs no frame alignment.
            rest = self._splitter.take_rest()
            if rest:
                self.data_received(rest)

    def _on_message(self, payload: bytes, now_ns: int) -> None:
        self.received += 1
        stats = self.stats
        stats.received += 1
        stats.last_rx_ns = now_ns
        if self.probe:
            m = _BT_RE.search(payload)
            if m:
                stats.latencies_us.append((now_ns - int(m.group(1))) // 1000)

    def _on_control_message(self, payload: bytes) -> None:
        """Handle welcome/joined/errors before the connection is ready.

        Only the "type" is looked at: a ``joined`` reply lists every member, so
        in a 10k room it is hundreds of KB that are not worth decoding here.
        """
        m = _TYPE_RE.search(payload, 0, 64)
        if m is None:
            self._fail("frame without a leading type before ready")
            return
        if m.group(1):
            self._pattern = PAT_SPACED
        kind = m.group(2)
        if kind == b"joined":
            self._become_ready()
        elif kind == b"error":
            self._fail(f"server error: {payload[:200].decode('utf-8', 'replace')}")

    def _send_join(self) -> None:
        join = json.dumps({"type": "join", "room": self.room}).encode()
        self.transport.write(wsframe.encode_frame(wsframe.OP_TEXT, join))

    def _become_ready(self) -> None:
        self.stats.ready += 1
        self.ready.set_result(None)
        if self.stuck:
            # A consumer that never reads again: the kernel buffers fill and
            # the server has to queue (or drop) on its side.
            self.transport.pause_reading()
        elif not self.probe:
            self._counting = True

    def _fail(self, why: str) -> None:
        self.stats.errors[why[:120]] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close politely (close frame, then FIN); abort if already paused."""
        t = self.transport
        if t is None or t.is_closing():
            return
        if self.stuck:
            t.abort()
            return
        self.close_code = self.close_code or 1000
        t.write(wsframe.close_frame(1000))
        t.close()


class HandshakeClient(asyncio.Protocol):
    """Open a hub connection, wait for the 101, then close it (close frame + FIN)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0 or self.done.done():
            return
        problem = wsframe.check_upgrade_response(self._buf[:end])
        if problem:
            self.done.set_exception(ConnectionError(problem))
            self.transport.abort()
            return
        # The upgrade is complete at the 101; hang up politely right away.
        self.done.set_result(None)
        self.transport.write(wsframe.close_frame(1000))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed during handshake: {exc!r}"))
