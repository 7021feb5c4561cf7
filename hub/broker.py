"""The broker: who owns seq numbers, history and presence for each room.

The hub never reaches past this interface, so the in-memory broker here and
`hub.redis_broker.RedisBroker` (several processes sharing rooms) are
interchangeable. A broker delivers every room event to the hub through the
``deliver`` callback given to `Broker.attach`; the hub fans it out to its
local members.

Joins and publishes answer through a callback rather than a return value:
with Redis a round trip sits between a publish and its seq, and between a
join and its snapshot. `MemoryBroker` calls back before returning, so its
fast path costs no task and no future. The backend API's questions (room
state, history, the busiest rooms) are coroutines: no hot path asks them.
"""

from __future__ import annotations

import heapq
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from hub import protocol
from hub.history import Replay, RoomHistory
from hub.settings import HubSettings

Deliver = Callable[[str, bytes, str | None, bool], None]
"""``deliver(room, frame, exclude_client_id, lossy)``: fan a framed event out to local members."""


UNAVAILABLE = "unavailable"
"""The error a publish or join gets while the broker cannot reach shared state."""


@dataclass(slots=True)
class JoinResult:
    """A room as a joiner sees it: ``joined``, then the replay it asked for,
    then ``catch_up``: messages numbered after the snapshot that reached this
    node before the joiner was added (a remote broker's stream runs ahead)."""

    epoch: str
    seq: int
    member_count: int
    members_json: bytes
    """The JSON array of members (UTF-8), ready to splice into ``joined`` (see
    `protocol.joined_frame`)."""
    truncated: bool
    replay: Replay
    catch_up: list[bytes] = field(default_factory=list)


JoinDone = Callable[[JoinResult | None], None]
"""Called with the join's result, or None when the broker is unavailable."""
PublishDone = Callable[[int | None, str | None], None]
"""Called with (seq, None) once this node delivered the message (seq None for
ephemeral ones), or (None, `UNAVAILABLE`)."""


def new_node_id() -> str:
    """Names this process among the hub's nodes: unique, fixed for its life."""
    return secrets.token_hex(6)


@dataclass(slots=True, frozen=True)
class RoomState:
    """A room as the backend API reports it (members of every node, for a shared broker)."""

    epoch: str
    seq: int
    members: list[dict[str, str]]


class Broker(Protocol):
    """What the hub needs from whoever owns rooms' shared state."""

    kind: str
    """``memory`` or ``redis``, for /healthz."""
    node: str
    """This process's id among the nodes sharing the broker."""

    def attach(self, deliver: Deliver) -> None:
        """Set the callback through which room events reach the hub."""

    def join(
        self,
        room: str,
        member: dict[str, str],
        since: int | None,
        epoch: str | None,
        done: JoinDone,
    ) -> None:
        """Add ``member`` to the room's presence and announce it; ``done`` gets the
        room's state and what a client that saw ``since`` of ``epoch`` missed."""

    def leave(self, room: str, member: dict[str, str]) -> None:
        """Remove ``member`` from the room's presence and announce it."""

    def publish(
        self, room: str, sender: dict[str, str], data: Any, ephemeral: bool, done: PublishDone
    ) -> None:
        """Number (unless ephemeral), keep and deliver a message. ``sender`` is the
        publishing member, or ``{"name": ...}`` for the backend API (see
        `protocol.message_frame`). Raises `protocol.ProtocolError` at once for
        data that cannot be relayed."""

    async def room_state(self, room: str) -> RoomState | None:
        """The room's epoch, last seq and members on every node; None for a room
        with neither members nor history."""

    async def history(self, room: str, since: int, limit: int) -> list[bytes]:
        """Up to ``limit`` kept message frames with seq > ``since``, oldest first."""

    async def busiest(self, limit: int) -> list[tuple[str, int]]:
        """(room, member count) of the ``limit`` rooms with most members, biggest first."""

    def expire(self, now: float) -> int:
        """Forget histories of rooms empty for longer than the TTL; return how many."""

    def announce_counts(self) -> None:
        """Send count events for rooms over the presence limit whose count changed
        (called once a second)."""

    def stats(self) -> dict[str, Any]:
        """Counters for /healthz."""


def members_array(texts: Iterable[bytes]) -> bytes:
    """The JSON array of members' JSON texts, as ``joined`` carries it."""
    return b"[" + b",".join(texts) + b"]"


class ListedMembers:
    """The members ``joined`` lists in a room over the presence limit: the first
    ``limit`` to join, encoded once and reused until one of them leaves (joiners
    of a 10,000-member room would otherwise each rebuild a 1,000-member list)."""

    __slots__ = ("json", "client_ids")

    def __init__(self, present: dict[str, bytes], limit: int) -> None:
        first = list(islice(present.items(), limit))
        self.json = members_array(text for _, text in first)
        self.client_ids = {client_id for client_id, _ in first}


class PresenceCounts:
    """Which rooms' member counts changed unannounced, and what was last announced:
    at most one count event per room per second, and only for a real change."""

    __slots__ = ("_changed", "_announced")

    def __init__(self) -> None:
        self._changed: set[str] = set()
        self._announced: dict[str, int] = {}

    def changed(self, room: str) -> None:
        self._changed.add(room)

    def take(self) -> set[str]:
        rooms, self._changed = self._changed, set()
        return rooms

    def should_announce(self, room: str, count: int, limit: int) -> bool:
        """Whether to send ``count`` for ``room``: it is over ``limit``, or was
        announced over it before (the last count on the way back down), and it
        changed since the last count sent."""
        last = self._announced.get(room)
        if count <= limit:
            self._announced.pop(room, None)
            return last is not None and last != count
        self._announced[room] = count
        return last != count


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

    kind = "memory"

    def __init__(
        self,
        history_size: int,
        history_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = _now_ms,
        history_bytes: int | None = None,
        memory_limit: int | None = None,
        presence_limit: int = 1000,
    ) -> None:
        self.node = new_node_id()
        self.presence_limit = presence_limit
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes or None  # per room; None or 0: count only
        self.memory_limit = memory_limit or None  # all rooms; None or 0: no limit
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self._histories: dict[str, RoomHistory] = {}  # every room with members or kept history
        # room -> client_id -> the member as UTF-8 JSON, kept encoded: a joiner of a
        # room of N members gets all N, and encoding N dicts per join made big rooms slow.
        self._presence: dict[str, dict[str, bytes]] = {}
        self._empty: dict[str, None] = {}  # rooms without members, oldest-emptied first
        self._recent: dict[str, None] = {}  # rooms holding frames, least recently used first
        self._held_bytes = 0  # frame bytes held by all rooms
        self._evicted = 0  # rooms whose history went for the memory limit
        self._counts = PresenceCounts()
        self._listed: dict[str, ListedMembers] = {}  # rooms over the limit: who joined shows
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
            presence_limit=settings.presence_limit,
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

    def join(
        self,
        room: str,
        member: dict[str, str],
        since: int | None,
        epoch: str | None,
        done: JoinDone,
    ) -> None:
        history = self._history(room)
        self._used(room)
        present = self._presence.setdefault(room, {})
        if not present:
            self._empty.pop(room, None)
            history.empty_since = None
        limit = self.presence_limit
        if member["client_id"] not in present:
            present[member["client_id"]] = protocol.to_json(member).encode()
            if len(present) <= limit:
                self._deliver(
                    room, protocol.presence_frame(room, "join", member), member["client_id"], False
                )
            else:
                self._counts.changed(room)
        count = len(present)
        if count <= limit:
            members_json = members_array(present.values())
        else:
            listed = self._listed.get(room)
            if listed is None:
                listed = self._listed[room] = ListedMembers(present, limit)
            members_json = listed.json
        done(
            JoinResult(
                history.epoch,
                history.seq,
                count,
                members_json,
                count > limit,
                history.replay(since, epoch),
            )
        )

    def leave(self, room: str, member: dict[str, str]) -> None:
        present = self._presence.get(room)
        if not present or present.pop(member["client_id"], None) is None:
            return
        listed = self._listed.get(room)
        if listed is not None and (
            member["client_id"] in listed.client_ids or len(present) <= self.presence_limit
        ):
            del self._listed[room]  # one of those listed left (or the room is small again)
        if len(present) < self.presence_limit:
            self._deliver(
                room, protocol.presence_frame(room, "leave", member), member["client_id"], False
            )
        else:
            self._counts.changed(room)
        if not present:
            del self._presence[room]
            self._histories[room].empty_since = self._clock()
            self._empty[room] = None

    def publish(
        self, room: str, sender: dict[str, str], data: Any, ephemeral: bool, done: PublishDone
    ) -> None:
        ts = self._wall_clock_ms()
        if ephemeral:
            self._deliver(
                room, protocol.message_frame(room, None, sender, data, ts, True), None, True
            )
            done(None, None)
            return
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
        done(seq, None)

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

    def expire(self, now: float) -> int:
        expired = 0
        for room in list(self._empty):
            history = self._histories[room]
            if history.empty_since is None or now - history.empty_since < self.history_ttl:
                break  # ordered by when they emptied: the rest are younger
            self._forget(room)
            expired += 1
        return expired

    def announce_counts(self) -> None:
        """Tell the members of rooms over the presence limit how many they are now
        (called once a second), in place of the joins and leaves not announced."""
        for room in self._counts.take():
            present = self._presence.get(room)
            count = len(present) if present else 0
            if self._counts.should_announce(room, count, self.presence_limit):
                self._deliver(room, protocol.count_frame(room, count), None, False)

    def stats(self) -> dict[str, Any]:
        return {
            "broker": {"kind": self.kind, "connected": True},
            "history_rooms": len(self._histories),
            "history_bytes": self._held_bytes,
            "history_rooms_evicted": self._evicted,
        }

    async def room_state(self, room: str) -> RoomState | None:
        history = self._histories.get(room)
        if history is None:
            return None
        present = self._presence.get(room, {})
        return RoomState(history.epoch, history.seq, [json.loads(m) for m in present.values()])

    async def history(self, room: str, since: int, limit: int) -> list[bytes]:
        history = self._histories.get(room)
        if history is None or since >= history.seq or limit <= 0:
            return []
        # Replaying our own epoch gives what is held after ``since`` (all of it
        # when ``since`` is older than the oldest kept message).
        return history.replay(since, history.epoch).frames[:limit]

    async def busiest(self, limit: int) -> list[tuple[str, int]]:
        sizes = ((room, len(present)) for room, present in self._presence.items())
        return heapq.nlargest(limit, sizes, key=lambda item: item[1])


def _drop(room: str, frame: bytes, exclude: str | None, lossy: bool) -> None:
    """Deliver callback before a hub attaches: nobody to deliver to."""
