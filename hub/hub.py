"""The hub: connections, local room membership, the protocol's rules, fan-out.

State has one owner (this object, on the IOLoop thread); membership changes
only in `register`, `unregister`, `_join_room` and `_leave_room`.

Fan-out: a broadcast is encoded and framed once (by the broker) and the same
``bytes`` object is queued to every member. Frames queued to one peer within
one loop iteration are coalesced and written with a single ``write`` in
`flush`, which runs via ``call_soon`` after the callbacks already ready, so a
burst of messages costs each member one syscall instead of one per message.

A broadcast that is the first thing queued in a loop iteration (the common
case at a steady message rate) is not queued per member at all: it is kept
as one pending *cast* (room, frame) and written to the room's members by
`flush` in one batch. The cast is expanded into per-member queues, exactly as
if it had been queued member by member, as soon as anything else could be
ordered against it: a second broadcast, or a frame queued to one member (the
publisher's ack pulls in just that member). Joins and leaves in the same
iteration adjust it, so each member gets the frames of its rooms in order,
the ones broadcast while it was a member, once.

Slow consumers: a peer's queued bytes (this iteration's plus what its socket
had not taken at the last write) may not exceed ``send_buffer_limit``; past
it the peer is dropped (4001), so memory stays bounded however many clients
stop reading.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from hub import protocol
from hub.auth import AuthError, Grant, TokenVerifier
from hub.broker import Broker, MemoryBroker
from hub.frames import PING_FRAME
from hub.limits import TokenBucket
from hub.peer import ECHO, HUB, BatchWrite, Peer
from hub.settings import HubSettings

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_PING_TIMEOUT = 4000
CLOSE_SLOW_CONSUMER = 4001
CLOSE_UNAUTHORIZED = 4003
CLOSE_TOKEN_EXPIRED = 4004
CLOSE_DISCONNECTED = 4005

Schedule = Callable[[Callable[[], None]], Any]

BATCH_BYTES = 1 << 20
"""Joined bytes `Hub.flush` holds at once before handing them to the writer: a
burst to a big room would otherwise keep every member's frames alive together
(1,000 members × 18 KB in one iteration is 18 MB)."""


@dataclass(slots=True)
class HubCounters:
    """Monotonic counters reported by /healthz."""

    slow_consumers_dropped: int = 0
    stale_evicted: int = 0
    rejected_at_capacity: int = 0
    rejected_per_ip: int = 0
    rate_limited: int = 0
    closed_for_rate: int = 0
    ephemeral_skipped: int = 0
    published: int = 0
    tokens_expired: int = 0
    rejected_unauthorized: int = 0


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


def _call_soon(callback: Callable[[], None]) -> Any:
    return asyncio.get_running_loop().call_soon(callback)


def write_each(peers: list[Peer], datas: list[bytes]) -> list[tuple[int, int]]:
    """The plain batch writer: each peer's bytes through its transport."""
    left = []
    for i, peer in enumerate(peers):
        backlog = peer.transport.write(datas[i])
        if backlog:
            left.append((i, backlog))
    return left


class Hub:
    """Every connection of this process and the rooms they are in."""

    def __init__(
        self,
        settings: HubSettings | None = None,
        broker: Broker | None = None,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = _call_soon,
        write_batch: BatchWrite = write_each,
    ) -> None:
        self.settings = settings = settings or HubSettings()
        self.broker: Broker = broker or MemoryBroker(
            settings.history_size, settings.history_ttl, clock=clock
        )
        self.broker.attach(self._deliver)
        self.clock = clock
        self._schedule = schedule
        self.write_batch = write_batch  # the server installs handlers.batch_writer's
        self.peers: dict[str, Peer] = {}  # client_id -> every registered connection
        self.rooms: dict[str, dict[str, Peer]] = {}  # room -> client_id -> local member
        self.counters = HubCounters()
        self._per_ip: dict[str, int] = {}  # client address -> open connections
        self._dirty: list[Peer] = []  # peers with frames queued this iteration
        self._cast: _Cast | None = None  # a broadcast queued to a whole room at once
        self._doomed: list[Peer] = []  # slow consumers to disconnect at the next flush
        self._flush_scheduled = False
        self._next_ping = 0.0
        self._ids = itertools.count(1)
        self._id_prefix = f"{int(time.time() * 1000) % 1_000_000_000:x}"
        self.verifier: TokenVerifier | None = None  # set by the server: /ws then needs tokens

    # -- connections -------------------------------------------------------

    def new_client_id(self) -> str:
        """An id unique in this process (and unlikely to repeat across restarts)."""
        return f"{self._id_prefix}-{next(self._ids):x}"

    def register(self, peer: Peer) -> tuple[int, str] | None:
        """Admit ``peer``, or return the (close code, reason) it is refused with.

        The guard runs before anything is recorded, so the number of
        registered connections never exceeds ``max_connections``.
        """
        settings = self.settings
        if len(self.peers) >= settings.max_connections:
            self.counters.rejected_at_capacity += 1
            return CLOSE_TRY_AGAIN_LATER, "server at capacity, try again later"
        from_ip = self._per_ip.get(peer.ip, 0)
        if settings.max_connections_per_ip and from_ip >= settings.max_connections_per_ip:
            self.counters.rejected_per_ip += 1
            return CLOSE_POLICY, "too many connections from this address"
        self._per_ip[peer.ip] = from_ip + 1
        self.peers[peer.client_id] = peer
        peer.last_seen = self.clock()
        if peer.kind == HUB:
            if settings.rate_limit > 0:
                peer.bucket = TokenBucket(settings.rate_limit, settings.rate_burst, peer.last_seen)
            if self.verifier is None:
                self.send(peer, protocol.encode({"type": "welcome", "client_id": peer.client_id}))
            # else `authenticate` welcomes it once its token is accepted
        return None

    def authenticate(self, peer: Peer, token: str | None) -> bool:
        """Check a registered /ws peer's token (when the hub has a verifier):
        welcome it as the token's user, or say why not and close it with 4003."""
        if self.verifier is None or peer.closed:
            return not peer.closed
        try:
            grant = self.verifier.verify(token)
        except AuthError as error:
            self.counters.rejected_unauthorized += 1
            self.send(peer, protocol.error_frame(protocol.UNAUTHORIZED, error.detail))
            self.disconnect(peer, CLOSE_UNAUTHORIZED, "unauthorized")
            return False
        self._apply_grant(peer, grant)
        peer.name = grant.name or peer.name
        peer.member = {
            "client_id": peer.client_id,
            "name": peer.name or peer.client_id,
            "user": grant.user,
        }
        welcome: dict[str, Any] = {"type": "welcome", "client_id": peer.client_id}
        welcome["user"] = grant.user
        if grant.exp is not None:
            welcome["exp"] = grant.exp
        self.send(peer, protocol.encode(welcome))
        return True

    def _apply_grant(self, peer: Peer, grant: Grant) -> None:
        peer.grant = grant
        peer.expires_at = None if grant.ttl is None else self.clock() + grant.ttl

    def _refresh(self, peer: Peer, command: protocol.Refresh) -> None:
        """Swap the connection's token for a fresh one of the same user."""
        current = peer.grant
        if self.verifier is None or current is None:
            raise protocol.ProtocolError(
                protocol.BAD_REQUEST, "this server does not use tokens", command.request_id
            )
        try:
            grant = self.verifier.verify(command.token)
        except AuthError as error:
            raise protocol.ProtocolError(
                protocol.UNAUTHORIZED, error.detail, command.request_id
            ) from None
        if grant.user != current.user:
            raise protocol.ProtocolError(
                protocol.UNAUTHORIZED,
                'the new token is for another user ("sub")',
                command.request_id,
            )
        self._apply_grant(peer, grant)
        answer: dict[str, Any] = {"type": "refreshed", "exp": grant.exp}
        if command.request_id is not None:
            answer["id"] = command.request_id
        self.send(peer, protocol.encode(answer))

    def _expire_tokens(self, now: float) -> None:
        """Close connections whose token ran out without a refresh (from `sweep`)."""
        expired = [
            p for p in self.peers.values() if p.expires_at is not None and p.expires_at <= now
        ]
        for peer in expired:
            self.counters.tokens_expired += 1
            self.send(peer, protocol.error_frame(protocol.TOKEN_EXPIRED, "the token has expired"))
            self.disconnect(peer, CLOSE_TOKEN_EXPIRED, "token expired")

    def disconnect_where(self, user: str | None = None, client_id: str | None = None) -> int:
        """Close (4005) the connections of ``user`` or the one ``client_id``; return how many."""
        if client_id is not None:
            found = self.peers.get(client_id)
            doomed = [found] if found is not None and found.kind == HUB else []
        else:
            doomed = [p for p in self.peers.values() if user is not None and p.user == user]
        for peer in doomed:
            self.disconnect(peer, CLOSE_DISCONNECTED, "disconnected by server")
        return len(doomed)

    def publish_from_server(
        self, room: str, data: Any, sender: str = "server", ephemeral: bool = False
    ) -> int | None:
        """Publish as the app's backend (the HTTP API): an ordinary message whose
        ``from`` is ``sender``, with no ``client_id`` and no ``user``."""
        seq = self.broker.publish(room, {"name": sender}, data, ephemeral)
        self.counters.published += 1
        return seq

    def unregister(self, peer: Peer) -> None:
        """Forget ``peer``: it leaves its rooms (others see presence leave). Idempotent."""
        if self.peers.get(peer.client_id) is not peer:
            return
        del self.peers[peer.client_id]
        left = self._per_ip[peer.ip] - 1
        if left:
            self._per_ip[peer.ip] = left
        else:
            del self._per_ip[peer.ip]
        peer.closed = True
        peer.out = None
        peer.pending = 0
        for room in list(peer.rooms):
            self._leave_room(peer, room)

    def disconnect(self, peer: Peer, code: int, reason: str, abort: bool = False) -> None:
        """Unregister ``peer`` now and close its socket with ``code``.

        Without ``abort``, what was queued to the peer goes out before the close
        frame (a rate-limited client still gets its earlier replies).
        """
        if peer.closed:
            return
        if not abort:
            self.flush_peer(peer)
        self.unregister(peer)
        peer.transport.close(code, reason, abort)

    def flush_peer(self, peer: Peer) -> None:
        """Write what is queued to ``peer`` now: due before a close frame."""
        if self._cast is not None:
            self._take_cast(peer)
        out = peer.out
        if out:
            peer.out = None
            peer.pending = 0
            peer.backlog = peer.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutdown") -> None:
        """Deliver what is queued, then close every connection (server shutdown)."""
        self.flush()
        for peer in list(self.peers.values()):
            self.disconnect(peer, code, reason)

    # -- messages from clients ------------------------------------------------

    def handle_text(self, peer: Peer, text: str) -> None:
        """Act on one text frame received on /ws."""
        if not self._within_rate(peer):
            return
        try:
            command = protocol.parse(text)
            if type(command) is protocol.Publish:
                self._publish(peer, command)
            elif type(command) is protocol.Join:
                self._join(peer, command)
            elif type(command) is protocol.Refresh:
                self._refresh(peer, command)
            else:
                self._leave(peer, command)
        except protocol.ProtocolError as error:
            self.send(peer, protocol.error_frame(error.code, error.detail, error.request_id))

    def handle_binary(self, peer: Peer) -> None:
        """Binary frames carry nothing on /ws: say so, keep the connection."""
        if self._within_rate(peer):
            self.send(
                peer,
                protocol.error_frame(protocol.BAD_REQUEST, "binary frames are not used on /ws"),
            )

    def touch(self, peer: Peer) -> None:
        """Record a sign of life (any frame, a pong included) for the heartbeat."""
        peer.last_seen = self.clock()

    def _within_rate(self, peer: Peer) -> bool:
        """Count one incoming message against the peer's rate limit (every kind
        counts, garbage included); refuse it, or close a peer that persists."""
        now = self.clock()
        peer.last_seen = now
        bucket = peer.bucket
        if bucket is None or bucket.take(now):
            return True
        self.counters.rate_limited += 1
        if bucket.strikes > bucket.burst:
            self.counters.closed_for_rate += 1
            self.disconnect(peer, CLOSE_POLICY, "rate limit exceeded")
        else:
            self.send(peer, protocol.error_frame(protocol.RATE_LIMITED, "slow down"))
        return False

    def _join(self, peer: Peer, command: protocol.Join) -> None:
        room = command.room
        if peer.grant is not None and not peer.grant.may_join(room):
            raise protocol.ProtocolError(
                protocol.FORBIDDEN, f"your token does not allow joining {room}", command.request_id
            )
        limit = self.settings.max_rooms_per_connection
        if room not in peer.rooms and limit and len(peer.rooms) >= limit:
            raise protocol.ProtocolError(
                protocol.TOO_MANY_ROOMS,
                f"a connection may be in at most {limit} rooms",
                command.request_id,
            )
        snapshot = self.broker.join(room, peer.member)
        if room not in peer.rooms:
            cast = self._cast
            if cast is not None and cast.room == room:
                cast.skip.add(peer.client_id)  # broadcast before it joined: not for it
            self.rooms.setdefault(room, {})[peer.client_id] = peer
            peer.rooms.add(room)
        self.send(
            peer, protocol.joined_frame(room, snapshot.epoch, snapshot.seq, snapshot.members_json)
        )
        if command.since is None:
            return
        replay = self.broker.replay(room, command.since, command.epoch)
        if replay.gap:
            self.send(
                peer,
                protocol.error_frame(
                    protocol.HISTORY_GAP,
                    f"history does not reach back to seq {command.since} of that epoch",
                    room=room,
                    epoch=snapshot.epoch,
                    oldest_seq=replay.oldest_seq,
                ),
            )
        for frame in replay.frames:
            self.send(peer, frame)

    def _leave(self, peer: Peer, command: protocol.Leave) -> None:
        if command.room not in peer.rooms:
            raise protocol.ProtocolError(
                protocol.NOT_JOINED, f"not in room {command.room}", command.request_id
            )
        self._leave_room(peer, command.room)
        self.send(peer, protocol.encode({"type": "left", "room": command.room}))

    def _leave_room(self, peer: Peer, room: str) -> None:
        cast = self._cast
        if cast is not None and cast.room == room and not peer.closed:
            self._take_cast(peer)  # broadcast while it was a member: still for it
        members = self.rooms.get(room)
        if members is not None:  # a doomed slow consumer was taken out already
            members.pop(peer.client_id, None)
            if not members:
                del self.rooms[room]
        peer.rooms.discard(room)
        self.broker.leave(room, peer.member)

    def _publish(self, peer: Peer, command: protocol.Publish) -> None:
        if peer.grant is not None and not peer.grant.may_publish(command.room):
            raise protocol.ProtocolError(
                protocol.FORBIDDEN,
                f"your token does not allow publishing to {command.room}",
                command.request_id,
            )
        if command.room not in peer.rooms:
            raise protocol.ProtocolError(
                protocol.NOT_JOINED, f"join {command.room} before publishing", command.request_id
            )
        try:
            seq = self.broker.publish(command.room, peer.member, command.data, command.ephemeral)
        except protocol.ProtocolError as error:
            error.request_id = command.request_id
            raise
        self.counters.published += 1
        if command.request_id is not None:
            ack: dict[str, Any] = {"type": "ack", "id": command.request_id}
            if seq is not None:
                ack["seq"] = seq
            self.send(peer, protocol.encode(ack))

    # -- fan-out ----------------------------------------------------------------

    def _deliver(self, room: str, frame: bytes, exclude: str | None, lossy: bool) -> None:
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
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._schedule(self.flush)
            return
        self._queue_to_all(members.values(), frame, lossy)
        if exclude is not None:
            self._unqueue_last(members.get(exclude), frame)

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
            out = peer.out
            if out is None:
                peer.out = [frame]
                dirty.append(peer)
            else:
                out.append(frame)
            peer.pending += size
            if peer.pending + peer.backlog > limit and self._still_over(peer, limit):
                slow = slow or []
                slow.append(peer)
        if not self._flush_scheduled and dirty:
            self._flush_scheduled = True
            self._schedule(self.flush)
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

    def _flush_cast(self, cast: _Cast) -> None:
        """Write the cast to its members in one batch; members with a backlog
        get it through their queues, whose limit check comes before the write."""
        peers = cast.recipients()
        ready = [p for p in peers if not p.backlog]
        if len(ready) != len(peers):
            self._queue_to_all([p for p in peers if p.backlog], cast.frame, False)
        if ready:
            self._write(ready, [cast.frame] * len(ready), self.settings.send_buffer_limit)

    @staticmethod
    def _unqueue_last(peer: Peer | None, frame: bytes) -> None:
        """Take ``frame`` back from the peer it was not meant for (a presence
        event about that peer itself); cheaper than testing every member."""
        if peer is not None and peer.out and peer.out[-1] is frame:
            peer.out.pop()
            peer.pending -= len(frame)

    def send(self, peer: Peer, frame: bytes) -> None:
        """Queue ``frame`` to one peer, in order with everything else it is sent."""
        if peer.closed:
            return
        if self._cast is not None:
            self._take_cast(peer)
        out = peer.out
        if out is None:
            peer.out = [frame]
            self._dirty.append(peer)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._schedule(self.flush)
        else:
            out.append(frame)
        peer.pending += len(frame)
        limit = self.settings.send_buffer_limit
        if peer.pending + peer.backlog > limit and self._still_over(peer, limit):
            self._drop_slow(peer)

    @staticmethod
    def _still_over(peer: Peer, threshold: int) -> bool:
        """Whether ``peer`` really holds more than ``threshold`` bytes; asked only
        once its cached backlog says so, as that dates from its last write and
        the socket may have drained since."""
        peer.backlog = peer.transport.backlog()
        return peer.pending + peer.backlog > threshold

    def flush(self) -> None:
        """Write each dirty peer's queued frames, joined, in one batch (`write_batch`)."""
        self._flush_scheduled = False
        if self._doomed:
            doomed, self._doomed = self._doomed, []
            for peer in doomed:
                self.unregister(peer)
                peer.transport.close(CLOSE_SLOW_CONSUMER, "slow consumer", True)
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

    def _write(self, peers: list[Peer], datas: list[bytes], limit: int) -> None:
        """One `write_batch` call; drop the peers it leaves over ``limit``."""
        for i, backlog in self.write_batch(peers, datas):
            peer = peers[i]
            peer.backlog = backlog
            if backlog > limit:
                self._drop_slow(peer)

    def note_backlog(self, peer: Peer) -> None:
        """Re-check a peer written to outside `flush` (the compressed echo path)."""
        peer.backlog = peer.transport.backlog()
        if peer.backlog > self.settings.send_buffer_limit:
            self._drop_slow(peer)

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
        for room in peer.rooms:  # no more fan-out to it (presence leave comes at the flush)
            self.rooms[room].pop(peer.client_id, None)
        self.counters.slow_consumers_dropped += 1
        self._doomed.append(peer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule(self.flush)

    # -- heartbeats ---------------------------------------------------------------

    def sweep(self) -> None:
        """Evict connections silent for too long, ping all every ping_interval,
        and expire histories of rooms empty for too long.

        Runs from one hub-level `heartbeat.Heartbeat` timer, not one per connection.
        """
        now = self.clock()
        settings = self.settings
        deadline = now - (settings.ping_interval + settings.ping_timeout)
        for peer in [p for p in self.peers.values() if p.last_seen < deadline]:
            self.counters.stale_evicted += 1
            self.disconnect(peer, CLOSE_PING_TIMEOUT, "ping timeout", abort=True)
        if now >= self._next_ping:
            self._next_ping = now + settings.ping_interval
            for peer in list(self.peers.values()):
                self.send(peer, PING_FRAME)
        if self.verifier is not None:
            self._expire_tokens(now)
        self.broker.expire(now)

    # -- introspection ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What /healthz reports."""
        return {
            "connections": len(self.peers),
            "hub_connections": sum(1 for p in self.peers.values() if p.kind == HUB),
            "echo_connections": sum(1 for p in self.peers.values() if p.kind == ECHO),
            "rooms": len(self.rooms),
            "memberships": sum(len(m) for m in self.rooms.values()),
            "queued_peers": len(self._dirty),
            "cast_pending": int(self._cast is not None),
            "pending_callbacks": int(self._flush_scheduled) + len(self._doomed),
            "per_ip_entries": len(self._per_ip),
            **self.broker.stats(),
            **asdict(self.counters),
        }
