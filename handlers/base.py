"""What every WebSocket endpoint shares: origin policy, compression, the hub peer."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from tornado.websocket import WebSocketHandler

from handlers.strict_protocol import StrictProtocolMixin
from handlers.transport import WebSocketTransport
from hub.hub import Hub
from hub.peer import HUB, Peer

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def origin_key(origin: str) -> str | None:
    """Normalise a full origin to ``host:port`` (default port filled in), or None."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return f"{parts.hostname}:{port}"


def host_key(host: str, scheme: str) -> str | None:
    """Normalise a Host header the same way as `origin_key`."""
    return origin_key(f"{scheme}://{host}")


class HubSocketBase(StrictProtocolMixin, WebSocketHandler):
    """Registers with the hub in ``open`` and leaves it in ``on_close``."""

    kind = HUB
    hub: Hub
    peer: Peer | None = None

    def initialize(self, hub: Hub, allowed_origins: frozenset[str], compression: bool) -> None:
        self.hub = hub
        self.allowed_origins = allowed_origins
        self.compression = compression

    def check_origin(self, origin: str) -> bool:
        """Allow same host:port and the configured origins (requests without
        Origin, i.e. non-browser clients, never reach this check)."""
        if origin.strip().lower().rstrip("/") in self.allowed_origins:
            return True
        key = origin_key(origin)
        return key is not None and key == host_key(self.request.host, self.request.protocol)

    def get_compression_options(self) -> dict | None:
        return {} if self.compression else None

    def display_name(self) -> str | None:
        return None

    def open(self) -> None:
        peer = Peer(
            self.hub.new_client_id(),
            self.display_name(),
            WebSocketTransport(self),
            ip=self.request.remote_ip or "",
            kind=self.kind,
        )
        refusal = self.hub.register(peer)
        if refusal is not None:
            self.close(*refusal)
            return
        self.peer = peer

    def on_pong(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.last_seen = time.monotonic()

    def on_ping(self, data: bytes) -> None:
        self.on_pong(data)

    def on_close(self) -> None:
        if self.peer is not None:
            self.hub.unregister(self.peer)
