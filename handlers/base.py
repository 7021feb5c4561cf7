"""What every WebSocket endpoint shares: origin policy, compression, the hub peer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tornado.web import HTTPError
from tornado.websocket import WebSocketHandler

from handlers.deflate import DeflateSettings
from handlers.diagnostics import Diagnostics
from handlers.handoff import HandoffMixin, plain_upgrade_key, upgrade_directly
from handlers.public_transport import PublicApiTransport
from handlers.socket_connection import SocketConnection
from handlers.tornado_compat import trim_handler
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


class HubSocketBase(HandoffMixin, WebSocketHandler):
    """Registers with the hub in ``open`` and leaves it in ``on_close``.

    After ``open`` the socket is usually handed to a compact
    `SocketConnection` (see `handlers.handoff`), which calls ``on_message``,
    ``on_pong`` and ``on_close`` just as Tornado would. With ``handoff``
    False (``--handoff=off``) it stays with Tornado and is written to through
    its public API (`handlers.public_transport`).
    """

    kind = HUB
    hub: Hub
    peer: Peer | None = None
    ws_connection = None  # Tornado's protocol object; None once handed off
    transport: SocketConnection | None = None  # set when we answered the upgrade ourselves
    KEEP_AFTER_HANDOFF = ("hub", "peer", "compression")
    """The only state the handler still needs once its socket is handed off."""

    def initialize(
        self,
        hub: Hub,
        allowed_origins: frozenset[str],
        compression: bool | DeflateSettings,
        handoff: bool = True,
        diagnostics: Diagnostics | None = None,
    ) -> None:
        self.hub = hub
        self.allowed_origins = allowed_origins
        self.compression = compression
        self.handoff = handoff
        self.diagnostics = diagnostics or Diagnostics()

    def prepare(self) -> None:
        """Refuse a foreign or malformed browser Origin with 403 before the upgrade.

        Tornado parses the Origin itself before calling `check_origin` and
        answers 500 when it cannot; checking here first keeps that a 403.
        """
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise HTTPError(403, reason="origin not allowed")

    def check_origin(self, origin: str) -> bool:
        """Allow same host:port and the configured origins (requests without
        Origin, i.e. non-browser clients, never reach this check)."""
        if origin.strip().lower().rstrip("/") in self.allowed_origins:
            return True
        key = origin_key(origin)
        return key is not None and key == host_key(self.request.host, self.request.protocol)

    def get_compression_options(self) -> dict | None:
        """permessage-deflate when enabled, bounded per connection as
        `handlers.deflate` explains (``compression=True`` means the defaults)."""
        if not self.compression:
            return None
        settings = self.compression if isinstance(self.compression, DeflateSettings) else None
        return (settings or DeflateSettings()).tornado_options()

    def display_name(self) -> str | None:
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Answer a plain upgrade ourselves (`handoff.upgrade_directly`), anything
        else the way Tornado does."""
        key = plain_upgrade_key(self, self.compression) if self.handoff else None
        if key is None:
            await super().get(*args, **kwargs)
        else:
            await upgrade_directly(self, key, self.max_message_size)

    def open(self) -> None:
        peer = Peer(
            self.hub.new_client_id(),
            self.display_name(),
            self.transport or self._tornado_transport(),
            ip=self.request.remote_ip or "",
            kind=self.kind,
        )
        refusal = self.hub.register(peer)
        if refusal is None:
            self.peer = peer
        elif self.transport is not None:
            self.transport.close(*refusal, False)
        else:
            self.close(*refusal)

    def _tornado_transport(self) -> WebSocketTransport:
        """How the hub writes to a connection Tornado keeps."""
        return WebSocketTransport(self) if self.handoff else PublicApiTransport(self)

    def on_pong(self, data: bytes) -> None:
        if self.peer is not None:
            self.hub.touch(self.peer)

    def on_ping(self, data: bytes) -> None:
        self.on_pong(data)

    def on_close(self) -> None:
        if self.peer is not None:
            self.hub.unregister(self.peer)
            self.peer = None  # handler -> peer -> transport -> handler: let refcounts free it

    def flush_queued(self) -> None:
        """Called before a close frame goes out: replies to messages received
        before the close (or before a protocol error) must precede it."""
        if self.peer is not None:
            self.hub.flush_peer(self.peer)

    def trim_after_handoff(self) -> None:
        """Drop the request and response state Tornado kept for the handshake
        (headers, arguments, the HTTP connection): tens of thousands of idle
        connections would otherwise hold several KB each for nothing."""
        trim_handler(self, self.KEEP_AFTER_HANDOFF)
