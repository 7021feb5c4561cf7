"""The broker: who owns seq numbers, history and presence for each room.

The hub never reaches past this interface, so the in-memory broker here and a
Redis broker (several processes sharing rooms) are interchangeable. A broker
delivers every room event to the hub through the ``deliver`` callback given to
`Broker.attach`; the hub fans it out to its local members.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hub import protocol
from hub.history import Replay, RoomHistory
from hub.settings import HubSettings

Deliver = Callable[[str, bytes, str | None, bool], None]
"""``deliver(room, frame, exclude_client_id, lossy)``: fan a framed event out to local members."""


@dataclass(slots=True, frozen=True)
class RoomSnapshot:
    """A room as a joiner sees it in ``joined``."""

    epoch: str
    seq: int
    members_json: str
    """The JSON array of members, ready to splice into ``joined`` (see `protocol.joined_frame`)."""


@dataclass(slots=True, frozen=True)
class RoomState:
    """A room as the backend API reports it (members of every node, for a shared broker)."""

    epoch: str
    seq: int
    members: list[dict[str, str]]


class Broker(Protocol):
    """What the hub needs from whoever owns rooms' shared state."""

    def attach(self, deliver: Deliver) -> None:
        """Set the callback through which room events reach the hub."""

    def join(self, room: str, member: dict[str, str]) -> RoomSnapshot:
        """Add ``member`` to the room's presence, announce it, return the room's state."""

    def leave(self, room: str, member: dict[str, str]) -> None:
        """Remove ``member`` from the room's presence and announce it."""

    def publish(self, room: str, sender: dict[str, str], data: Any, ephemeral: bool) -> int | None:
        """Number (unless ephemeral), keep and deliver a message; return its seq.

        ``sender`` is the publishing member, or ``{"name": ...}`` for the backend API
        (see `protocol.message_frame`)."""

    def room_state(self, room: str) -> RoomState | None:
        """The room's epoch, last seq and members; None for a room with neither
        members nor history."""

    def history(self, room: str, since: int, limit: int) -> list[bytes]:
        """Up to ``limit`` kept message frames with seq > ``since``, oldest first."""

    def busiest(self, limit: int) -> list[tuple[str, int]]:
        """(room, member count) of the ``limit`` rooms with most members, biggest first."""

    def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        """What a re-joining client missed since ``since`` of ``epoch``."""

    def expire(self, now: float) -> int:
        """Forget histories of rooms empty for longer than the TTL; return how many."""

    def stats(self) -> dict[str, int]:
        """Counters for /healthz."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class MemoryBroker:
    """Rooms' state in this process: the embedded default, for a single node.

    A room's history outlives its last member for ``history_ttl`` seconds so
    that a client reconnecting after a blip (or a page reload) still resumes;
    after that, the room is forgotten entirely and memory stays bounded.

    History is bounded per room (``history_size`` messages, ``history_bytes``)
    and for the process (``memory_limit`` bytes of frames): past that, the
    least recently used rooms lose their history. A room without members is
    forgotten (it comes back with a new epoch); a room with members keeps its
    numbering (its members' next seq must follow on) and loses its frames.
    Either way a resume from before sees ``history_gap``.
    """

    def __init__(
        self,
        history_size: int,
        history_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = _now_ms,
        history_bytes: int | None = None,
        memory_limit: int | None = None,
    ) -> None:
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes or None  # per room; None or 0: count only
        self.memory_limit = memory_limit or None  # all rooms; None or 0: no limit
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self._histories: dict[str, RoomHistory] = {}  # every room with members or kept history
        # room -> client_id -> the member as JSON, kept encoded: a joiner of a room of
        # N members gets all N, and encoding N dicts per join made big rooms slow.
        self._presence: dict[str, dict[str, str]] = {}
        self._empty: dict[str, None] = {}  # rooms without members, oldest-emptied first
        self._recent: dict[str, None] = {}  # rooms holding frames, least recently used first
        self._held_bytes = 0  # frame bytes held by all rooms
        self._evicted = 0  # rooms whose history went for the memory limit
        self._deliver: Deliver = _drop

    @classmethod
    def for_settings(
        cls, settings: HubSettings, clock: Callable[[], float] = time.monotonic
    ) -> MemoryBroker:
        """The broker a `Hub` builds for itself when given none."""
        return cls(
            settings.history_size,
            settings.history_ttl,
            clock=clock,
            history_bytes=settings.history_bytes,
            memory_limit=settings.history_memory_limit,
        )

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def _history(self, room: str) -> RoomHistory:
        history = self._histories.get(room)
        if history is None:
            history = self._histories[room] = RoomHistory(self.history_size, self.history_bytes)
        return history

    def _used(self, room: str) -> None:
        """Mark a room holding frames as the most recently used."""
        if self._recent.pop(room, 0) is None:
            self._recent[room] = None

    def join(self, room: str, member: dict[str, str]) -> RoomSnapshot:
        history = self._history(room)
        self._used(room)
        present = self._presence.setdefault(room, {})
        if not present:
            self._empty.pop(room, None)
            history.empty_since = None
        if member["client_id"] not in present:
            present[member["client_id"]] = protocol.to_json(member)
            self._deliver(
                room, protocol.presence_frame(room, "join", member), member["client_id"], False
            )
        return RoomSnapshot(history.epoch, history.seq, "[" + ",".join(present.values()) + "]")

    def leave(self, room: str, member: dict[str, str]) -> None:
        present = self._presence.get(room)
        if not present or present.pop(member["client_id"], None) is None:
            return
        self._deliver(
            room, protocol.presence_frame(room, "leave", member), member["client_id"], False
        )
        if not present:
            del self._presence[room]
            self._histories[room].empty_since = self._clock()
            self._empty[room] = None

    def publish(self, room: str, sender: dict[str, str], data: Any, ephemeral: bool) -> int | None:
        ts = self._wall_clock_ms()
        if ephemeral:
            self._deliver(
                room, protocol.message_frame(room, None, sender, data, ts, True), None, True
            )
            return None
        history = self._history(room)
        # Frame before numbering so that data that cannot be encoded consumes no seq.
        frame = protocol.message_frame(room, history.seq + 1, sender, data, ts)
        held = history.bytes
        seq = history.record(frame)
        if history.empty_since is None and room not in self._presence:
            # Published into a room nobody is in (the backend API, a user's
            # personal room): kept for history_ttl like any emptied room.
            history.empty_since = self._clock()
            self._empty[room] = None
        self._held_bytes += history.bytes - held
        self._recent.pop(room, None)
        if history.bytes:
            self._recent[room] = None
        if self.memory_limit is not None and self._held_bytes > self.memory_limit:
            self._free_history(room)
        self._deliver(room, frame, None, False)
        return seq

    def _free_history(self, current: str) -> None:
        """Take history from the least recently used rooms until all of it fits
        ``memory_limit``; ``current`` (the most recent) only loses its oldest
        frames, and only when it alone is over."""
        assert self.memory_limit is not None
        while self._held_bytes > self.memory_limit and self._recent:
            room = next(iter(self._recent))
            history = self._histories[room]
            if room == current:
                self._held_bytes -= history.drop_oldest()
                if not history.bytes:
                    del self._recent[room]
                continue
            self._evicted += 1
            if not self._presence.get(room):
                self._forget(room)
            else:
                del self._recent[room]
                self._held_bytes -= history.forget_frames()

    def _forget(self, room: str) -> None:
        """Drop an empty room and its history entirely."""
        self._empty.pop(room, None)
        self._recent.pop(room, None)
        self._held_bytes -= self._histories.pop(room).bytes

    def replay(self, room: str, since: int | None, epoch: str | None) -> Replay:
        self._used(room)
        return self._history(room).replay(since, epoch)

    def expire(self, now: float) -> int:
        expired = 0
        for room in list(self._empty):
            history = self._histories[room]
            if history.empty_since is None or now - history.empty_since < self.history_ttl:
                break  # ordered by when they emptied: the rest are younger
            self._forget(room)
            expired += 1
        return expired

    def stats(self) -> dict[str, int]:
        return {
            "history_rooms": len(self._histories),
            "history_bytes": self._held_bytes,
            "history_rooms_evicted": self._evicted,
        }

    def room_state(self, room: str) -> RoomState | None:
        history = self._histories.get(room)
        if history is None:
            return None
        present = self._presence.get(room, {})
        return RoomState(history.epoch, history.seq, [json.loads(m) for m in present.values()])

    def history(self, room: str, since: int, limit: int) -> list[bytes]:
        history = self._histories.get(room)
        if history is None or since >= history.seq or limit <= 0:
            return []
        # Replaying our own epoch gives what is held after ``since`` (all of it
        # when ``since`` is older than the oldest kept message).
        return history.replay(since, history.epoch).frames[:limit]

    def busiest(self, limit: int) -> list[tuple[str, int]]:
        sizes = ((room, len(present)) for room, present in self._presence.items())
        return heapq.nlargest(limit, sizes, key=lambda item: item[1])


def _drop(room: str, frame: bytes, exclude: str | None, lossy: bool) -> None:
    """Deliver callback before a hub attaches: nobody to deliver to."""
