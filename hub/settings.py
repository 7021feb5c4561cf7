"""Tuning knobs of the hub, each with the default a production user would pick."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HubSettings:
    max_connections: int = 10_000
    """Open WebSocket connections (all endpoints) beyond which newcomers get 1013."""
    ping_interval: float = 25.0
    """Seconds between pings: under the 60 s idle cut of common proxies and load balancers."""
    ping_timeout: float = 10.0
    """A connection silent for ping_interval + ping_timeout is dead and is evicted (4000)."""
    send_buffer_limit: int = 1 << 20
    """Bytes queued to one client before it counts as a slow consumer (4001)."""
    history_size: int = 100
    """Messages kept per room for clients resuming with ``since``."""
    history_ttl: float = 300.0
    """Seconds a room's history outlives its last member."""
    history_bytes: int = 1 << 20
    """Bytes of framed messages kept per room (0: count only); oldest go first."""
    history_memory_limit: int = 64 << 20
    """Bytes of history for all rooms together (0: no limit); past it, the least
    recently used rooms lose theirs (resumes from before get ``history_gap``)."""
    rate_limit: float = 100.0
    """Messages per second one /ws connection may send on average (0 disables)."""
    rate_burst: int = 200
    """Messages one /ws connection may send in a burst before rate_limit applies."""
    max_rooms_per_connection: int = 100
    """Rooms one connection may be in at once (0 disables)."""
    max_connections_per_ip: int = 1_000
    """Connections from one client address (0 disables); generous for users behind NAT."""
    presence_limit: int = 1000
    """Members a room lists in ``joined`` and announces one by one; beyond it,
    ``joined`` lists this many and per-member events become count events."""
    lossy_threshold: int = 16 * 1024
    """Queued bytes above which ephemeral messages are skipped for a member."""
    ping_rate_limit: float = 10.0
    """Pings per second one handed-off connection may send on average (bursts of
    50; 0 disables). Pings past it get no pong; a client that keeps on is closed
    with 1008. Keepalive needs one every few seconds at most."""
