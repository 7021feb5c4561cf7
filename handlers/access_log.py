"""One log line per WebSocket connection when it opens and when it closes.

Logger ``wshub.access``, level INFO (``--logging=warning`` silences it). What a
line holds is in docs/logging.md: the client id, the address, the user of its
token, the endpoint and, at close, the close code, how long it lasted and
the bytes it carried. Never a token, a query string or a display name: only
what the server assigned or verified. Nothing is logged per message.

Bytes are counted where it costs nothing per delivery: on a handed-off
connection the kernel's own count for the TCP connection (``TCP_INFO``, read
once at close), on a connection Tornado keeps the WebSocket frames' bytes
(`handlers.sink.WebSocketSink.traffic`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from hub.peer import ECHO, HUB, Peer

access_log = logging.getLogger("wshub.access")

ENDPOINTS = {HUB: "/ws", ECHO: "/ws/echo"}

TCP_INFO_BYTES = struct.Struct("=QQ")
TCP_INFO_BYTES_OFFSET = 120
"""Where ``tcpi_bytes_acked`` and ``tcpi_bytes_received`` sit in Linux's ``struct
tcp_info`` (linux/tcp.h, since 4.1): the bytes the client acknowledged and the
bytes it sent, handshake and framing included."""
TCP_INFO_SIZE = TCP_INFO_BYTES_OFFSET + TCP_INFO_BYTES.size

PLAIN_VALUE = re.compile(r"[\w.:@/+-]{1,200}", re.ASCII)
"""Values written as they are in a text line; anything else is JSON-quoted, so a
user id with spaces or newlines cannot forge a field or a line."""
MAX_VALUE = 200
"""Characters of one value a line keeps."""


@dataclass(slots=True)
class Traffic:
    """Bytes a connection carried, each way."""

    bytes_in: int = 0
    bytes_out: int = 0


def tcp_traffic(sock: Any) -> Traffic | None:
    """The kernel's byte counts of a TCP socket, or None where it has none to
    give (not Linux, not TCP, already closed)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    except (OSError, AttributeError, ValueError):
        return None
    if len(info) < TCP_INFO_SIZE:
        return None
    acked, received = TCP_INFO_BYTES.unpack_from(info, TCP_INFO_BYTES_OFFSET)
    return Traffic(bytes_in=received, bytes_out=acked)


def _value(value: Any) -> str:
    text = str(value)
    if PLAIN_VALUE.fullmatch(text):
        return text
    return json.dumps(text[:MAX_VALUE])


def _line(event: str, fields: dict[str, Any]) -> str:
    return " ".join([event, *(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)])


def _identity(peer: Peer) -> dict[str, Any]:
    user = peer.user
    return {
        "client_id": peer.client_id,
        "addr": peer.ip,
        "endpoint": ENDPOINTS.get(peer.kind, peer.kind),
        "user": user[:MAX_VALUE] if isinstance(user, str) else user,
    }


def log_open(peer: Peer) -> None:
    """``open client_id=... addr=... endpoint=/ws user=...`` (user only with a token)."""
    if access_log.isEnabledFor(logging.INFO):
        fields = _identity(peer)
        access_log.info(_line("open", fields), extra={"event": "open", "fields": fields})


def log_close(peer: Peer, opened_at: float, code: int, sink: Any) -> None:
    """``close ... code=1000 duration_s=1.234 bytes_in=... bytes_out=...``; ``code``
    is the first close frame's, either way (1006: none). The bytes come from the
    ``sink``'s ``traffic()`` (a sink without one reports none)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    traffic = sink.traffic() if hasattr(sink, "traffic") else None
    fields = _identity(peer)
    fields["code"] = code
    fields["duration_s"] = round(max(time.monotonic() - opened_at, 0.0), 3)
    if traffic is not None:
        fields["bytes_in"] = traffic.bytes_in
        fields["bytes_out"] = traffic.bytes_out
    access_log.info(_line("close", fields), extra={"event": "close", "fields": fields})


def log_refused(peer: Peer, code: int) -> None:
    """A connection the hub refused at once (capacity, per-address limit): one line."""
    if access_log.isEnabledFor(logging.INFO):
        fields = {**_identity(peer), "code": code, "duration_s": 0.0}
        access_log.info(_line("refused", fields), extra={"event": "refused", "fields": fields})
