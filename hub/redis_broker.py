"""The Redis broker: rooms shared by every node (process) using one Redis.

Each node keeps one command connection and one pub/sub connection. A publish
is one script (numbering, history and the channel publish together, see
`hub.redis_scripts`); the publishes of one loop iteration go in one pipeline.
Every node subscribed to the room's channel, the publisher's included,
receives the message once, frames it once and hands it to the hub, which
fans it out to its local members. So every member on every node sees the
same seq, epoch, ts, sender and data, in seq order.

Two connections means two orders, which this module reconciles:

* the ack of a publish must follow the sender's own copy: a publish reply
  (seq N) waits until this node's pub/sub stream has delivered seq N;
* a join's snapshot (seq S) is read by a script while messages keep coming
  over pub/sub: the node subscribes (and waits for Redis to confirm it) before
  the script runs; after the reply it PINGs on the pub/sub connection, and
  the PONG comes back behind every message Redis published before it, so
  once it is in, nothing numbered up to S can still arrive; the joiner is
  handed the frames after S that went by meanwhile (``catch_up``).

A publishing node also shapes its own stream (`_Hold`): a room's events are
held back while this node's own publishes to the room, read before them, are
still on their way through Redis, so that what one read of a publisher's
socket brought in goes out to local members in one write each, as it does on
one node; nothing is held for a message that comes alone.

Redis unreachable: publishes and joins are answered `UNAVAILABLE`; the node
reconnects with backoff (at most `MAX_BACKOFF` between tries), re-subscribes
and re-registers its members' presence; a history Redis lost comes back with
a new epoch, so resuming clients see ``history_gap``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from hub import protocol
from hub.broker import (
    UNAVAILABLE,
    JoinDone,
    JoinResult,
    PresenceCounts,
    PublishDone,
    RoomState,
    members_array,
    new_node_id,
)
from hub.frames import OP_TEXT, frame
from hub.history import Replay, replay_of
from hub.redis_rooms import JoinReply, JoinRequest, RedisRooms, channel, node_key

log = logging.getLogger("wshub.redis")

MAX_BACKOFF = 2.0
"""Seconds between reconnection attempts, at most."""
CONTROL = "wshub:control"
"""The channel every node listens on for requests to all nodes (`RedisBroker.everywhere`)."""
RECENT = 512
"""Message frames per room kept for joiners whose snapshot the stream overtook."""
WATCH_INTERVAL = 1.0
"""Seconds between heartbeats and checks for dead nodes."""
LISTED_FOR = 1.0
"""Seconds a node reuses the member list of a room over the presence limit for
its joiners instead of reading it again: joining a 10,000-member room would
otherwise move a 1,000-member list out of Redis per join."""
HOLD_AT_MOST = 0.005
"""Seconds a room's stream is held at most for this node's own publishes to come
back (`_Hold`); they take one round trip to Redis, well under a millisecond
here: the bound is for a copy that never comes."""
PUBSUB_RECONNECT_WAIT = MAX_BACKOFF + 1.0
"""How long a pub/sub command waits for `RedisBroker._listen` to reconnect that
connection (its back-off between tries, plus a connect) before it gives up."""


Deliver = Callable[[str, bytes, str | None, bool], None]
_Publish = tuple[str, str, str, PublishDone, "_OwnPublish | None"]
"""A publish waiting for its loop iteration's pipeline: room, the message text
around its seq, the callback, and what the room's `_Hold` knows of it."""


def split_message(text: str) -> tuple[str, str]:
    """The text of a message frame encoded with seq 0, cut around that seq."""
    marker = '"seq":0'
    at = text.index(marker) + len(marker) - 1
    return text[:at], text[at + 1 :]


def framed_replay(
    texts: list[bytes], epoch: str, seq: int, since: int | None, client_epoch: str | None
) -> Replay:
    """`hub.history.replay_of` over the message texts Redis keeps, framed."""
    replay = replay_of(texts, epoch, seq, since, client_epoch)
    return Replay([frame(t, OP_TEXT) for t in replay.frames], replay.gap, replay.oldest_seq)


class PubSubReconnecting(RedisConnectionError):
    """The pub/sub connection is being reconnected by `RedisBroker._listen`."""


def last_seq(data: bytes) -> tuple[str, int]:
    """The epoch and the seq of the last message of an ``m`` stream event:
    ``m<epoch> <first seq>`` then one line per message."""
    head = data[1 : data.index(b"\n")]
    epoch, first = head.split(b" ")
    return epoch.decode(), int(first) + data.count(b"\n") - 1


class _OwnPublish:
    """A message this node published to a room, until its copy is back on the stream."""

    __slots__ = ("epoch", "seq")

    def __init__(self) -> None:
        self.epoch = ""
        self.seq: int | None = None  # None: Redis has not answered yet; 0: nothing will come


class _Hold:
    """One room's stream events held back on the node that publishes into it.

    Why: a fan-out costs one write per member per loop iteration, whatever it
    carries. On one node, every publish one read of the publisher's socket
    brought in is delivered in that iteration, so a burst goes out in one write
    per member. Over Redis the node's own copies come back a round trip later,
    and while the node was idle in between, a burst read in two pieces came
    back as two stream events, written separately; the publisher, acked twice,
    kept sending in those two pieces, and every node paid two writes per member
    where one node pays one (issue 13, docs/performance.md). So an event that
    arrives while publishes this node read before it are still on their way
    waits for them (at most `HOLD_AT_MOST`), and they go out together, in seq
    order. With no publish of this node outstanding, nothing waits.
    """

    __slots__ = ("outgoing", "events", "waits_for", "heard_epoch", "heard_seq", "timer")

    def __init__(self) -> None:
        self.outgoing: deque[_OwnPublish] = deque(maxlen=RECENT)  # not yet back, none held for
        self.events: list[bytes] | None = None  # held stream events, oldest first
        self.waits_for: deque[_OwnPublish] = deque()  # what the held events wait for
        self.heard_epoch = ""  # the last message seen on the stream, held or not
        self.heard_seq = 0
        self.timer: asyncio.TimerHandle | None = None

    def sent(self) -> _OwnPublish:
        own = _OwnPublish()
        self.outgoing.append(own)
        return own

    def heard(self, epoch: str, seq: int) -> None:
        self.heard_epoch, self.heard_seq = epoch, seq

    def back(self, own: _OwnPublish) -> bool:
        """Whether ``own`` needs no more waiting: on the stream, failed, or in
        another epoch than the stream's (Redis restarted: do not guess)."""
        seq = own.seq
        return seq is not None and (
            seq == 0 or own.epoch != self.heard_epoch or seq <= self.heard_seq
        )

    def begin(self) -> bool:
        """Start holding if a publish of this node is still on its way."""
        owed = [own for own in self.outgoing if not self.back(own)]
        self.outgoing.clear()
        if not owed:
            return False
        self.events, self.waits_for = [], deque(owed)
        return True

    def ready(self) -> bool:
        """Whether every publish the held events wait for is back. Once back, a
        publish stays back, so each is looked at until it is, oldest first: one
        look per event and publish, not a scan of the window per event."""
        waits_for = self.waits_for
        while waits_for and self.back(waits_for[0]):
            waits_for.popleft()
        return not waits_for

    def take(self) -> list[bytes]:
        """The held events, and stop holding."""
        events, self.events, self.waits_for = self.events or [], None, deque()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return events


class _Room:
    """This node's view of one room's stream."""

    __slots__ = (
        "epoch",
        "seq",
        "recent",
        "waiting",
        "members",
        "subscribed",
        "listed",
        "joining",
        "hold",
    )

    def __init__(self) -> None:
        self.epoch = ""
        self.seq = 0  # last seq delivered from the stream in ``epoch``
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=RECENT)
        # Acks due once the stream reaches their seq, oldest first: a window's
        # publishes are numbered in the order they are answered here.
        self.waiting: deque[tuple[str, int, Callable[[], None]]] = deque()
        self.members: dict[str, str] = {}  # local client_id -> member JSON
        self.subscribed: asyncio.Future[None] | None = None
        # In a room over the presence limit, the members joined lists: (when read, JSON).
        self.listed: tuple[float, bytes] | None = None
        self.joining = 0  # joins waiting for Redis: the room must not be dropped meanwhile
        self.hold = _Hold()  # stream events waiting for this node's own publishes

    def reached(self, epoch: str, seq: int) -> bool:
        return seq == 0 or (self.epoch == epoch and self.seq >= seq)

    def delivered(self, epoch: str, seq: int, frame_bytes: bytes) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.recent.clear()
        self.seq = seq
        self.recent.append((seq, frame_bytes))
        waiting = self.waiting
        # Oldest first, so one look per ack: a window's hundreds of acks come due
        # within one released burst (`_Hold`), where a scan of the rest per
        # message was quadratic. (Should answers overtake each other, a later seq
        # waits for the stream to pass the earlier one: a moment, never an ack
        # before its copy.)
        while waiting and self.reached(waiting[0][0], waiting[0][1]):
            waiting.popleft()[2]()

    def after(self, epoch: str, seq: int) -> list[bytes]:
        if epoch != self.epoch:
            return []
        return [f for s, f in self.recent if s > seq]


@dataclass(slots=True)
class _Join:
    """A join waiting for its loop iteration's pipeline."""

    name: str
    room: _Room
    member: dict[str, str]
    member_json: str
    since: int | None
    epoch: str | None
    done: JoinDone


class RedisBroker:
    """`hub.broker.Broker` on Redis; start it with `start`, stop it with `stop`."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        history_size: int = 100,
        history_ttl: float = 300.0,
        node_timeout: float = 15.0,
        presence_limit: int = 1000,
        node: str | None = None,
    ) -> None:
        self.url = url
        self.node = node or new_node_id()
        self.node_timeout = node_timeout
        self.client = Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        self.rooms_store = RedisRooms(
            self.client, self.node, history_size, history_ttl, presence_limit
        )
        self.pubsub = self.client.pubsub()
        self.connected = False
        self._deliver: Deliver = _drop
        self._rooms: dict[str, _Room] = {}
        self._publishes: list[_Publish] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.control_handler: Callable[[dict[str, Any]], int] | None = None
        """Run on this node for `everywhere` requests of any node (set by the hub)."""
        self.stats_source: Callable[[], dict[str, Any]] | None = None
        """This node's numbers, shared each second for `node_stats` (set by the hub)."""
        self._pongs: dict[str, asyncio.Future[None]] = {}
        self._joins: list[_Join] = []
        self._next_sync: asyncio.Future[None] | None = None
        self._counts = PresenceCounts()
        self._tokens = itertools.count(1)

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect (or keep trying in the background) and start listening."""
        self._running = True
        self._tasks = [
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._watch()),
        ]
        try:
            await self.pubsub.subscribe(CONTROL)
        except (RedisError, OSError) as error:  # redis-py subscribes again on reconnect
            self._set_connected(False, error)
        await self._check()

    async def stop(self) -> None:
        """Remove this node's members at once (others see them leave), then close."""
        self._running = False
        for task in self._tasks:
            task.cancel()
        self._release_all()  # what the stream brought is delivered; no hold timer outlives us
        if self.connected:
            try:
                await self.rooms_store.reap(self.node)
            except RedisError as error:
                log.warning("could not remove this node's members from Redis: %s", error)
        await self.pubsub.aclose()
        await self.client.aclose()

    def _set_connected(self, connected: bool, why: object = None) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            log.info("redis: connected to %s as node %s", self.url, self.node)
        else:
            log.warning("redis: unreachable (%s); publishes and joins answer unavailable", why)
            self._release_all()
            for room in self._rooms.values():  # nothing will come: answer now
                room.hold.outgoing.clear()
                waiting, room.waiting = room.waiting, deque()
                for _, _, resume in waiting:
                    resume()
                if room.subscribed is not None and not room.subscribed.done():
                    room.subscribed = None  # unconfirmed: subscribe again on the next join

    async def _check(self) -> None:
        """Heartbeat, and reap the members of nodes whose heartbeat expired."""
        try:
            was_connected = self.connected
            await self.rooms_store.heartbeat(self.node_timeout)
            if self.stats_source is not None:
                await self.client.set(
                    f"{node_key(self.node)}:stats",
                    json.dumps(self.stats_source()),
                    px=max(1, round(self.node_timeout * 1000)),
                )
            if not was_connected:
                await self._register_everything()
            self._set_connected(True)
            for node in await self.rooms_store.dead_nodes():
                removed = await self.rooms_store.reap(node)
                if removed:
                    log.info("redis: node %s is gone; removed its %d members", node, removed)
        except (RedisError, OSError) as error:
            self._set_connected(False, error)

    async def _register_everything(self) -> None:
        """After a (re)connect: this node's members back into every room's presence."""
        await self.rooms_store.register(
            {name: room.members for name, room in self._rooms.items() if room.members}
        )

    async def _watch(self) -> None:
        while self._running:
            await asyncio.sleep(WATCH_INTERVAL)
            await self._check()

    async def _listen(self) -> None:
        """The pub/sub stream: every room event of every room this node is in."""
        backoff = 0.1
        while self._running:
            try:
                if not self.pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self.pubsub.get_message(timeout=1.0)
                backoff = 0.1
            except (RedisError, OSError) as error:
                self._set_connected(False, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if message is not None:
                self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pong":
            waiter = self._pongs.pop(message["data"].decode(), None)
            if waiter is not None and not waiter.done():
                # A join's snapshot is behind everything before the PONG: let
                # it all out first, so none of it reaches the joiner twice.
                self._release_all()
                waiter.set_result(None)
            return
        channel_name = message["channel"].decode()
        if channel_name == CONTROL:
            if kind == "message":
                self._on_control(message["data"])
            return
        name = channel_name[len("wshub:{") : -1]
        room = self._rooms.get(name)
        if room is None:
            return
        if kind == "subscribe":
            if room.subscribed is not None and not room.subscribed.done():
                room.subscribed.set_result(None)
            return
        if kind == "message":
            self._on_room_event(name, room, message["data"])

    def _on_room_event(self, name: str, room: _Room, data: bytes) -> None:
        """Deliver a room's stream event, or hold it (see `_Hold`)."""
        hold = room.hold
        if data[:1] == b"m":
            hold.heard(*last_seq(data))
        if hold.events is None and not hold.begin():
            self._play(name, room, data)
            return
        assert hold.events is not None
        hold.events.append(data)
        if hold.ready():
            self._release(name, room)
        elif hold.timer is None:
            loop = asyncio.get_running_loop()
            hold.timer = loop.call_later(HOLD_AT_MOST, self._release, name, room)

    def _release(self, name: str, room: _Room) -> None:
        for data in room.hold.take():
            self._play(name, room, data)

    def _release_all(self) -> None:
        for name, room in list(self._rooms.items()):
            if room.hold.events is not None:
                self._release(name, room)

    def _play(self, name: str, room: _Room, data: bytes) -> None:
        """Hand a room's stream event to the hub: frame it once for every member here."""
        tag = data[:1]
        if tag == b"m":
            head, _, body = data.partition(b"\n")
            epoch_bytes, first = head[1:].split(b" ")
            epoch, seq = epoch_bytes.decode(), int(first)
            deliver = self._deliver
            for text in body.split(b"\n"):
                frame_bytes = frame(text, OP_TEXT)
                deliver(name, frame_bytes, None, False)
                room.delivered(epoch, seq, frame_bytes)
                seq += 1
        elif tag == b"e":
            self._deliver(name, frame(data[1:], OP_TEXT), None, True)
        elif tag == b"p":
            exclude, text = data[1:].split(b" ", 1)
            self._deliver(name, frame(text, OP_TEXT), exclude.decode(), False)

    # -- every node at once (the backend API) ---------------------------------------

    def _on_control(self, data: bytes) -> None:
        """A request to every node: act on it here, answer into its reply list."""
        reply_key, _, body = data.decode().partition(" ")
        handler = self.control_handler
        count = handler(json.loads(body)) if handler is not None else 0

        async def answer() -> None:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.rpush(reply_key, count)
                pipe.expire(reply_key, 30)
                await pipe.execute()
            except (RedisError, OSError) as error:
                self._set_connected(False, error)

        asyncio.ensure_future(answer())

    async def everywhere(self, request: dict[str, Any], timeout: float = 2.0) -> int | None:
        """Have every live node run ``control_handler(request)``; the sum of their
        answers (nodes that do not answer within ``timeout`` count 0), or None when
        Redis cannot be reached."""
        try:
            nodes = await self.rooms_store.live_nodes()
            reply_key = f"wshub:reply:{self.node}:{next(self._tokens)}"
            await self.client.publish(CONTROL, f"{reply_key} {json.dumps(request)}")
        except (RedisError, OSError) as error:
            self._set_connected(False, error)
            return None
        total, answered = 0, 0
        deadline = time.monotonic() + timeout
        while answered < len(nodes):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = len(nodes) - answered
                log.warning("redis: %d of %d nodes did not answer", missing, len(nodes))
                break
            try:  # in steps below the client's socket timeout (2 s)
                reply = await self.client.blpop([reply_key], timeout=min(max(left, 0.01), 1.0))
            except (RedisError, OSError) as error:
                self._set_connected(False, error)
                break
            if reply is None:
                continue
            total += int(reply[1])
            answered += 1
        return total

    async def node_stats(self) -> list[dict[str, Any]]:
        """What every live node last reported of itself (`stats_source`, each second)."""
        try:
            nodes = await self.rooms_store.live_nodes()
            if not nodes:
                return []
            texts = await self.client.mget([f"{node_key(n)}:stats" for n in nodes])
        except (RedisError, OSError) as error:  # the answering node's own numbers still come
            self._set_connected(False, error)
            return []
        return [json.loads(t) for t in texts if t is not None]

    # -- the broker interface -------------------------------------------------------

    def join(
        self,
        room: str,
        member: dict[str, str],
        since: int | None,
        epoch: str | None,
        done: JoinDone,
    ) -> None:
        """Add ``member``; ``done`` gets the room's state, or None when Redis is
        unreachable. The joins of one loop iteration go to Redis together."""
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        state.joining += 1
        if not self._joins:
            asyncio.get_running_loop().call_soon(self._send_joins)
        self._joins.append(_Join(room, state, member, protocol.to_json(member), since, epoch, done))

    def _send_joins(self) -> None:
        batch, self._joins = self._joins, []
        asyncio.ensure_future(self._join_batch(batch))

    async def _join_batch(self, batch: list[_Join]) -> None:
        try:
            try:
                replies = await self._join_scripts(batch)
            except Exception as error:  # never leave a join unanswered (hub.js retries these)
                log.warning(
                    "redis: %d join(s) failed (%r); answered unavailable", len(batch), error
                )
                replies = None
            if replies is None:
                for join in batch:
                    join.done(None)
                return
            try:
                await self._sync_stream()
            except (RedisError, OSError, TimeoutError) as error:
                self._set_connected(False, error)
            for join, reply in zip(batch, replies, strict=True):
                self._joined(join, reply)
        finally:
            for join in batch:
                join.room.joining -= 1

    async def _join_scripts(self, batch: list[_Join]) -> list[JoinReply] | None:
        """Subscribe to the rooms new here, then run the joins' scripts: one pipeline."""
        now = time.monotonic()
        requests = []
        asked: set[str] = set()  # one request per room lists a big room's members
        for join in batch:
            listed = join.room.listed
            fresh = listed is not None and now - listed[0] < LISTED_FOR
            first = not join.room.members and join.name not in asked
            requests.append(
                JoinRequest(
                    join.name,
                    join.member["client_id"],
                    join.member_json,
                    join.since is not None,
                    list_big=not fresh and join.name not in asked,
                    first_here=first,
                )
            )
            asked.add(join.name)
        try:
            await self._subscribe({join.name: join.room for join in batch})
            return await self.rooms_store.join_many(requests)
        except (RedisError, OSError, TimeoutError) as error:
            if not isinstance(error, PubSubReconnecting):  # (that one is known already)
                self._set_connected(False, error)
            return None

    def _joined(self, join: _Join, reply: JoinReply) -> None:
        room = join.room
        room.members[join.member["client_id"]] = join.member_json
        if not reply.truncated:
            members_json = members_array(reply.members)
            room.listed = None
        elif reply.members or room.listed is None:
            members_json = members_array(reply.members)
            room.listed = (time.monotonic(), members_json)
        else:
            members_json = room.listed[1]
        join.done(
            JoinResult(
                reply.epoch,
                reply.seq,
                reply.member_count,
                members_json,
                reply.truncated,
                framed_replay(reply.history, reply.epoch, reply.seq, join.since, join.epoch),
                room.after(reply.epoch, reply.seq),
            )
        )

    async def _sync_stream(self) -> None:
        """Return once the pub/sub stream holds everything Redis published before
        now: a PING on that connection comes back behind all of it. Callers of one
        loop iteration share one PING (each asked after its own reply came)."""
        loop = asyncio.get_running_loop()
        future = self._next_sync
        if future is None:
            future = self._next_sync = loop.create_future()
            loop.call_soon(self._send_sync)
        await asyncio.wait_for(asyncio.shield(future), 5.0)

    def _send_sync(self) -> None:
        future, self._next_sync = self._next_sync, None
        if future is None:
            return
        token = str(next(self._tokens))
        self._pongs[token] = future

        async def ping() -> None:
            try:
                await self._pubsub_idle()
                await self.pubsub.ping(token)
            except (RedisError, OSError) as error:
                self._pongs.pop(token, None)
                if not future.done():
                    future.set_exception(error)

        asyncio.ensure_future(ping())

    async def _pubsub_idle(self) -> None:
        """Return once no reconnect of the pub/sub connection is under way, for a
        command on it: while `_listen` reconnects it, a command would connect it a
        second time, and redis-py's connect reads a reply, which two coroutines
        cannot do on one stream (RuntimeError). While Redis is known to be down,
        or past `PUBSUB_RECONNECT_WAIT`, raise `PubSubReconnecting` instead: the
        caller answers unavailable (hub.js retries)."""
        deadline = time.monotonic() + PUBSUB_RECONNECT_WAIT
        while self._pubsub_reconnecting():
            if not self.connected or time.monotonic() >= deadline:
                raise PubSubReconnecting("the pub/sub connection is reconnecting")
            await asyncio.sleep(0.05)

    def _pubsub_reconnecting(self) -> bool:
        connection = self.pubsub.connection
        return (
            bool(self.pubsub.subscribed) and connection is not None and not connection.is_connected
        )

    async def _subscribe(self, rooms: dict[str, _Room]) -> None:
        """Subscribe to the rooms' channels and wait until Redis confirms, so that
        no message numbered after a join's snapshot can be missed."""
        loop = asyncio.get_running_loop()
        new = [name for name, room in rooms.items() if room.subscribed is None]
        for name in new:
            rooms[name].subscribed = loop.create_future()
        if new:
            try:
                await self._pubsub_idle()
                await self.pubsub.subscribe(*(channel(name) for name in new))
            except BaseException:
                for name in new:  # not subscribed: the next join asks again
                    rooms[name].subscribed = None
                raise
        waits = [asyncio.shield(room.subscribed) for room in rooms.values() if room.subscribed]
        await asyncio.wait_for(asyncio.gather(*waits), 5.0)

    def leave(self, room: str, member: dict[str, str]) -> None:
        state = self._rooms.get(room)
        if state is None or state.members.pop(member["client_id"], None) is None:
            return
        asyncio.ensure_future(self._leave(room, state, member["client_id"]))

    async def _leave(self, name: str, room: _Room, client_id: str) -> None:
        try:
            await self.rooms_store.leave(name, client_id)
            if not room.members and not room.joining and self._rooms.get(name) is room:
                del self._rooms[name]
                await self.rooms_store.forget_room(name)
                await self._pubsub_idle()
                await self.pubsub.unsubscribe(channel(name))
        except (RedisError, OSError) as error:
            if not isinstance(error, PubSubReconnecting):  # (that one is known already)
                self._set_connected(False, error)

    def publish(
        self,
        room: str,
        sender: dict[str, str],
        data: Any,
        ephemeral: bool,
        done: PublishDone,
    ) -> None:
        """Number, keep and publish a message; ``done(seq, None)`` once this node
        delivered it, or ``done(None, UNAVAILABLE)``."""
        if not self.connected:
            done(None, UNAVAILABLE)
            return
        ts = int(time.time() * 1000)
        if ephemeral:
            text = protocol.message_text(room, None, sender, data, ts, True).encode()
            asyncio.ensure_future(self._publish_ephemeral(room, text, done))
            return
        head, tail = split_message(protocol.message_text(room, 0, sender, data, ts))
        if not self._publishes:
            asyncio.get_running_loop().call_soon(self._send_publishes)
        state = self._rooms.get(room)
        own = state.hold.sent() if state is not None else None
        self._publishes.append((room, head, tail, done, own))

    async def _publish_ephemeral(self, room: str, text: bytes, done: PublishDone) -> None:
        try:
            await self.rooms_store.publish_ephemeral(room, text)
        except (RedisError, OSError) as error:
            self._set_connected(False, error)
            done(None, UNAVAILABLE)
            return
        done(None, None)

    def _send_publishes(self) -> None:
        batch, self._publishes = self._publishes, []
        asyncio.ensure_future(self._send_batch(batch))

    async def _send_batch(self, batch: list[_Publish]) -> None:
        try:
            replies = await self.rooms_store.publish_many([(r, h, t) for r, h, t, _, _ in batch])
        except (RedisError, OSError) as error:
            self._answered(batch, [("", 0)] * len(batch))  # nothing of theirs will come
            self._set_connected(False, error)
            for _, _, _, done, _ in batch:
                done(None, UNAVAILABLE)
            return
        self._answered(batch, replies)
        for (name, _, _, done, _), (epoch, seq) in zip(batch, replies, strict=True):
            room = self._rooms.get(name)
            if room is None or room.reached(epoch, seq) or not self.connected:
                done(seq, None)
            else:
                room.waiting.append((epoch, seq, lambda done=done, seq=seq: done(seq, None)))

    def _answered(self, batch: list[_Publish], replies: list[tuple[str, int]]) -> None:
        """Tell the rooms' holds what Redis numbered (seq 0: failed); let out the
        events that waited only for these."""
        for (_, _, _, _, own), (epoch, seq) in zip(batch, replies, strict=True):
            if own is not None:
                own.epoch, own.seq = epoch, seq
        for name in {name for name, *_ in batch}:
            room = self._rooms.get(name)
            if room is not None and room.hold.events is not None and room.hold.ready():
                self._release(name, room)

    def announce_counts(self) -> None:
        names = [name for name, room in self._rooms.items() if room.members]
        if names and self.connected:
            asyncio.ensure_future(self._announce_counts(names))

    async def _announce_counts(self, names: list[str]) -> None:
        """Each node tells its own members: one pipeline of HLENs (one per room with
        members here) a second. Joins and leaves on other nodes change the count
        too, unannounced once the room is over the limit, so every room is asked."""
        try:
            counts = await self.rooms_store.member_counts(names)
        except (RedisError, OSError) as error:
            self._set_connected(False, error)
            return
        for name, count in zip(names, counts, strict=True):
            room = self._rooms.get(name)
            if room is None:
                continue
            if self._counts.should_announce(name, count, self.rooms_store.presence_limit):
                self._deliver(name, protocol.count_frame(name, count), None, False)

    async def room_state(self, room: str) -> RoomState | None:
        epoch, seq, members, _ = await self.rooms_store.room_snapshot(room)
        if epoch is None:
            return None
        return RoomState(epoch, seq, [json.loads(m) for m in members])

    async def history(self, room: str, since: int, limit: int) -> list[bytes]:
        epoch, seq, _, texts = await self.rooms_store.room_snapshot(room)
        if epoch is None or since >= seq or limit <= 0:
            return []
        oldest = seq - len(texts) + 1
        kept = texts[max(0, since - oldest + 1) :][:limit]
        return [frame(text, OP_TEXT) for text in kept]

    async def busiest(self, limit: int) -> list[tuple[str, int]]:
        return await self.rooms_store.busiest(limit)

    def expire(self, now: float) -> int:
        """Nothing to do: Redis expires an empty room's keys itself (see `hub.redis_rooms`)."""
        return 0

    def stats(self) -> dict[str, Any]:
        return {"broker": {"kind": self.kind, "connected": self.connected}}


def _drop(room: str, frame_bytes: bytes, exclude: str | None, lossy: bool) -> None:
    """Deliver callback before a hub attaches."""
