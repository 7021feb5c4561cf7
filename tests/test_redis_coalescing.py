"""A publishing node writes what one read of a publisher brought in as one write
per member, as one node does, although its copies come back through Redis
(`hub.redis_broker._Hold`; issue 13's two-node fan-out).

Node A is a real `hub.hub.Hub` on a `RedisBroker`, whose members' sinks record
every write; node B is a second broker on its own event loop in a thread, so
that the test can publish through B while A's loop is held, and a message from
B waits, unread, on A's pub/sub connection. ``CLIENT PAUSE WRITE`` then keeps
A's own publishes inside Redis for as long as the test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from hub import redis_broker
from hub.hub import Hub
from hub.peer import Peer
from hub.redis_broker import RedisBroker
from hub.settings import HubSettings
from tests.hubkit import RecordingSink, decode_frames
from tests.redis_server import RedisServer
from tests.support import wait_until
from tests.test_redis_broker import Node

T = TypeVar("T")
ROOM = "burst"


@contextmanager
def node_in_a_thread(url: str) -> Iterator[tuple[Node, Any]]:
    """A started `Node` on its own loop; yields it and ``run(coroutine)``, which
    runs a coroutine there and blocks (the caller's loop too) until it is done."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)

    async def make() -> Node:
        node = Node(url)
        await node.broker.start()
        return node

    node = run(make())
    try:
        yield node, run
    finally:
        run(node.broker.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def connect(hub: Hub, name: str) -> Peer:
    peer = Peer(hub.new_client_id(), name, RecordingSink())
    assert hub.register(peer) is None
    hub.handle_text(peer, json.dumps({"type": "join", "room": ROOM}))
    return peer


def say(hub: Hub, peer: Peer, id: int, text: str) -> None:
    """``peer`` publishes ``text`` to the room, as read off its socket."""
    message = {"type": "publish", "room": ROOM, "id": id, "data": {"text": text}}
    hub.handle_text(peer, json.dumps(message))


def texts_per_write(peer: Peer) -> list[list[str]]:
    """The room messages' texts in each write the peer's sink got, writes without any left out."""
    writes = []
    for data in peer.sink.writes:
        texts = [
            message["data"]["text"]
            for op, payload in decode_frames(data)
            if op == 0x1 and (message := json.loads(payload))["type"] == "message"
        ]
        if texts:
            writes.append(texts)
    return writes


def received(peer: Peer) -> list[dict[str, Any]]:
    return [json.loads(p) for data in peer.sink.writes for op, p in decode_frames(data) if op == 1]


def paused_script(sync: SyncRedis) -> bool:
    """Whether a script call waits in Redis behind ``CLIENT PAUSE``."""
    return any(c["cmd"] == "evalsha" and "b" in c["flags"] for c in sync.client_list())


async def test_a_burst_read_while_its_room_stream_brings_a_message_goes_out_in_one_write(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only copies coming back may end a hold here, never the safety bound.
    monkeypatch.setattr(redis_broker, "HOLD_AT_MOST", 30.0, raising=False)
    broker = RedisBroker(redis_server.url, history_size=50)
    hub = Hub(HubSettings(), broker=broker)
    await broker.start()
    sync = SyncRedis.from_url(redis_server.url, decode_responses=True)
    try:
        with node_in_a_thread(redis_server.url) as (b, run):
            assert run(b.join(ROOM, "cy")) is not None
            ann, bob = connect(hub, "ann"), connect(hub, "bob")
            for peer in (ann, bob):
                await wait_until(
                    lambda peer=peer: any(m["type"] == "joined" for m in received(peer))
                )

            # A message that comes alone goes out alone, waiting for nothing.
            say(hub, ann, 1, "alone")
            await wait_until(lambda: texts_per_write(bob) == [["alone"]])
            await wait_until(lambda: any(m["type"] == "ack" for m in received(ann)))
            ann.sink.writes.clear()
            bob.sink.writes.clear()

            # B publishes while A's loop is held by this very call: B's message
            # waits unread on A's pub/sub connection...
            run(b.publish(ROOM, "from b"))
            sync.client_pause(5000, all=False)  # (Redis lifts it itself after 5 s)
            # ...and A reads two publishes of ann's before it reads that message.
            say(hub, ann, 2, "mine 1")
            say(hub, ann, 3, "mine 2")
            await wait_until(lambda: paused_script(sync))
            sync.client_unpause()
            await wait_until(
                lambda: sum(texts_per_write(bob), []) == ["from b", "mine 1", "mine 2"]
            )

            # One write to bob carries all three, in seq order...
            assert texts_per_write(bob) == [["from b", "mine 1", "mine 2"]]
            seqs = [m["seq"] for m in received(bob) if m["type"] == "message"]
            assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
            # ...and ann's acks come after her own copies.
            await wait_until(lambda: sum(m["type"] == "ack" for m in received(ann)) == 2)
            kinds = [
                (m["type"], m.get("id")) for m in received(ann) if m["type"] in ("message", "ack")
            ]
            assert kinds == [("message", None)] * 3 + [("ack", 2), ("ack", 3)]
            # B, which holds nothing back, saw the same messages.
            await wait_until(lambda: len(b.messages(ROOM)) == 4)
            assert [m["data"]["text"] for m in b.messages(ROOM)] == [
                "alone",
                "from b",
                "mine 1",
                "mine 2",
            ]

            # However long Redis keeps the node's own publish, a hold ends at its bound.
            ann.sink.writes.clear()
            bob.sink.writes.clear()
            monkeypatch.setattr(redis_broker, "HOLD_AT_MOST", 0.2, raising=False)
            run(b.publish(ROOM, "from b, held"))
            sync.client_pause(5000, all=False)
            say(hub, ann, 4, "stuck")
            await wait_until(lambda: texts_per_write(bob) == [["from b, held"]])
            assert paused_script(sync)  # "stuck" is still inside Redis
            sync.client_unpause()
            await wait_until(lambda: texts_per_write(bob) == [["from b, held"], ["stuck"]])
            await wait_until(lambda: any(m.get("id") == 4 for m in received(ann)))
            monkeypatch.setattr(redis_broker, "HOLD_AT_MOST", 30.0, raising=False)

            # Redis going away ends a hold: what A received reaches its members,
            # and what Redis never numbered is answered unavailable.
            ann.sink.writes.clear()
            bob.sink.writes.clear()
            run(b.publish(ROOM, "from b, again"))
            sync.client_pause(5000, all=False)
            say(hub, ann, 5, "lost")
            await wait_until(lambda: paused_script(sync))
            redis_server.stop()
            await wait_until(lambda: texts_per_write(bob) == [["from b, again"]])
            await wait_until(lambda: any(m["type"] == "error" for m in received(ann)))
            errors = [(m["code"], m.get("id")) for m in received(ann) if m["type"] == "error"]
            assert errors == [("unavailable", 5)]
            assert texts_per_write(ann) == [["from b, again"]]
    finally:
        with contextlib.suppress(RedisError, OSError):
            sync.client_unpause()
        sync.close()
        await broker.stop()
