"""Several `python server.py` nodes sharing one real redis-server behave as one hub.

Each test names the point of the scale-out promise it checks (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for
from tests.nginx_proxy import NginxProxy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Nodes:
    """Server processes on one Redis; all stopped at the end of the test."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.started: list[HubProcess] = []
        self.wires: list[HubWire] = []

    def start(self, *args: str) -> HubProcess:
        node = HubProcess(f"--broker={self.redis.url}", "--rate_limit=0", *args)
        self.started.append(node)
        return node

    def client(self, node: HubProcess, name: str) -> HubWire:
        wire = HubWire(node.port, name)
        self.wires.append(wire)
        return wire

    def close(self) -> None:
        for wire in self.wires:
            wire.close()
        for node in self.started:
            node.stop()


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[Nodes]:
    cluster = Nodes(redis_server)
    yield cluster
    cluster.close()


def until(wire: HubWire, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The first message matching ``predicate`` (others before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = wire.recv_json(max(deadline - time.monotonic(), 0.05))
        if predicate(message):
            return message


def join(wire: HubWire, room: str, **extra: Any) -> dict[str, Any]:
    wire.send_json({"type": "join", "room": room, "id": f"j-{room}", **extra})
    return until(wire, lambda m: m["type"] == "joined")


def names(joined: dict[str, Any]) -> list[str]:
    return sorted(m["name"] for m in joined["members"])


def test_1_welcome_and_healthz_name_the_node_and_the_broker(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    health_a, health_b = a.health(), b.health()
    assert health_a["broker"] == {"kind": "redis", "connected": True}
    assert health_a["status"] == "ok" and health_a["node"] != health_b["node"]
    assert nodes.client(a, "ann").welcome["node"] == health_a["node"]
    assert nodes.client(a, "amy").welcome["node"] == health_a["node"]  # fixed for its life
    assert nodes.client(b, "bob").welcome["node"] == health_b["node"]


def test_2_membership_and_presence_span_nodes(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    assert names(join(ann, "r")) == ["ann"]
    joined = join(bob, "r")
    assert names(joined) == ["ann", "bob"] and joined["member_count"] == 2
    presence = until(ann, lambda m: m["type"] == "presence")
    assert (presence["event"], presence["member"]["name"]) == ("join", "bob")
    bob.send_json({"type": "leave", "room": "r"})
    presence = until(ann, lambda m: m["type"] == "presence")
    assert (presence["event"], presence["member"]["name"]) == ("leave", "bob")


def test_3_messages_reach_every_node_once_in_seq_order_while_nodes_publish_at_once(
    nodes: Nodes,
) -> None:
    servers = [nodes.start(), nodes.start(), nodes.start()]
    publishers = [nodes.client(s, f"p{i}") for i, s in enumerate(servers)]
    readers = [nodes.client(s, f"r{i}") for i, s in enumerate(servers)]
    for wire in publishers + readers:
        join(wire, "room")
    per_publisher = 60

    def publish(index: int, wire: HubWire) -> None:
        for n in range(per_publisher):
            wire.send_json(
                {"type": "publish", "room": "room", "data": {"p": index, "n": n}, "id": n}
            )

    threads = [threading.Thread(target=publish, args=(i, w)) for i, w in enumerate(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    total = per_publisher * len(publishers)
    seen = []
    for wire in readers:
        got = []
        while len(got) < total:
            message = wire.recv_json(10)
            if message["type"] == "message":
                got.append(message)
        assert [m["seq"] for m in got] == list(range(1, total + 1))
        seen.append(got)
    assert seen[0] == seen[1] == seen[2]  # same seq, ts, from and data everywhere
    for wire in publishers:  # each ack after the sender's own copy
        own_seqs: set[int] = set()
        acks = 0
        while acks < per_publisher:
            message = wire.recv_json(10)
            if message["type"] == "message":
                own_seqs.add(message["seq"])
            elif message["type"] == "ack":
                assert message["seq"] in own_seqs, message
                acks += 1


def test_3_ephemeral_messages_cross_nodes_without_seq(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    join(ann, "board")
    join(bob, "board")
    ann.send_json({"type": "publish", "room": "board", "data": {"x": 1}, "ephemeral": True})
    got = until(bob, lambda m: m["type"] == "message")
    assert got["ephemeral"] is True and "seq" not in got and got["data"] == {"x": 1}


def test_4_resume_on_another_node_replays_exactly_then_live(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    ann = nodes.client(a, "ann")
    first = join(ann, "r")
    for n in range(6):
        ann.send_json({"type": "publish", "room": "r", "data": n, "id": n})
    until(ann, lambda m: m.get("type") == "ack" and m["id"] == 5)
    again = nodes.client(b, "ann")
    joined = join(again, "r", since=3, epoch=first["epoch"])
    assert joined["seq"] == 6 and joined["epoch"] == first["epoch"]
    replay = [again.recv_json() for _ in range(3)]
    assert [(m["type"], m["seq"]) for m in replay] == [
        ("message", 4),
        ("message", 5),
        ("message", 6),
    ]
    ann.send_json({"type": "publish", "room": "r", "data": "live"})
    live = until(again, lambda m: m["type"] == "message")
    assert live["seq"] == 7
    stale = nodes.client(b, "late")
    join(stale, "r", since=2, epoch="0123456789abcdef")
    gap = stale.recv_json()
    assert gap["code"] == "history_gap" and gap["epoch"] == first["epoch"]


def test_5_a_killed_node_leaves_presence_within_the_node_timeout(nodes: Nodes) -> None:
    a, b = nodes.start("--node_timeout=1"), nodes.start("--node_timeout=1")
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    join(ann, "r")
    join(bob, "r")
    until(ann, lambda m: m["type"] == "presence")
    os.kill(b.pid, signal.SIGKILL)
    started = time.monotonic()
    leave = until(ann, lambda m: m["type"] == "presence", timeout=1 + 5)
    assert (leave["event"], leave["member"]["name"]) == ("leave", "bob")
    assert time.monotonic() - started < 1 + 5
    assert names(join(nodes.client(a, "carl"), "r")) == ["ann", "carl"]


def test_5_a_node_stopped_with_sigterm_removes_its_members_at_once(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()  # node_timeout 15 s: a leave now cannot be a timeout
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    join(ann, "r")
    join(bob, "r")
    until(ann, lambda m: m["type"] == "presence")
    b.stop()
    leave = until(ann, lambda m: m["type"] == "presence", timeout=5)
    assert (leave["event"], leave["member"]["name"]) == ("leave", "bob")


def test_6_redis_down_then_back_empty(nodes: Nodes, redis_server: RedisServer) -> None:
    a, b = nodes.start(), nodes.start()
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    first = join(ann, "r")
    join(bob, "r")
    ann.send_json({"type": "publish", "room": "r", "data": "before", "id": "p0"})
    until(bob, lambda m: m["type"] == "message")
    mark = a.mark()
    redis_server.stop()
    wait_for(lambda: a.health()["status"] == "degraded", 5, what="degraded within 5 s")
    assert a.health()["broker"] == {"kind": "redis", "connected": False}
    ann.send_json({"type": "publish", "room": "r", "data": "lost", "id": "p1"})
    error = until(ann, lambda m: m.get("id") == "p1")
    assert (error["type"], error["code"]) == ("error", "unavailable")
    ann.send_json({"type": "join", "room": "other", "id": "j1"})
    error = until(ann, lambda m: m.get("id") == "j1")
    assert (error["type"], error["code"]) == ("error", "unavailable")
    redis_server.start()
    wait_for(lambda: a.health()["status"] == "ok" and b.health()["status"] == "ok", 5)
    with Redis.from_url(redis_server.url) as redis:  # presence re-registered
        wait_for(lambda: redis.hlen("wshub:{r}:pres") == 2, 5, what="members back in Redis")
    assert join(ann, "other")["member_count"] == 1  # the room refused during the outage
    ann.send_json({"type": "publish", "room": "r", "data": "after", "id": "p2"})
    until(ann, lambda m: m.get("id") == "p2" and m["type"] == "ack")
    got = until(bob, lambda m: m["type"] == "message")
    assert got["data"] == "after" and got["seq"] == 1  # a new epoch numbers from 1
    resumed = nodes.client(b, "ann")
    join(resumed, "r", since=1, epoch=first["epoch"])
    gap = resumed.recv_json()
    assert gap["code"] == "history_gap" and gap["epoch"] != first["epoch"]
    lines = a.lines[mark:]
    assert sum("redis: unreachable" in line for line in lines) == 1, lines
    assert sum("redis: connected" in line for line in lines) == 1, lines
    assert not a.errors(mark) and ann.still_open() is not None and bob.still_open() is not None


def test_7_redis_work_per_message_does_not_grow_with_the_room(
    nodes: Nodes, redis_server: RedisServer
) -> None:
    a, b = nodes.start(), nodes.start()
    members = [nodes.client(a if i % 2 else b, f"m{i}") for i in range(10)]
    for wire in members:
        join(wire, "big")
    nodes.client(a, "elsewhere").send_json({"type": "join", "room": "only-a"})
    with Redis.from_url(redis_server.url) as redis:
        redis.config_resetstat()
        count = 50
        for n in range(count):
            members[0].send_json({"type": "publish", "room": "big", "data": n, "id": n})
        until(members[0], lambda m: m.get("type") == "ack" and m["id"] == count - 1)
        stats = redis.info("commandstats")
        scripts = stats.get("cmdstat_evalsha", {}).get("calls", 0) + stats.get(
            "cmdstat_eval", {}
        ).get("calls", 0)
        # at most one script per message (a run of messages to one room shares one),
        # whatever the room's size, and one channel message per script
        assert 0 < scripts <= count
        assert stats["cmdstat_publish"]["calls"] == scripts
        subscribers = [c for c in redis.client_list() if int(c["sub"]) > 0]
        assert len(subscribers) == 2  # one pub/sub connection per node
        channels = sorted(c.decode() for c in redis.pubsub_channels())
        assert channels == ["wshub:control", "wshub:{big}", "wshub:{only-a}"]
        assert redis.pubsub_numsub("wshub:{only-a}")[0][1] == 1  # only node a has a member


def test_processes_share_one_port_and_stop_together(redis_server: RedisServer) -> None:
    with HubProcess(f"--broker={redis_server.url}", "--processes=2") as server:
        wait_for(lambda: server.log().count("listening on") == 2, 10, what="both workers up")
        wires = [HubWire(server.port, f"c{n}") for n in range(24)]
        spread: dict[str, int] = {}
        for wire in wires:
            spread[wire.welcome["node"]] = spread.get(wire.welcome["node"], 0) + 1
        assert len(spread) == 2 and min(spread.values()) >= 4, spread
        for wire in wires:
            join(wire, "r")
        wires[0].send_json({"type": "publish", "room": "r", "data": "all"})
        for wire in wires[1:]:
            assert until(wire, lambda m: m["type"] == "message")["data"] == "all"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        for wire in wires:
            assert wire.ending().code == 1001


def test_8_through_nginx_clients_of_both_nodes_share_rooms(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    proxy = NginxProxy([a.port, b.port])
    try:
        wires = [HubWire(proxy.port, f"c{n}") for n in range(6)]
        nodes.wires.extend(wires)
        assert {w.welcome["node"] for w in wires} == {a.health()["node"], b.health()["node"]}
        for wire in wires:
            join(wire, "r")
        last = join(nodes.client(a, "direct"), "r")
        assert last["member_count"] == 7
        wires[0].send_json({"type": "publish", "room": "r", "data": "via nginx", "id": 1})
        for wire in wires:
            got = until(wire, lambda m: m["type"] == "message")
            assert (got["seq"], got["data"]) == (1, "via nginx")
        assert until(wires[0], lambda m: m["type"] == "ack")["seq"] == 1
    finally:
        proxy.stop()


def test_presence_limit_holds_for_the_room_over_all_nodes(nodes: Nodes) -> None:
    a, b = nodes.start("--presence_limit=2"), nodes.start("--presence_limit=2")
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    join(ann, "r")
    join(bob, "r")
    until(ann, lambda m: m["type"] == "presence")  # bob's join: within the limit
    carl = nodes.client(b, "carl")
    joined = join(carl, "r")
    assert joined["member_count"] == 3 and joined["members_truncated"] is True
    assert len(joined["members"]) == 2
    # ann (on the other node) is not told of carl one by one, but counted within ~1 s
    count = until(ann, lambda m: m["type"] == "presence", timeout=3)
    assert (count["event"], count["member_count"]) == ("count", 3)


@pytest.mark.parametrize("transport", ["tls", "unix"])
def test_nodes_share_rooms_over_rediss_and_unix_sockets(transport: str) -> None:
    redis = RedisServer(transport=transport)
    redis.start()
    nodes = Nodes(redis)
    try:
        a, b = nodes.start(), nodes.start()
        assert a.health()["broker"] == {"kind": "redis", "connected": True}
        ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
        join(ann, "r")
        join(bob, "r")
        ann.send_json({"type": "publish", "room": "r", "data": transport})
        assert until(bob, lambda m: m["type"] == "message")["data"] == transport
    finally:
        nodes.close()
        redis.stop()


def api(node: HubProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One backend API call to ``node`` (key ``k1``): (status, JSON answer)."""
    request = urllib.request.Request(
        node.url(path),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer k1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_backend_api_works_on_any_node_and_covers_all_nodes(nodes: Nodes) -> None:
    a, b = nodes.start("--api_key=k1"), nodes.start("--api_key=k1")
    ann, bob = nodes.client(a, "ann"), nodes.client(b, "bob")
    join(ann, "r")
    join(bob, "r")
    status, published = api(b, "POST", "/api/publish", {"room": "r", "data": "from b"})
    assert status == 200 and published["seq"] == 1
    got = until(ann, lambda m: m["type"] == "message")  # on the other node
    assert (got["from"], got["seq"], got["data"]) == ("server", 1, "from b")
    assert "client_id" not in got and "user" not in got
    assert api(a, "GET", "/api/rooms") == (200, {"rooms": [{"room": "r", "member_count": 2}]})
    status, room = api(a, "GET", "/api/rooms/r")
    assert status == 200 and room["epoch"] == published["epoch"] and room["seq"] == 1
    assert sorted(m["name"] for m in room["members"]) == ["ann", "bob"]
    status, history = api(a, "GET", "/api/rooms/r/history?since=0")
    assert status == 200 and [m["data"] for m in history["messages"]] == ["from b"]
    status, broadcast = api(a, "POST", "/api/broadcast", {"rooms": ["r", "user:x"], "data": 2})
    assert status == 200 and [r["seq"] for r in broadcast["results"]] == [2, 1]
    assert until(bob, lambda m: m["type"] == "message" and m["seq"] == 2)["data"] == 2
    assert api(b, "POST", "/api/disconnect", {"client_id": ann.client_id}) == (
        200,
        {"disconnected": 1},
    )
    assert ann.ending().code == 4005
    wait_for(lambda: len(api(a, "GET", "/api/stats")[1]["nodes"]) == 2, 5, what="both nodes")
    stats = api(a, "GET", "/api/stats")[1]
    assert sorted(n["node"] for n in stats["nodes"]) == sorted(
        [a.health()["node"], b.health()["node"]]
    )


def test_the_backend_api_answers_503_while_redis_is_down(
    nodes: Nodes, redis_server: RedisServer
) -> None:
    a = nodes.start("--api_key=k1")
    ann = nodes.client(a, "ann")
    join(ann, "r")
    redis_server.stop()
    wait_for(lambda: a.health()["status"] == "degraded", 5, what="degraded")
    status, answer = api(a, "POST", "/api/publish", {"room": "r", "data": "lost"})
    assert (status, answer["error"]["code"]) == (503, "unavailable")
    status, answer = api(a, "POST", "/api/disconnect", {"client_id": ann.client_id})
    assert (status, answer["error"]["code"]) == (503, "unavailable")
    status, stats = api(a, "GET", "/api/stats")  # this node's own numbers still come
    assert status == 200 and stats["status"] == "degraded" and stats["nodes"] == []
    assert stats["hub_connections"] == 1
    assert ann.still_open() == []  # nothing reached ann, and ann is still served
