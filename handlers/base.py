"""What every WebSocket endpoint shares: origin policy, compression, the hub peer."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from tornado.web import HTTPError
from tornado.websocket import WebSocketHandler

from handlers.access_log import log_close, log_open, log_refused
from handlers.deflate import DeflateSettings
from handlers.diagnostics import Diagnostics
from handlers.handoff import HandoffMixin, plain_upgrade_key, upgrade_directly, upgrade_refusal
from handlers.hosts import host_allowed
from handlers.public_sink import PublicApiSink
from handlers.sink import WebSocketSink
from handlers.socket_connection import SocketConnection
from handlers.tls import is_tls_stream
from handlers.tornado_compat import trim_handler
from hub.hub import Hub
from hub.metrics import CLOSE_ABNORMAL
from hub.peer import HUB, Peer

PAGE_SCHEMES = {"http": 80, "https": 443}
"""The schemes a web page's origin can have, with their default ports; a browser
never sends ``ws:``, ``ftp:`` or ``javascript:`` as a page's Origin."""


def origin_key(origin: str) -> str | None:
    """Normalise a page origin to ``scheme://host:port`` (default port filled in),
    or None for anything that is not exactly an http(s) origin (other schemes,
    user info, a path, a query)."""
    try:
        parts = urlsplit(origin.strip().lower())
        scheme = parts.scheme
        port = parts.port or PAGE_SCHEMES.get(scheme)
    except ValueError:
        return None
    if scheme not in PAGE_SCHEMES or not parts.hostname or port is None:
        return None
    if "@" in parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return f"{scheme}://{parts.hostname}:{port}"


def host_key(host: str, scheme: str) -> str | None:
    """Normalise a Host header the same way as `origin_key`."""
    return origin_key(f"{scheme}://{host}")


@lru_cache(maxsize=16)
def origin_keys(origins: frozenset[str]) -> frozenset[str]:
    """`origin_key` of every configured origin (worked out once per set)."""
    return frozenset(key for key in map(origin_key, origins) if key is not None)


class HubSocketBase(HandoffMixin, WebSocketHandler):
    """Registers with the hub in ``open`` and leaves it in ``on_close``.

    After ``open`` the socket is usually handed to a compact
    `SocketConnection` (see `handlers.handoff`), which calls ``on_message``,
    ``on_pong`` and ``on_close`` just as Tornado would. With ``handoff``
    False (``--handoff=off``) it stays with Tornado and is written to through
    its public API (`handlers.public_sink`).
    """

    kind = HUB
    hub: Hub
    peer: Peer | None = None
    ws_connection = None  # Tornado's protocol object; None once handed off
    socket_connection: SocketConnection | None = None
    """The connection that takes the socket over when we answered the upgrade
    ourselves (`handoff.upgrade_directly`); it is the peer's sink from ``open`` on."""
    opened_at = 0.0  # monotonic time of ``open``, for the access log's duration
    KEEP_AFTER_HANDOFF = ("hub", "peer", "compression", "opened_at")
    """The only state the handler still needs once its socket is handed off."""

    def initialize(
        self,
        hub: Hub,
        allowed_origins: frozenset[str],
        compression: bool | DeflateSettings,
        handoff: bool = True,
        diagnostics: Diagnostics | None = None,
        allowed_hosts: frozenset[str] | None = None,
    ) -> None:
        self.hub = hub
        self.allowed_origins = allowed_origins
        self.compression = compression
        self.handoff = handoff
        self.diagnostics = diagnostics or Diagnostics()
        self.allowed_hosts = allowed_hosts

    def prepare(self) -> None:
        """Before the upgrade: 400 for a Host the server is not known by
        (``--allowed_hosts``), 403 for a foreign or malformed browser Origin.

        Tornado parses the Origin itself before calling `check_origin` and
        answers 500 when it cannot; checking here first keeps that a 403.
        """
        if not host_allowed(self.request.host_name, self.allowed_hosts):
            raise HTTPError(400, reason="host not allowed")
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            self.hub.counters.rejected_origin += 1
            raise HTTPError(403, reason="origin not allowed")

    def check_origin(self, origin: str) -> bool:
        """Allow the same scheme, host and port as the request's, and the
        configured origins (requests without Origin, i.e. non-browser clients,
        never reach this check)."""
        key = origin_key(origin)
        if key is None:
            return False
        if key in origin_keys(self.allowed_origins):
            return True
        return key == host_key(self.request.host, self.request.protocol)

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
        else the way Tornado does; a malformed upgrade gets a 400 on both paths
        (`handoff.upgrade_refusal`). A TLS connection is never handed off
        (`handlers.tls`): Tornado answers its upgrade and keeps it."""
        refusal = upgrade_refusal(self.request)
        if refusal is not None:
            raise HTTPError(400, reason=refusal)
        over_tls = is_tls_stream(getattr(self.request.connection, "stream", None))
        plain = self.handoff and not over_tls and plain_upgrade_key(self.request, self.compression)
        if plain:
            await upgrade_directly(self)
        else:
            await super().get(*args, **kwargs)

    def open(self) -> None:
        peer = Peer(
            self.hub.new_client_id(),
            self.display_name(),
            self.socket_connection or self._tornado_sink(),
            ip=self.request.remote_ip or "",
            kind=self.kind,
        )
        self.opened_at = time.monotonic()
        refusal = self.hub.register(peer)
        if refusal is None:
            self.peer = peer
            self.admitted(peer)
            log_open(peer)
            return
        log_refused(peer, refusal[0])
        if self.socket_connection is not None:
            self.socket_connection.close(*refusal, False)
        else:
            self.close(*refusal)

    def admitted(self, peer: Peer) -> None:
        """``peer`` is registered; the endpoint may check it further (a token) before
        the access log records the connection."""

    def _tornado_sink(self) -> WebSocketSink:
        """How the hub writes to a connection Tornado keeps."""
        return WebSocketSink(self) if self.handoff else PublicApiSink(self)

    def on_pong(self, data: bytes) -> None:
        if self.peer is not None:
            self.hub.touch(self.peer)

    def on_ping(self, data: bytes) -> None:
        self.on_pong(data)

    def on_close(self) -> None:
        peer = self.peer
        if peer is not None:
            # The close frame's code (Tornado's close_code, or ours: see SocketConnection).
            code = getattr(self, "close_code", None) or CLOSE_ABNORMAL
            self.hub.unregister(peer, code)
            self.peer = None  # handler -> peer -> sink -> handler: let refcounts free it
            log_close(peer, self.opened_at, code, peer.sink)

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
