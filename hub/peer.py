"""One connection as the hub sees it (`Peer`), and the interface the hub writes
through (`Sink`).

A peer's ``sink`` is where its frames go: the hub and its outbox only ever call
the four `Sink` methods, never a socket. The handlers implement it
(`handlers.socket_connection.SocketConnection` for a handed-off socket,
`handlers.sink` for one Tornado keeps); the tests record into one. "Sink", not
"transport": the asyncio transport is one layer further down, inside
`SocketConnection`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hub.limits import TokenBucket

if TYPE_CHECKING:
    from hub.auth import Grant
    from hub.outbox import Backfill


class Sink(Protocol):
    """Where the hub writes one peer's frames: the socket side of a peer."""

    def write(self, data: bytes) -> int:
        """Write ready-made frames; return the bytes still queued, unsent, afterwards."""

    def backlog(self) -> int:
        """Bytes queued for this peer that the socket has not taken yet."""

    def close(self, code: int, reason: str, abort: bool) -> None:
        """Send a close frame; with ``abort`` drop the socket at once instead of
        waiting for a closing handshake the peer may never answer."""

    def on_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything written so far has left user space
        (soon, if it has already); never if the connection closes first."""


BatchWrite = Callable[[list["Peer"], list[bytes]], list[tuple[int, int]]]
"""Write ``datas[i]`` to ``peers[i]`` for each i; return (i, backlog) for the peers
whose sinks still hold unsent bytes afterwards (see `hub.outbox.write_each`)."""


HUB = "hub"
ECHO = "echo"


class Peer:
    """Compact per-connection state (``__slots__``: tens of thousands of these)."""

    __slots__ = (
        "client_id",
        "name",
        "kind",
        "ip",
        "sink",
        "member",
        "rooms",
        "last_seen",
        "out",
        "pending",
        "backlog",
        "bucket",
        "closed",
        "backfill",
        "pings",
        "grant",
        "expires_at",
    )

    def __init__(
        self,
        client_id: str,
        name: str | None,
        sink: Sink,
        ip: str = "",
        kind: str = HUB,
    ) -> None:
        self.client_id = client_id
        self.name = name
        self.kind = kind
        self.ip = ip
        self.sink = sink  # where its frames are written
        self.member: dict[str, str] = {"client_id": client_id, "name": name or client_id}
        self.rooms: set[str] = set()
        self.last_seen = 0.0  # monotonic time of the last frame received
        self.out: list[bytes] | None = None  # frames queued in this loop iteration
        self.pending = 0  # bytes in ``out``
        self.backlog = 0  # bytes the socket had not taken at the last write
        self.bucket: TokenBucket | None = None
        self.closed = False
        self.backfill: Backfill | None = None  # a replay paced by the socket's drain
        self.pings: TokenBucket | None = None  # its ping rate, from its first ping
        self.grant: Grant | None = None  # what its token allows; None without tokens
        self.expires_at: float | None = None  # hub-clock time its token runs out

    @property
    def user(self) -> str | None:
        """The app's user id from the connection's token (None without one)."""
        return self.grant.user if self.grant is not None else None
