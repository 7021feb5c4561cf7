"""The hub: connections, local room membership, the protocol's rules.

State has one owner (this object, on the IOLoop thread); membership changes
only in `register`, `unregister`, `_join_room` and `_leave_room`. How frames
reach the members (per-member queues, casts, the flush, the slow-consumer
bound) is the job of the `hub.outbox.Outbox` the hub owns.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hub import protocol
from hub.auth import AuthError, Grant, TokenVerifier
from hub.broker import UNAVAILABLE, Broker, JoinResult, MemoryBroker
from hub.frames import (  # the close codes stay importable from hub.hub too
    CLOSE_DISCONNECTED,
    CLOSE_GOING_AWAY,
    CLOSE_PING_TIMEOUT,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    PING_FRAME,
)
from hub.limits import PARSE_SECONDS_PER_TOKEN, TokenBucket
from hub.outbox import BATCH_BYTES, Outbox, Schedule, write_each
from hub.peer import ECHO, HUB, BatchWrite, Peer
from hub.settings import HubSettings

PING_BURST = 50
"""Pings a client may send at once before ``ping_rate_limit`` applies (Autobahn's
ping cases send 10 back to back)."""

RATE_ID_PARSE_LIMIT = 1024
"""Characters of a rate-limited message parsed to echo its id in the refusal."""

__all__ = ["BATCH_BYTES", "CLOSE_SLOW_CONSUMER", "Hub", "HubCounters", "write_each"]


@dataclass(slots=True)
class HubCounters:
    """Monotonic counters reported by /healthz."""

    slow_consumers_dropped: int = 0
    stale_evicted: int = 0
    rejected_at_capacity: int = 0
    rejected_per_ip: int = 0
    rate_limited: int = 0
    closed_for_rate: int = 0
    closed_for_ping_rate: int = 0
    ephemeral_skipped: int = 0
    published: int = 0
    tokens_expired: int = 0
    rejected_unauthorized: int = 0


class BrokerUnavailable(Exception):
    """The broker (Redis) cannot be reached: nothing was published."""

    def __init__(self, room: str) -> None:
        super().__init__(f"the hub cannot reach its broker right now; {room} got nothing")
        self.room = room


def _unavailable(request_id: Any, room: str) -> bytes:
    return protocol.error_frame(
        UNAVAILABLE,
        "the hub cannot reach its broker right now; try again",
        request_id,
        room=room,
    )


def _call_soon(callback: Callable[[], None]) -> Any:
    return asyncio.get_running_loop().call_soon(callback)


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
        self.broker: Broker = broker or MemoryBroker.for_settings(settings, clock)
        self.clock = clock
        self.peers: dict[str, Peer] = {}  # client_id -> every registered connection
        self.rooms: dict[str, dict[str, Peer]] = {}  # room -> client_id -> local member
        self.counters = HubCounters()
        self._per_ip: dict[str, int] = {}  # client address -> open connections
        self.outbox = Outbox(  # what is queued to each peer, and the writes
            settings, self.rooms, self.counters, schedule, self.unregister, write_batch
        )
        self.broker.attach(self.outbox.deliver)
        if hasattr(self.broker, "control_handler"):  # a broker shared by several nodes
            self.broker.control_handler = self._on_control
            self.broker.stats_source = self.stats
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
                welcome = {"type": "welcome", "client_id": peer.client_id, "node": self.broker.node}
                self.enqueue(peer, protocol.encode(welcome))
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
            self.enqueue(peer, protocol.error_frame(protocol.UNAUTHORIZED, error.detail))
            self.disconnect(peer, CLOSE_UNAUTHORIZED, "unauthorized")
            return False
        self._apply_grant(peer, grant)
        peer.name = grant.name or peer.name
        peer.member = {
            "client_id": peer.client_id,
            "name": peer.name or peer.client_id,
            "user": grant.user,
        }
        welcome: dict[str, Any] = {
            "type": "welcome",
            "client_id": peer.client_id,
            "node": self.broker.node,
            "user": grant.user,
        }
        if grant.exp is not None:
            welcome["exp"] = grant.exp
        self.enqueue(peer, protocol.encode(welcome))
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
        self.enqueue(peer, protocol.encode(answer))

    def _expire_tokens(self, now: float) -> None:
        """Close connections whose token ran out without a refresh (from `sweep`)."""
        expired = [
            p for p in self.peers.values() if p.expires_at is not None and p.expires_at <= now
        ]
        for peer in expired:
            self.counters.tokens_expired += 1
            self.enqueue(
                peer, protocol.error_frame(protocol.TOKEN_EXPIRED, "the token has expired")
            )
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

    async def disconnect_everywhere(
        self, user: str | None = None, client_id: str | None = None
    ) -> int:
        """`disconnect_where` on every node of a shared broker (this one alone else)."""
        everywhere = getattr(self.broker, "everywhere", None)
        if everywhere is None:
            return self.disconnect_where(user=user, client_id=client_id)
        count = await everywhere({"disconnect": {"user": user, "client_id": client_id}})
        if count is None:
            raise BrokerUnavailable("the other nodes")
        return count

    def _on_control(self, request: dict[str, Any]) -> int:
        """A request from any node of a shared broker (see `disconnect_everywhere`)."""
        selector = request.get("disconnect")
        if isinstance(selector, dict):
            return self.disconnect_where(selector.get("user"), selector.get("client_id"))
        return 0

    async def node_stats(self) -> list[dict[str, Any]]:
        """Every node's numbers, for a shared broker (each node's own, a second old
        at most); empty with the memory broker."""
        node_stats = getattr(self.broker, "node_stats", None)
        return [] if node_stats is None else await node_stats()

    def publish_from_server(
        self, room: str, data: Any, sender: str = "server", ephemeral: bool = False
    ) -> asyncio.Future[int | None]:
        """Publish as the app's backend (the HTTP API): an ordinary message whose
        ``from`` is ``sender``, with no ``client_id`` and no ``user``. The future
        has its seq (None when ephemeral) or `BrokerUnavailable`; data that cannot
        be relayed raises `protocol.ProtocolError` at once."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

        def done(seq: int | None, error: str | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(BrokerUnavailable(room))
                return
            self.counters.published += 1
            future.set_result(seq)

        self.broker.publish(room, {"name": sender}, data, ephemeral, done)
        return future

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
        peer.backfill = None
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
        peer.sink.close(code, reason, abort)

    def flush_peer(self, peer: Peer) -> None:
        """Write what is queued to ``peer`` now: due before a close frame."""
        self.outbox.flush_peer(peer)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutdown") -> None:
        """Deliver what is queued, then close every connection (server shutdown)."""
        self.flush()
        for peer in list(self.peers.values()):
            self.disconnect(peer, code, reason)

    # -- messages from clients ------------------------------------------------

    def handle_text(self, peer: Peer, text: str) -> None:
        """Act on one text frame received on /ws."""
        if not self._within_rate(peer, text):
            return
        try:
            started = self.clock()
            try:
                command = protocol.parse(text)
            finally:
                # Parsing that took long is paid for in tokens (see PARSE_SECONDS_PER_TOKEN).
                spent = self.clock() - started - PARSE_SECONDS_PER_TOKEN
                if spent > 0 and peer.bucket is not None:
                    peer.bucket.charge(spent / PARSE_SECONDS_PER_TOKEN)
            if type(command) is protocol.Publish:
                self._publish(peer, command)
            elif type(command) is protocol.Join:
                self._join(peer, command)
            elif type(command) is protocol.Refresh:
                self._refresh(peer, command)
            else:
                self._leave(peer, command)
        except protocol.ProtocolError as error:
            self.enqueue(peer, protocol.error_frame(error.code, error.detail, error.request_id))

    def handle_binary(self, peer: Peer) -> None:
        """Binary frames carry nothing on /ws: say so, keep the connection."""
        if self._within_rate(peer):
            self.enqueue(
                peer,
                protocol.error_frame(protocol.BAD_REQUEST, "binary frames are not used on /ws"),
            )

    def touch(self, peer: Peer) -> None:
        """Record a sign of life (any frame, a pong included) for the heartbeat."""
        peer.last_seen = self.clock()

    def ping(self, peer: Peer, pong: bytes) -> None:
        """Answer a client's ping with ``pong`` (framed by the socket layer).

        The pong goes through the outbox like any other output, so a client
        whose pongs pile up unread is a slow consumer (4001). Pings past
        ``ping_rate_limit`` get no pong (RFC 6455 5.5.3 lets an endpoint answer
        only the latest), and a client that keeps on is closed with 1008.
        """
        if peer.closed:
            return
        now = self.clock()
        peer.last_seen = now
        rate = self.settings.ping_rate_limit
        if rate > 0:
            bucket = peer.pings
            if bucket is None:
                bucket = peer.pings = TokenBucket(rate, PING_BURST, now)
            if not bucket.take(now):
                if bucket.strikes > bucket.burst:
                    self.counters.closed_for_ping_rate += 1
                    # No closing handshake: reading on would parse the rest of the flood.
                    self.disconnect(peer, CLOSE_POLICY, "ping rate exceeded", abort=True)
                return
        self.enqueue(peer, pong)

    def _within_rate(self, peer: Peer, text: str | None = None) -> bool:
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
            self.enqueue(peer, self._rate_limited_frame(bucket, text))
        return False

    def _rate_limited_frame(self, bucket: TokenBucket, text: str | None) -> bytes:
        """The refusal says what the limit is and how to lift it (a backend
        publisher on /ws meets it first), with the request's id when the message
        is small enough to parse for it without undoing what the limit saves."""
        request_id = None
        if text is not None and len(text) <= RATE_ID_PARSE_LIMIT:
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("id"), str | int | float):
                request_id = message["id"]
        detail = (
            f"slow down: at most {bucket.rate:g} messages/s (bursts of {bucket.burst:g}) per "
            "connection; this one was dropped. The server's --rate_limit option raises the "
            "limit, --rate_limit=0 lifts it"
        )
        return protocol.error_frame(protocol.RATE_LIMITED, detail, request_id)

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
        self.broker.join(
            room,
            peer.member,
            command.since,
            command.epoch,
            lambda result: self._joined(peer, command, result),
        )

    def _joined(self, peer: Peer, command: protocol.Join, result: JoinResult | None) -> None:
        """The broker's answer to a join: now the peer is a member (the memory
        broker answers at once, a remote one a round trip later)."""
        room = command.room
        if peer.closed:  # it left while the broker was answering
            if result is not None and room not in peer.rooms:
                self.broker.leave(room, peer.member)
            return
        if result is None:
            self.enqueue(peer, _unavailable(command.request_id, room))
            return
        if room not in peer.rooms:
            self.outbox.joining(peer, room)  # a broadcast before it joined: not for it
            self.rooms.setdefault(room, {})[peer.client_id] = peer
            peer.rooms.add(room)
        self.enqueue(
            peer,
            protocol.joined_frame(
                room,
                result.epoch,
                result.seq,
                result.members_json,
                command.request_id,
                result.member_count,
                result.truncated,
            ),
        )
        replay = result.replay
        if replay.gap:
            self.enqueue(
                peer,
                protocol.error_frame(
                    protocol.HISTORY_GAP,
                    f"history does not reach back to seq {command.since} of that epoch",
                    room=room,
                    epoch=result.epoch,
                    oldest_seq=replay.oldest_seq,
                ),
            )
        self.outbox.enqueue_paced(peer, replay.frames)  # as fast as the peer drains
        for frame in result.catch_up:  # behind the replay, like every later message
            self.enqueue(peer, frame)

    def _leave(self, peer: Peer, command: protocol.Leave) -> None:
        if command.room not in peer.rooms:
            raise protocol.ProtocolError(
                protocol.NOT_JOINED, f"not in room {command.room}", command.request_id
            )
        self._leave_room(peer, command.room)
        self.enqueue(peer, protocol.left_frame(command.room, command.request_id))

    def _leave_room(self, peer: Peer, room: str) -> None:
        self.outbox.leaving(peer, room)  # a broadcast while it was a member: still for it
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
        request_id = command.request_id
        try:
            self.broker.publish(
                command.room,
                peer.member,
                command.data,
                command.ephemeral,
                lambda seq, error: self._published(peer, command.room, request_id, seq, error),
            )
        except protocol.ProtocolError as error:
            error.request_id = request_id
            raise

    def _published(
        self, peer: Peer, room: str, request_id: Any, seq: int | None, error: str | None
    ) -> None:
        """The broker's answer to a publish: the ack, after the sender's own copy."""
        if error is not None:
            self.enqueue(peer, _unavailable(request_id, room))
            return
        self.counters.published += 1
        if request_id is not None:
            ack: dict[str, Any] = {"type": "ack", "id": request_id}
            if seq is not None:
                ack["seq"] = seq
            self.enqueue(peer, protocol.encode(ack))

    # -- the outbox ----------------------------------------------------------------

    def enqueue(self, peer: Peer, frame: bytes) -> None:
        """Queue ``frame`` to one peer, in order with everything else it is sent."""
        self.outbox.enqueue(peer, frame)

    def flush(self) -> None:
        """Write what is queued to every peer (normally scheduled by the outbox)."""
        self.outbox.flush()

    def note_backlog(self, peer: Peer) -> None:
        """Re-check a peer written to outside the outbox (the compressed echo path)."""
        self.outbox.note_backlog(peer)

    @property
    def write_batch(self) -> BatchWrite:
        """How the outbox writes a batch (the server installs handlers.fanout.batch_writer's)."""
        return self.outbox.write_batch

    @write_batch.setter
    def write_batch(self, writer: BatchWrite) -> None:
        self.outbox.write_batch = writer

    # -- heartbeats ---------------------------------------------------------------

    def announce_counts(self) -> None:
        """Once a second: member counts of rooms too big to announce each member."""
        self.broker.announce_counts()

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
                self.enqueue(peer, PING_FRAME)
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
            **self.outbox.stats(),
            "per_ip_entries": len(self._per_ip),
            "node": self.broker.node,
            **self.broker.stats(),
            **asdict(self.counters),
        }
