"""Two Redis brokers (two nodes) on one real redis-server, each with a hub
stand-in that records what it is handed: the broker's promises across nodes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis import Redis as SyncRedis

from hub.protocol import frame_text
from hub.redis_broker import UNAVAILABLE, JoinResult, RedisBroker
from tests.redis_server import RedisServer
from tests.support import wait_until


class Node:
    """A broker and what it delivered, as a hub would see it."""

    def __init__(self, url: str, **kw: Any) -> None:
        self.broker = RedisBroker(
            url, history_size=50, node_timeout=kw.pop("node_timeout", 15), **kw
        )
        self.events: list[tuple[str, dict[str, Any], str | None, bool]] = []
        self.log: list[str] = []  # "deliver seq N" / "ack N", in the order they happened
        self.broker.attach(self._deliver)

    def _deliver(self, room: str, frame: bytes, exclude: str | None, lossy: bool) -> None:
        message = json.loads(frame_text(frame))
        self.events.append((room, message, exclude, lossy))
        if message["type"] == "message" and "seq" in message:
            self.log.append(f"deliver {message['seq']}")

    def messages(self, room: str = "r") -> list[dict[str, Any]]:
        return [m for r, m, _, _ in self.events if r == room and m["type"] == "message"]

    def presence(self, room: str = "r") -> list[dict[str, Any]]:
        return [m for r, m, _, _ in self.events if r == room and m["type"] == "presence"]

    async def join(self, room: str, client_id: str, **kw: Any) -> JoinResult | None:
        future: asyncio.Future[JoinResult | None] = asyncio.get_running_loop().create_future()
        member = {"client_id": client_id, "name": client_id}
        self.broker.join(room, member, kw.get("since"), kw.get("epoch"), future.set_result)
        return await asyncio.wait_for(future, 5)

    async def publish(self, room: str, text: str, **kw: Any) -> tuple[int | None, str | None]:
        future: asyncio.Future[tuple[int | None, str | None]] = (
            asyncio.get_running_loop().create_future()
        )

        def done(seq: int | None, error: str | None) -> None:
            self.log.append(f"ack {seq}")
            future.set_result((seq, error))

        sender = {"client_id": "ann", "name": "ann"}
        self.broker.publish(room, sender, {"text": text}, kw.get("ephemeral", False), done)
        return await asyncio.wait_for(future, 5)


@asynccontextmanager
async def two_nodes(server: RedisServer, **kw: Any) -> AsyncIterator[tuple[Node, Node]]:
    """Two started nodes on ``server``, stopped (their members removed) afterwards."""
    a, b = Node(server.url, **kw), Node(server.url, **kw)
    await a.broker.start()
    await b.broker.start()
    try:
        yield a, b
    finally:
        for node in (a, b):
            await node.broker.stop()


async def test_a_message_reaches_every_node_once_with_the_same_fields(
    redis_server: RedisServer,
) -> None:
    async with two_nodes(redis_server) as (a, b):
        await a.join("r", "ann")
        joined = await b.join("r", "bob")
        assert joined is not None and joined.member_count == 2
        assert sorted(m["client_id"] for m in json.loads(joined.members_json)) == ["ann", "bob"]
        # each node hears every join, with the joiner to be left out of it
        await wait_until(lambda: len(a.presence()) == 2)
        assert [(p["member"]["client_id"], x) for _, p, x, _ in a.events] == [
            ("ann", "ann"),
            ("bob", "bob"),
        ]
        seq, error = await a.publish("r", "hi")
        assert (seq, error) == (1, None)
        await wait_until(lambda: len(b.messages()) == 1)
        assert a.messages() == b.messages()
        assert a.messages()[0]["seq"] == 1 and a.messages()[0]["data"] == {"text": "hi"}
        assert a.log == ["deliver 1", "ack 1"]  # the ack follows the sender's own copy


async def test_seq_is_gap_free_and_ordered_while_both_nodes_publish(
    redis_server: RedisServer,
) -> None:
    async with two_nodes(redis_server) as (a, b):
        await a.join("r", "ann")
        await b.join("r", "bob")
        count = 200
        acks = await asyncio.gather(
            *(node.publish("r", f"{i}") for i in range(count) for node in (a, b))
        )
        assert sorted(seq for seq, _ in acks) == list(range(1, 2 * count + 1))
        for node in (a, b):
            await wait_until(lambda node=node: len(node.messages()) == 2 * count)
            assert [m["seq"] for m in node.messages()] == list(range(1, 2 * count + 1))
            for entry in node.log:  # every ack after its own delivery
                if entry.startswith("ack"):
                    seq = int(entry.split()[1])
                    assert node.log.index(f"deliver {seq}") < node.log.index(entry)
        assert a.messages() == b.messages()


async def test_resume_on_another_node_replays_exactly_what_was_missed(
    redis_server: RedisServer,
) -> None:
    async with two_nodes(redis_server) as (a, b):
        first = await a.join("r", "ann")
        assert first is not None
        for i in range(5):
            await a.publish("r", f"m{i}")
        resumed = await b.join("r", "ann2", since=2, epoch=first.epoch)
        assert resumed is not None and not resumed.replay.gap
        assert [json.loads(frame_text(f))["seq"] for f in resumed.replay.frames] == [3, 4, 5]
        everything = await b.join("r", "ann4", since=0)  # no epoch: all there is, no gap
        assert everything is not None and not everything.replay.gap
        assert [json.loads(frame_text(f))["seq"] for f in everything.replay.frames] == [
            1,
            2,
            3,
            4,
            5,
        ]
        stale = await b.join("r", "ann3", since=2, epoch="0000")
        assert stale is not None and stale.replay.gap and len(stale.replay.frames) == 5


async def test_a_killed_nodes_members_leave_within_the_node_timeout(
    redis_server: RedisServer,
) -> None:
    async with two_nodes(redis_server, node_timeout=1.0) as (a, b):
        await a.join("r", "ann")
        await b.join("r", "bob")
        for task in a.broker._tasks:  # a dies: no heartbeat, no goodbye
            task.cancel()
        await wait_until(lambda: any(p["event"] == "leave" for p in b.presence()), timeout=5)
        leave = [p for p in b.presence() if p["event"] == "leave"]
        assert [p["member"]["client_id"] for p in leave] == ["ann"]
        again = await b.join("r", "bob")
        assert again is not None and again.member_count == 1


async def test_redis_restart_unavailable_then_back_with_a_new_epoch(
    redis_server: RedisServer,
) -> None:
    async with two_nodes(redis_server) as (a, b):
        first = await a.join("r", "ann")
        await b.join("r", "bob")
        assert first is not None
        await a.publish("r", "before")
        redis_server.stop()
        await wait_until(lambda: not a.broker.connected, timeout=5)
        assert await a.publish("r", "lost") == (None, UNAVAILABLE)
        redis_server.start()
        await wait_until(lambda: a.broker.connected and b.broker.connected, timeout=5)
        with SyncRedis.from_url(redis_server.url) as sync:  # presence is back
            assert sorted(sync.hkeys("wshub:{r}:pres")) == sorted(
                [f"{a.broker.node}|ann".encode(), f"{b.broker.node}|bob".encode()]
            )

        async def published() -> bool:
            seq, error = await a.publish("r", "after")
            return error is None

        await wait_until(published, timeout=5)
        await wait_until(lambda: any(m["data"]["text"] == "after" for m in b.messages()))
        resumed = await b.join("r", "bob2", since=1, epoch=first.epoch)
        assert resumed is not None and resumed.replay.gap and resumed.epoch != first.epoch
        assert all(m["data"]["text"] != "lost" for m in b.messages())


async def test_a_join_right_behind_the_last_leave_keeps_the_room_subscribed(
    redis_server: RedisServer,
) -> None:
    async with two_nodes(redis_server) as (a, b):
        await a.join("r", "ann")
        await b.join("r", "bob")
        a.broker.leave("r", {"client_id": "ann", "name": "ann"})  # the last one here...
        joined = await a.join("r", "amy")  # ...and a newcomer before Redis answered
        assert joined is not None
        await b.publish("r", "still here?")
        await wait_until(lambda: any(m["data"] == {"text": "still here?"} for m in a.messages()))


async def test_a_request_to_every_node_sums_their_answers(redis_server: RedisServer) -> None:
    async with two_nodes(redis_server) as (a, b):
        seen: dict[str, list[dict]] = {"a": [], "b": []}
        a.broker.control_handler = lambda request: seen["a"].append(request) or 2
        b.broker.control_handler = lambda request: seen["b"].append(request) or 3
        request = {"disconnect": {"user": "42"}}
        assert await b.broker.everywhere(request) == 5
        assert seen == {"a": [request], "b": [request]}


async def test_each_node_shares_its_numbers(redis_server: RedisServer) -> None:
    async with two_nodes(redis_server) as (a, b):
        a.broker.stats_source = lambda: {"node": "a", "connections": 3}
        b.broker.stats_source = lambda: {"node": "b", "connections": 4}

        async def both() -> bool:
            return len(await a.broker.node_stats()) == 2

        await wait_until(both, timeout=5)
        stats = sorted(await a.broker.node_stats(), key=lambda s: s["node"])
        assert stats == [{"node": "a", "connections": 3}, {"node": "b", "connections": 4}]
