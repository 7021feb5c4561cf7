"""The outbox: per-member queues, casts, the flush, the slow-consumer bound.

The hub's rules decide *what* a member is sent; this module decides *how* it
reaches the member's sink (`hub.peer.Sink`). State has one owner (the `Outbox`, on the
IOLoop thread, owned by the `hub.hub.Hub`).

Fan-out: a broadcast is encoded and framed once (by the broker) and the same
``bytes`` object is queued to every member. Frames queued to one peer within
one loop iteration are coalesced and written with a single ``write`` in
`Outbox.flush`, which runs via ``call_soon`` after the callbacks already
ready, so a burst of messages costs each member one syscall instead of one per
message.

A broadcast that is the first thing queued in a loop iteration (the common
case at a steady message rate) is not queued per member at all: it is kept
as one pending *cast* (room, frame) and written to the room's members by
`flush` in one batch. The cast is expanded into per-member queues, exactly as
if it had been queued member by member, as soon as anything else could be
ordered against it: a second broadcast, or a frame queued to one member (the
publisher's ack pulls in just that member). Joins and leaves in the same
iteration adjust it (`joining`, `leaving`), so each member gets the frames of
its rooms in order, the ones broadcast while it was a member, once.

Slow consumers: what a peer's socket has not taken may not exceed
``send_buffer_limit``; past it the peer is dropped (4001), so memory stays
bounded however many clients stop reading. Frames queued within one iteration
are no sign of a slow reader (one read of a publisher's input fans out as that
much to every member), so once a peer's queue and cached backlog pass the
limit its queue is offered to the socket first and only what is then refused
counts (`_refused_past`).

Backfills: a resume's replay (up to the whole history, many times the limit)
is not queued at once but fed to the peer as its socket drains
(`enqueue_paced`); what is sent to the peer meanwhile waits behind it and counts
against the limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol

from hub.peer import BatchWrite, Peer
from hub.settings import HubSettings

CLOSE_SLOW_CONSUMER = 4001

Schedule = Callable[[Callable[[], None]], Any]

BATCH_BYTES = 1 << 20
"""Joined bytes `Outbox.flush` holds at once before handing them to the writer: a
burst to a big room would otherwise keep every member's frames alive together
(1,000 members × 18 KB in one iteration is 18 MB)."""


class Backfill:
    """Frames owed to one peer that go out only as fast as its socket drains (a
    resume's replay), and whatever is sent to it meanwhile, kept behind them."""

    __slots__ = ("frames", "added", "waiting")

    def __init__(self) -> None:
        self.frames: deque[tuple[bytes, bool]] = deque()  # (frame, counts against the limit)
        self.added = 0  # bytes of the counted frames: sent to the peer since it began
        self.waiting = False  # a drain callback is registered with the sink


class OutboxCounters(Protocol):
    """The /healthz counters the outbox moves (the hub's `HubCounters`)."""

    slow_consumers_dropped: int
    ephemeral_skipped: int


class _Cast:
    """One broadcast not yet expanded into per-member queues (see the module docstring)."""

    __slots__ = ("room", "frame", "members", "skip")

    def __init__(self, room: str, frame: bytes, members: dict[str, Peer], skip: set[str]) -> None:
        self.room = room
        self.frame = frame
        self.members = members  # the room's live member dict: who is a member at the flush
        self.skip = skip  # client_ids that must not get it here (excluded, joined since, or
        # given the frame in their own queue already)

    def recipients(self) -> list[Peer]:
        """The members it is still owed to, in the room's order."""
        skip, members = self.skip, self.members
        if not skip:
            return list(members.values())
        if len(skip) * 8 < len(members):
            # Typically only the publisher, who took it with its ack: copying the
            # dict and popping a few keys runs in C, testing every member does not.
            kept = members.copy()
            for client_id in skip:
                kept.pop(client_id, None)
            return list(kept.values())
        return [p for p in members.values() if p.client_id not in skip]


def write_each(peers: list[Peer], datas: list[bytes]) -> list[tuple[int, int]]:
    """The plain batch writer: each peer's bytes through its sink."""
    left = []
    for i, peer in enumerate(peers):
        backlog = peer.sink.write(datas[i])
        if backlog:
            left.append((i, backlog))
    return left


class Outbox:
    """What is queued to every peer of one hub, and the writes that empty it."""

    def __init__(
        self,
        settings: HubSettings,
        rooms: dict[str, dict[str, Peer]],
        counters: OutboxCounters,
        schedule: Schedule,
        unregister: Callable[[Peer], None],
        write_batch: BatchWrite = write_each,
    ) -> None:
        self.settings = settings
        self.rooms = rooms  # the hub's room -> client_id -> member (read; slow ones removed)
        self.counters = counters
        self._schedule = schedule
        self._unregister = unregister  # the hub forgets a dropped slow consumer
        self.write_batch = write_batch  # the server installs handlers.fanout.batch_writer's
        self._dirty: list[Peer] = []  # peers with frames queued this iteration
        self._cast: _Cast | None = None  # a broadcast queued to a whole room at once
        self._doomed: list[Peer] = []  # slow consumers to disconnect at the next flush
        self._flush_scheduled = False

    # -- queueing ----------------------------------------------------------------

    def deliver(self, room: str, frame: bytes, exclude: str | None, lossy: bool) -> None:
        """Queue ``frame`` to every local member of ``room`` (the broker's callback)."""
        members = self.rooms.get(room)
        if not members:
            return
        if self._cast is not None:
            self._expand_cast()
        elif not lossy and not self._dirty and len(frame) <= self.settings.send_buffer_limit:
            # Nothing else is queued: keep it whole until the flush (or until
            # something must be ordered against it).
            self._cast = _Cast(room, frame, members, set() if exclude is None else {exclude})
            self._schedule_flush()
            return
        self._queue_to_all(members.values(), frame, lossy)
        if exclude is not None:
            self._unqueue_last(members.get(exclude), frame)

    def enqueue(self, peer: Peer, frame: bytes) -> None:
        """Queue ``frame`` to one peer, in order with everything else it is sent."""
        if peer.closed:
            return
        if self._cast is not None:
            self._take_cast(peer)
        if peer.backfill is None:
            self._queue(peer, frame)
        elif self._behind_backfill(peer, frame):
            self._drop_slow(peer)

    def _queue(self, peer: Peer, frame: bytes) -> None:
        out = peer.out
        if out is None:
            peer.out = [frame]
            self._dirty.append(peer)
            self._schedule_flush()
        else:
            out.append(frame)
        peer.pending += len(frame)
        limit = self.settings.send_buffer_limit
        if peer.pending + peer.backlog > limit and self._refused_past(peer, limit):
            self._drop_slow(peer)

    def enqueue_paced(self, peer: Peer, frames: Sequence[bytes]) -> None:
        """Queue ``frames`` to ``peer`` behind what it was sent, as fast as its socket
        drains: a resume's replay (up to the whole history) is not a burst that
        makes a prompt reader look slow. What is sent to it meanwhile follows the
        frames, and only that counts against ``send_buffer_limit`` (the frames are
        the history's own bytes)."""
        if peer.closed or not frames:
            return
        if self._cast is not None:
            self._take_cast(peer)
        if peer.backfill is None:
            peer.backfill = Backfill()
        peer.backfill.frames.extend((frame, False) for frame in frames)
        self._feed(peer)

    def _behind_backfill(self, peer: Peer, frame: bytes) -> bool:
        """Keep ``frame`` behind the backfill, where it counts against the limit;
        whether the peer is now past it (it reads slower than it is sent to)."""
        backfill = peer.backfill
        assert backfill is not None
        backfill.frames.append((frame, True))
        backfill.added += len(frame)
        limit = self.settings.send_buffer_limit
        if backfill.added + peer.backlog <= limit:
            return False
        peer.backlog = peer.sink.backlog()
        return backfill.added + peer.backlog > limit

    def _feed(self, peer: Peer) -> None:
        """Move backfill frames into the peer's queue while its socket keeps up
        (until half the limit is queued or unsent), then wait for a drain."""
        backfill = peer.backfill
        if backfill is None or peer.closed:
            return
        frames = backfill.frames
        budget = self.settings.send_buffer_limit // 2
        peer.backlog = peer.sink.backlog()
        while frames and peer.pending + peer.backlog < budget:
            frame, counted = frames.popleft()
            if counted:
                backfill.added -= len(frame)
            self._queue(peer, frame)
            if peer.closed:
                return
        if not frames:
            peer.backfill = None
        elif not backfill.waiting:
            backfill.waiting = True
            peer.sink.on_drained(partial(self._schedule, partial(self._drained, peer)))

    def _drained(self, peer: Peer) -> None:
        backfill = peer.backfill
        if backfill is not None:
            backfill.waiting = False
            self._feed(peer)

    def joining(self, peer: Peer, room: str) -> None:
        """``peer`` joins ``room`` now: a broadcast pending there predates it."""
        cast = self._cast
        if cast is not None and cast.room == room:
            cast.skip.add(peer.client_id)

    def leaving(self, peer: Peer, room: str) -> None:
        """``peer`` leaves ``room`` now: a broadcast pending there is still for it."""
        cast = self._cast
        if cast is not None and cast.room == room and not peer.closed:
            self._take_cast(peer)

    def _queue_to_all(self, peers: Iterable[Peer], frame: bytes, lossy: bool) -> None:
        """Append ``frame`` to each peer's queue, dropping those it takes over the limit.

        This loop is the hot path of bursts: it does no encoding, no syscalls
        and no allocation per member beyond a list append.
        """
        size = len(frame)
        limit = self.settings.send_buffer_limit
        lossy_threshold = self.settings.lossy_threshold if lossy else limit
        dirty = self._dirty
        slow: list[Peer] | None = None
        for peer in peers:
            if (
                lossy
                and peer.pending + peer.backlog > lossy_threshold
                and self._still_over(peer, lossy_threshold)
            ):
                self.counters.ephemeral_skipped += 1
                continue
            if peer.backfill is not None:
                if lossy:
                    self.counters.ephemeral_skipped += 1  # behind its replay: stale anyway
                elif self._behind_backfill(peer, frame):
                    slow = slow or []
                    slow.append(peer)
                continue
            out = peer.out
            if out is None:
                peer.out = [frame]
                dirty.append(peer)
            else:
                out.append(frame)
            peer.pending += size
            if peer.pending + peer.backlog > limit and self._refused_past(peer, limit):
                slow = slow or []
                slow.append(peer)
        if dirty:
            self._schedule_flush()
        if slow:
            for peer in slow:
                self._drop_slow(peer)

    def _expand_cast(self) -> None:
        """Turn the pending cast into per-member queues (something must follow it)."""
        cast, self._cast = self._cast, None
        if cast is not None:
            self._queue_to_all(cast.recipients(), cast.frame, False)

    def _take_cast(self, peer: Peer) -> None:
        """Queue the pending cast to ``peer`` alone, ahead of what comes next for it."""
        cast = self._cast
        if (
            cast is not None
            and cast.members.get(peer.client_id) is peer
            and peer.client_id not in cast.skip
        ):
            cast.skip.add(peer.client_id)
            self._queue_to_all((peer,), cast.frame, False)

    @staticmethod
    def _unqueue_last(peer: Peer | None, frame: bytes) -> None:
        """Take ``frame`` back from the peer it was not meant for (a presence
        event about that peer itself); cheaper than testing every member."""
        if peer is None:
            return
        if peer.out and peer.out[-1] is frame:
            peer.out.pop()
            peer.pending -= len(frame)
        elif peer.backfill is not None and peer.backfill.frames:
            frames = peer.backfill.frames
            if frames[-1][0] is frame:
                frames.pop()
                peer.backfill.added -= len(frame)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule(self.flush)

    # -- writing -----------------------------------------------------------------

    def flush(self) -> None:
        """Write each dirty peer's queued frames, joined, in one batch (`write_batch`)."""
        self._flush_scheduled = False
        if self._doomed:
            doomed, self._doomed = self._doomed, []
            for peer in doomed:
                self._unregister(peer)
                peer.sink.close(CLOSE_SLOW_CONSUMER, "slow consumer", True)
        cast, self._cast = self._cast, None
        if cast is not None:
            self._flush_cast(cast)  # first: the biggest batch, and latency counts
        dirty, self._dirty = self._dirty, []
        limit = self.settings.send_buffer_limit
        peers: list[Peer] = []
        datas: list[bytes] = []
        held = 0
        for peer in dirty:  # runs once per member per iteration
            out = peer.out
            peer.out = None
            if not out:
                continue  # flushed early (`flush_peer`) or dropped
            held += peer.pending
            peer.pending = 0
            peer.backlog = 0
            peers.append(peer)
            datas.append(out[0] if len(out) == 1 else b"".join(out))
            if held >= BATCH_BYTES:
                self._write(peers, datas, limit)
                peers, datas, held = [], [], 0
        if peers:
            self._write(peers, datas, limit)

    def flush_peer(self, peer: Peer) -> None:
        """Write what is queued to ``peer`` now: due before a close frame."""
        if self._cast is not None:
            self._take_cast(peer)
        self._write_queue(peer)

    @staticmethod
    def _write_queue(peer: Peer) -> None:
        """Hand ``peer``'s queue to its sink now, ahead of the flush."""
        out = peer.out
        if out:
            peer.out = None  # (it stays in the dirty list; the flush skips it)
            peer.pending = 0
            peer.backlog = peer.sink.write(out[0] if len(out) == 1 else b"".join(out))

    def _flush_cast(self, cast: _Cast) -> None:
        """Write the cast to its members in one batch; members with a backlog
        get it through their queues, whose limit check comes before the write."""
        peers = cast.recipients()
        ready = [p for p in peers if not p.backlog and p.backfill is None]
        if len(ready) != len(peers):
            self._queue_to_all(
                [p for p in peers if p.backlog or p.backfill is not None], cast.frame, False
            )
        if ready:
            self._write(ready, [cast.frame] * len(ready), self.settings.send_buffer_limit)

    def _write(self, peers: list[Peer], datas: list[bytes], limit: int) -> None:
        """One `write_batch` call; drop the peers it leaves over ``limit``."""
        for i, backlog in self.write_batch(peers, datas):
            peer = peers[i]
            peer.backlog = backlog
            if backlog > limit:
                self._drop_slow(peer)

    # -- the slow-consumer bound --------------------------------------------------

    def note_backlog(self, peer: Peer) -> None:
        """Re-check a peer written to outside `flush` (the compressed echo path)."""
        peer.backlog = peer.sink.backlog()
        if peer.backlog > self.settings.send_buffer_limit:
            self._drop_slow(peer)

    def _refused_past(self, peer: Peer, limit: int) -> bool:
        """Whether ``peer``'s socket holds more than ``limit`` bytes it has not
        taken; asked once its queue and cached backlog together pass the limit.

        Only refused bytes tell a slow reader: what was queued in this loop
        iteration has not been offered to the socket yet (one read of a busy
        publisher's input is 256 KiB of messages, its echoes as much), so the
        queue is written first and what the sink then holds is judged.
        """
        if not self._still_over(peer, limit):
            return False
        self._write_queue(peer)
        return peer.backlog > limit

    @staticmethod
    def _still_over(peer: Peer, threshold: int) -> bool:
        """Whether ``peer`` really holds more than ``threshold`` bytes; asked only
        once its cached backlog says so, as that dates from its last write and
        the socket may have drained since."""
        peer.backlog = peer.sink.backlog()
        return peer.pending + peer.backlog > threshold

    def _drop_slow(self, peer: Peer) -> None:
        """Stop queueing to ``peer`` now; disconnect it at the next flush.

        Deferred because this runs inside a fan-out or a broker callback, where
        leaving rooms (and announcing it) must not re-enter the broker.
        """
        if peer.closed:
            return
        peer.closed = True
        peer.out = None
        peer.pending = 0
        peer.backfill = None
        for room in peer.rooms:  # no more fan-out to it (presence leave comes at the flush)
            self.rooms[room].pop(peer.client_id, None)
        self.counters.slow_consumers_dropped += 1
        self._doomed.append(peer)
        self._schedule_flush()

    # -- introspection ------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The outbox's share of /healthz."""
        return {
            "queued_peers": len(self._dirty),
            "cast_pending": int(self._cast is not None),
            "pending_callbacks": int(self._flush_scheduled) + len(self._doomed),
        }
