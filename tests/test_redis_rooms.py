"""The Redis room store against a real redis-server: numbering, history,
presence across nodes, TTLs and reaping a dead node's members."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from hub.redis_rooms import RedisRooms, channel, room_keys
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(redis_server: RedisServer, io_loop: Any) -> Iterator[Redis]:
    """An asyncio client of an emptied Redis (it connects on the test's loop)."""
    with SyncRedis.from_url(redis_server.url) as sync:
        sync.flushall()
    redis = Redis.from_url(redis_server.url)
    yield redis
    io_loop.run_sync(redis.aclose)


def rooms(client: Redis, node: str, **kw: int) -> RedisRooms:
    settings = {"history_size": 5, "history_ttl": 30, "presence_limit": 3} | kw
    return RedisRooms(client, node, **settings)


async def listen(client: Redis, room: str) -> tuple[object, list[str]]:
    """A subscriber to the room's channel and the payloads it has received."""
    pubsub = client.pubsub()
    await pubsub.subscribe(channel(room))
    confirmation = await pubsub.get_message(timeout=5)
    assert confirmation and confirmation["type"] == "subscribe"
    return pubsub, []


async def drain(pubsub: object, into: list[str], count: int) -> list[str]:
    while len(into) < count:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)  # type: ignore[attr-defined]
        assert message is not None, f"only {into} arrived"
        into.append(message["data"].decode())
    return into


def message_parts(room: str, text: str) -> tuple[str, str]:
    head = json.dumps({"type": "message", "room": room, "seq": 0}, separators=(",", ":"))
    tail = json.dumps({"from": "ann", "data": text, "ts": 1}, separators=(",", ":"))
    return head[: -len("0}")], "," + tail[1:]


async def test_publish_numbers_keeps_history_and_publishes_in_seq_order(client: Redis) -> None:
    node = rooms(client, "n1")
    pubsub, got = await listen(client, "r")
    seqs = []
    for i in range(7):
        epoch, seq = await node.publish("r", *message_parts("r", f"m{i}"))
        seqs.append(seq)
    assert seqs == list(range(1, 8))
    payloads = await drain(pubsub, got, 7)
    for i, payload in enumerate(payloads):
        head, text = payload.split("\n")
        assert head == f"m{epoch} {i + 1}"
        assert json.loads(text) == {
            "type": "message",
            "room": "r",
            "seq": i + 1,
            "from": "ann",
            "data": f"m{i}",
            "ts": 1,
        }
    history = await client.lrange(room_keys("r")[1], 0, -1)
    assert [json.loads(t)["seq"] for t in history] == [3, 4, 5, 6, 7]  # history_size 5
    await pubsub.aclose()


async def test_a_run_of_messages_to_one_room_is_one_script_and_one_channel_message(
    client: Redis,
) -> None:
    node = rooms(client, "n1", history_size=50)
    pubsub, got = await listen(client, "r")
    await node.publish("r", *message_parts("r", "first"))
    batch = [("r", *message_parts("r", f"m{i}")) for i in range(3)]
    batch += [("other", *message_parts("other", "x")), ("r", *message_parts("r", "last"))]
    replies = await node.publish_many(batch)
    assert [seq for _, seq in replies] == [2, 3, 4, 1, 5]
    head, *texts = (await drain(pubsub, got, 3))[1].split("\n")  # the run of three
    assert head.endswith(" 2") and [json.loads(t)["seq"] for t in texts] == [2, 3, 4]
    last_head, last_text = got[2].split("\n")
    assert last_head.endswith(" 5") and json.loads(last_text)["data"] == "last"
    history = await client.lrange(room_keys("r")[1], 0, -1)
    assert [json.loads(t)["seq"] for t in history] == [1, 2, 3, 4, 5]
    await pubsub.aclose()


async def test_join_sees_members_of_every_node_and_announces_to_others(client: Redis) -> None:
    a, b = rooms(client, "na"), rooms(client, "nb")
    pubsub, got = await listen(client, "r")
    first = await a.join("r", "c1", '{"client_id":"c1","name":"ann"}', want_history=False)
    assert (first.seq, first.member_count, first.truncated) == (0, 1, False)
    second = await b.join("r", "c2", '{"client_id":"c2","name":"bob"}', want_history=False)
    assert second.epoch == first.epoch
    assert sorted(json.loads(m)["name"] for m in second.members) == ["ann", "bob"]
    events = await drain(pubsub, got, 2)
    assert events[1].startswith("pc2 ")
    assert json.loads(events[1].split(" ", 1)[1]) == {
        "type": "presence",
        "room": "r",
        "event": "join",
        "member": {"client_id": "c2", "name": "bob"},
    }
    assert await b.leave("r", "c2") == 1
    assert await b.leave("r", "c2") == -1  # once
    leave = json.loads((await drain(pubsub, got, 3))[2].split(" ", 1)[1])
    assert leave["event"] == "leave" and leave["member"]["name"] == "bob"
    await pubsub.aclose()


async def test_beyond_the_presence_limit_joins_are_counted_not_announced(client: Redis) -> None:
    node = rooms(client, "n1", presence_limit=3)
    pubsub, got = await listen(client, "big")
    replies = [
        await node.join("big", f"c{i}", json.dumps({"client_id": f"c{i}"}), want_history=False)
        for i in range(5)
    ]
    assert [r.member_count for r in replies] == [1, 2, 3, 4, 5]
    assert [r.truncated for r in replies] == [False, False, False, True, True]
    assert all(len(r.members) == 3 for r in replies[2:])
    await drain(pubsub, got, 3)  # the joins of c0, c1, c2 only
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
    await pubsub.aclose()


async def test_history_outlives_the_last_member_by_the_ttl_only(client: Redis) -> None:
    node = rooms(client, "n1", history_ttl=30)
    await node.join("r", "c1", '{"client_id":"c1"}', want_history=False)
    await node.publish("r", *message_parts("r", "x"))
    meta, hist, _ = room_keys("r")
    assert await client.ttl(meta) == -1 and await client.ttl(hist) == -1
    await node.leave("r", "c1")
    assert 0 < await client.ttl(meta) <= 30 and 0 < await client.ttl(hist) <= 30
    again = await node.join("r", "c1", '{"client_id":"c1"}', want_history=True)
    assert await client.ttl(meta) == -1
    assert [json.loads(t)["data"] for t in again.history] == ["x"]


async def test_a_lost_history_starts_a_new_epoch(client: Redis) -> None:
    node = rooms(client, "n1")
    epoch, _ = await node.publish("r", *message_parts("r", "x"))
    await client.flushall()  # what a restarted Redis without persistence holds
    new_epoch, seq = await node.publish("r", *message_parts("r", "y"))
    assert new_epoch != epoch and seq == 1


async def test_reaping_a_dead_node_removes_its_members_once(client: Redis) -> None:
    alive, dead = rooms(client, "alive"), rooms(client, "dead")
    await dead.heartbeat(node_timeout=0.2)
    await alive.heartbeat(node_timeout=30)
    for room in ("r1", "r2"):
        await alive.join(room, "keep", '{"client_id":"keep"}', want_history=False)
        await dead.join(room, "gone", '{"client_id":"gone"}', want_history=False)
    pubsub, got = await listen(client, "r1")

    async def dead_listed() -> list[str]:
        while not (nodes := await alive.dead_nodes()):
            await asyncio.sleep(0.05)
        return nodes

    assert await asyncio.wait_for(dead_listed(), 5) == ["dead"]
    other = rooms(client, "third")
    removed = await asyncio.gather(alive.reap("dead"), other.reap("dead"))
    assert sorted(removed) == [0, 2]  # one of them claimed it
    for room in ("r1", "r2"):
        assert await client.hkeys(room_keys(room)[2]) == [b"alive|keep"]
    leave = json.loads((await drain(pubsub, got, 1))[0].split(" ", 1)[1])
    assert leave == {
        "type": "presence",
        "room": "r1",
        "event": "leave",
        "member": {"client_id": "gone"},
    }
    assert await alive.dead_nodes() == []
    await pubsub.aclose()


async def test_the_api_views_of_rooms_cover_every_node(client: Redis) -> None:
    a, b = rooms(client, "na"), rooms(client, "nb")
    for i in range(3):
        await a.join("big", f"a{i}", json.dumps({"client_id": f"a{i}"}), want_history=False)
    await b.join("big", "b0", json.dumps({"client_id": "b0"}), want_history=False)
    await b.join("small", "b1", json.dumps({"client_id": "b1"}), want_history=False)
    await a.publish("big", *message_parts("big", "hello"))
    assert await a.busiest(10) == [("big", 4), ("small", 1)]
    assert await b.busiest(1) == [("big", 4)]
    epoch, seq, members, texts = await b.room_snapshot("big")
    assert epoch and seq == 1 and len(members) == 4 and len(texts) == 1
    assert (await a.room_snapshot("nowhere"))[0] is None
