"""Rooms' shared state in Redis: the key layout and one round trip per operation.

This is the I/O half of the Redis broker: it knows Redis, not the hub. Key
layout (``{room}`` is a hash tag, so one room's keys share a Cluster slot):

=============================  ==============================================
``wshub:{R}:meta``             hash: ``epoch``, ``seq`` (last seq handed out)
``wshub:{R}:hist``             list: the last ``history_size`` message texts
``wshub:{R}:pres``             hash: ``<node>|<client_id>`` -> member JSON
``wshub:{R}``                  pub/sub channel of the room's events
``wshub:node:<node>``          string with a TTL: the node's heartbeat
``wshub:node:<node>:rooms``    set: rooms the node has members in
``wshub:nodes``                set: nodes that registered
=============================  ==============================================

A room's meta and history get a TTL of ``history_ttl`` when its last member
leaves, and lose it when someone joins, so ``history_ttl`` holds for the room
as a whole, across nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from hub import redis_scripts
from hub.history import new_epoch

PREFIX = "wshub"
RUN = 500
"""Messages to one room numbered by one script call at most (Lua's unpack limit)."""
NODES = f"{PREFIX}:nodes"


def channel(room: str) -> str:
    return f"{PREFIX}:{{{room}}}"


def room_keys(room: str) -> list[str]:
    """meta, history, presence of ``room``: the KEYS of every room script."""
    tag = f"{PREFIX}:{{{room}}}"
    return [f"{tag}:meta", f"{tag}:hist", f"{tag}:pres"]


def node_key(node: str) -> str:
    return f"{PREFIX}:node:{node}"


def node_rooms_key(node: str) -> str:
    return f"{PREFIX}:node:{node}:rooms"


@dataclass(slots=True, frozen=True)
class JoinRequest:
    room: str
    client_id: str
    member_json: str
    want_history: bool
    list_big: bool = True
    """Also list the members of a room over the presence limit (else the node has a list)."""
    first_here: bool = True
    """This node had no member in the room yet: record the room in the node's set."""


@dataclass(slots=True, frozen=True)
class JoinReply:
    """The room as a joiner sees it, read in the same script that added it."""

    epoch: str
    seq: int
    member_count: int
    members: list[bytes]
    """Members' JSON texts (UTF-8, as Redis holds them): all of them, or
    ``presence_limit`` of them when truncated (none when truncated and not asked
    for: ``list_big`` false)."""
    truncated: bool
    history: list[bytes]
    """The message texts held, oldest first (only when asked for)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisRooms:
    """Room operations for one node; each is one script, one round trip."""

    def __init__(
        self,
        client: Redis,
        node: str,
        history_size: int,
        history_ttl: float,
        presence_limit: int,
    ) -> None:
        self.client = client
        self.node = node
        self.history_size = history_size
        self.history_ttl = max(1, round(history_ttl))
        self.presence_limit = presence_limit
        self._publish = client.register_script(redis_scripts.PUBLISH)
        self._join = client.register_script(redis_scripts.JOIN)
        self._leave = client.register_script(redis_scripts.LEAVE)
        self._reap = client.register_script(redis_scripts.REAP)
        self._fresh_epoch = new_epoch()

    def _epoch_offer(self) -> str:
        """The epoch a script gives a room that has none (drawn again once used:
        ``secrets`` per message showed up in profiles)."""
        return self._fresh_epoch

    def _used(self, epoch: str) -> None:
        if epoch == self._fresh_epoch:
            self._fresh_epoch = new_epoch()

    def field(self, client_id: str) -> str:
        return f"{self.node}|{client_id}"

    async def publish(self, room: str, head: str, tail: str) -> tuple[str, int]:
        """Number a message whose text is ``head + str(seq) + tail``, keep it in the
        room's history and publish it; return (epoch, seq)."""
        return (await self.publish_many([(room, head, tail)]))[0]

    async def publish_many(self, messages: list[tuple[str, str, str]]) -> list[tuple[str, int]]:
        """`publish` for several (room, head, tail), in order: one script per run
        of messages to the same room (up to `RUN`), all in one pipeline, so one
        round trip and one pub/sub message per run, not per message."""
        runs: list[tuple[str, list[str]]] = []
        for room, head, tail in messages:
            if runs and runs[-1][0] == room and len(runs[-1][1]) < 2 * RUN:
                runs[-1][1].extend((head, tail))
            else:
                runs.append((room, [head, tail]))

        def queue(pipe: Pipeline) -> None:
            offer = self._epoch_offer()
            for room, parts in runs:
                pipe.evalsha(
                    self._publish.sha,
                    3,
                    *room_keys(room),
                    *(channel(room), self.history_size, offer, self.history_ttl),
                    *parts,
                )

        replies: list[tuple[str, int]] = []
        for (_, parts), (epoch, first) in zip(runs, await self._pipelined(queue), strict=True):
            epoch = _text(epoch)
            self._used(epoch)
            replies.extend((epoch, int(first) + i) for i in range(len(parts) // 2))
        return replies

    async def _pipelined(self, queue: Callable[[Pipeline], None]) -> list[Any]:
        """Run the commands ``queue`` puts in a pipeline, scripts by their SHA.

        redis-py would check that a pipeline's scripts are loaded with an extra
        round trip before every pipeline; they are loaded once instead, and again
        only when Redis says it lost them (a restart).
        """
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            queue(pipe)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
                for script in (self._publish, self._join, self._leave, self._reap):
                    await self.client.script_load(script.script)
        raise AssertionError("unreachable")

    async def publish_ephemeral(self, room: str, text: bytes) -> None:
        await self.client.publish(channel(room), b"e" + text)

    async def register(self, members: dict[str, dict[str, str]]) -> None:
        """Put this node's members (room -> client_id -> member JSON) back into
        presence after Redis lost them, without announcing them again."""
        if not members:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(node_rooms_key(self.node), *members)
        for room, present in members.items():
            meta, history, presence = room_keys(room)
            fields = {self.field(client_id): text for client_id, text in present.items()}
            pipe.hset(presence, mapping=fields)
            pipe.persist(meta)
            pipe.persist(history)
        await pipe.execute()

    async def join(
        self,
        room: str,
        client_id: str,
        member_json: str,
        want_history: bool,
        list_big: bool = True,
        first_here: bool = True,
    ) -> JoinReply:
        """Add a member (announcing it while the room is within the presence limit)."""
        request = JoinRequest(room, client_id, member_json, want_history, list_big, first_here)
        return (await self.join_many([request]))[0]

    async def join_many(self, requests: list[JoinRequest]) -> list[JoinReply]:
        """Several joins in one pipeline: one round trip for a loop iteration's joins."""

        def queue(pipe: Pipeline) -> None:
            offer = self._epoch_offer()
            for r in requests:
                if r.first_here:
                    pipe.sadd(node_rooms_key(self.node), r.room)
                pipe.evalsha(
                    self._join.sha,
                    3,
                    *room_keys(r.room),
                    channel(r.room),
                    self.field(r.client_id),
                    r.member_json,
                    offer,
                    self.presence_limit,
                    r.room,
                    r.client_id,
                    "1" if r.want_history else "0",
                    "1" if r.list_big else "0",
                )

        results = iter(await self._pipelined(queue))
        replies = []
        for r in requests:
            if r.first_here:
                next(results)  # the SADD's answer
            epoch, seq, count, truncated, members, history = next(results)
            self._used(_text(epoch))
            replies.append(
                JoinReply(
                    _text(epoch),
                    int(seq),
                    int(count),
                    list(members),
                    bool(truncated),
                    list(history),
                )
            )
        return replies

    async def leave(self, room: str, client_id: str) -> int:
        """Remove a member; return the room's member count after (-1: it was not there)."""
        count = await self._leave(
            keys=room_keys(room),
            args=[
                channel(room),
                self.field(client_id),
                client_id,
                room,
                self.history_ttl,
                self.presence_limit,
            ],
        )
        return int(count)

    async def forget_room(self, room: str) -> None:
        """This node has no members left in ``room``."""
        await self.client.srem(node_rooms_key(self.node), room)

    async def heartbeat(self, node_timeout: float) -> None:
        """Say this node is alive for ``node_timeout`` more seconds."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(node_key(self.node), "1", px=max(1, round(node_timeout * 1000)))
        pipe.sadd(NODES, self.node)
        await pipe.execute()

    async def _heartbeats(self) -> list[tuple[str, bool]]:
        """Every registered node and whether its heartbeat is still alive."""
        nodes = [_text(n) for n in await self.client.smembers(NODES)]
        if not nodes:
            return []
        pipe = self.client.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(node_key(node))
        return [(node, bool(flag)) for node, flag in zip(nodes, await pipe.execute(), strict=True)]

    async def live_nodes(self) -> list[str]:
        """Registered nodes whose heartbeat has not expired (this one included)."""
        return [node for node, alive in await self._heartbeats() if alive]

    async def dead_nodes(self) -> list[str]:
        """Registered nodes whose heartbeat has expired (this one excluded)."""
        return [n for n, alive in await self._heartbeats() if not alive and n != self.node]

    async def reap(self, node: str) -> int:
        """Remove every member of ``node`` (dead, or this one stopping), announcing
        the leaves; only one node reaps a given dead node. Return members removed."""
        if node != self.node:
            claimed = await self.client.set(f"{node_key(node)}:reaping", self.node, nx=True, ex=30)
            if not claimed:
                return 0
        rooms = [_text(r) for r in await self.client.smembers(node_rooms_key(node))]
        removed = 0
        for room in rooms:
            removed += int(
                await self._reap(
                    keys=room_keys(room),
                    args=[channel(room), f"{node}|", room, self.history_ttl, self.presence_limit],
                )
            )
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(node_rooms_key(node), node_key(node))
        pipe.srem(NODES, node)
        await pipe.execute()
        return removed

    async def member_counts(self, rooms: list[str]) -> list[int]:
        """Members of each room over all nodes, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for room in rooms:
            pipe.hlen(room_keys(room)[2])
        return [int(n) for n in await pipe.execute()]

    async def room_snapshot(self, room: str) -> tuple[str | None, int, list[str], list[bytes]]:
        """(epoch, seq, members' JSON on every node, history texts) of a room, for
        the backend API; epoch None when Redis holds nothing of it."""
        meta, history, presence = room_keys(room)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(meta, "epoch", "seq")
        pipe.hvals(presence)
        pipe.lrange(history, 0, -1)
        (epoch, seq), members, texts = await pipe.execute()
        return (
            None if epoch is None else _text(epoch),
            int(seq or 0),
            [_text(m) for m in members],
            list(texts),
        )

    async def busiest(self, limit: int) -> list[tuple[str, int]]:
        """(room, member count over all nodes) of the rooms with most members.

        Walks the presence keys with SCAN (an operator's question, not a hot
        path: a sorted set kept by the scripts would tie every room to one slot
        of a Redis Cluster)."""
        counts: list[tuple[str, int]] = []
        pattern = f"{PREFIX}:{{*}}:pres"
        keys = [key async for key in self.client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            pipe = self.client.pipeline(transaction=False)
            for key in chunk:
                pipe.hlen(key)
            for key, count in zip(chunk, await pipe.execute(), strict=True):
                name = _text(key)[len(PREFIX) + 2 : -len("}:pres")]
                if count:
                    counts.append((name, int(count)))
        counts.sort(key=lambda item: (-item[1], item[0]))
        return counts[:limit]
