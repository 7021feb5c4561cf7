"""The hub's rules driven by hand, without sockets: membership, presence,
publish, acks, resume, coalescing, slow consumers, heartbeats, limits."""

import json
from typing import Any

import pytest

from hub import protocol
from hub.broker import MemoryBroker
from hub.frames import frame
from hub.hub import (
    BATCH_BYTES,
    CLOSE_PING_TIMEOUT,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TRY_AGAIN_LATER,
)
from hub.peer import ECHO, Peer
from tests.hubkit import HandHub, RecordingSink


def test_join_answers_with_members_and_tells_the_others() -> None:
    hand = HandHub()
    ann, bob = hand.connect("ann"), hand.connect("bob")
    hand.say(ann, type="join", room="r")
    [joined] = hand.say(bob, type="join", room="r")
    assert joined["type"] == "joined" and joined["seq"] == 0 and joined["epoch"]
    assert [m["name"] for m in joined["members"]] == ["ann", "bob"]
    assert ann.sink.take() == [
        {
            "type": "presence",
            "room": "r",
            "event": "join",
            "member": {"client_id": bob.client_id, "name": "bob"},
        }
    ]


def test_joining_twice_answers_joined_without_a_second_presence() -> None:
    hand = HandHub()
    ann, bob = hand.connect("ann"), hand.connect("bob")
    hand.say(ann, type="join", room="r")
    hand.say(bob, type="join", room="r")
    ann.sink.take()
    [again] = hand.say(bob, type="join", room="r")
    assert again["type"] == "joined" and len(again["members"]) == 2
    assert ann.sink.take() == []
    assert len(hand.hub.rooms["r"]) == 2


def test_publish_reaches_every_member_with_consecutive_seqs_and_acks() -> None:
    hand = HandHub()
    ann, bob = hand.members("r", "ann", "bob")
    eve = hand.connect("eve")
    got = hand.say(bob, type="publish", room="r", data={"n": 1}, id="a")
    got += hand.say(bob, type="publish", room="r", data={"n": 2})
    assert [m["type"] for m in got] == ["message", "ack", "message"]
    assert [m.get("seq") for m in got] == [1, 1, 2]
    assert got[0]["from"] == "bob" and got[1]["id"] == "a"
    assert [m["seq"] for m in ann.sink.take()] == [1, 2]
    assert eve.sink.take() == []


def test_publishing_outside_a_room_is_not_joined_and_consumes_no_seq() -> None:
    hand = HandHub()
    ann = hand.connect("ann")
    [error] = hand.say(ann, type="publish", room="r", data=1, id=9)
    assert error["code"] == "not_joined" and error["id"] == 9
    hand.say(ann, type="join", room="r")
    got = hand.say(ann, type="publish", room="r", data=1)
    assert got[0]["seq"] == 1


def test_nameless_client_is_shown_by_client_id() -> None:
    hand = HandHub()
    anon = hand.connect(None)
    hand.say(anon, type="join", room="r")
    [message] = hand.say(anon, type="publish", room="r", data=0)
    assert message["from"] == anon.client_id


def test_leave_and_not_joined() -> None:
    hand = HandHub()
    ann, bob = hand.connect("ann"), hand.connect("bob")
    hand.say(ann, type="join", room="r")
    hand.say(bob, type="join", room="r")
    ann.sink.take()
    assert hand.say(bob, type="leave", room="r") == [{"type": "left", "room": "r"}]
    [presence] = ann.sink.take()
    assert presence["event"] == "leave" and presence["member"]["name"] == "bob"
    [error] = hand.say(bob, type="leave", room="r")
    assert error["code"] == "not_joined"


def test_resume_replays_missed_messages_in_order_before_new_ones() -> None:
    hand = HandHub()
    ann, bob = hand.connect("ann"), hand.connect("bob")
    [joined] = hand.say(ann, type="join", room="r")
    for n in range(5):
        hand.say(ann, type="publish", room="r", data=n)
    got = hand.say(bob, type="join", room="r", since=2, epoch=joined["epoch"])
    assert [m["type"] for m in got] == ["joined", "message", "message", "message"]
    assert got[0]["seq"] == 5 and [m["seq"] for m in got[1:]] == [3, 4, 5]


def test_resume_with_a_stale_epoch_reports_the_gap_then_all_history() -> None:
    hand = HandHub(history_size=3)
    ann, bob = hand.connect("ann"), hand.connect("bob")
    hand.say(ann, type="join", room="r")
    for n in range(5):
        hand.say(ann, type="publish", room="r", data=n)
    got = hand.say(bob, type="join", room="r", since=2, epoch="old-epoch")
    assert got[1]["code"] == "history_gap" and got[1]["oldest_seq"] == 3
    assert got[1]["epoch"] == got[0]["epoch"] and got[1]["room"] == "r"
    assert [m["seq"] for m in got[2:]] == [3, 4, 5]


def test_empty_room_is_forgotten_but_history_outlives_it_until_the_ttl() -> None:
    hand = HandHub(history_ttl=60, ping_interval=1000)
    ann = hand.connect("ann")
    [joined] = hand.say(ann, type="join", room="r")
    hand.say(ann, type="publish", room="r", data="kept")
    hand.say(ann, type="leave", room="r")
    assert "r" not in hand.hub.rooms
    hand.now += 30
    hand.hub.sweep()
    got = hand.say(ann, type="join", room="r", since=0, epoch=joined["epoch"])
    assert got[0]["epoch"] == joined["epoch"] and got[1]["data"] == "kept"
    hand.say(ann, type="leave", room="r")
    hand.now += 61
    hand.hub.sweep()
    assert hand.hub.broker.stats()["history_rooms"] == 0
    [fresh] = hand.say(ann, type="join", room="r")
    assert fresh["epoch"] != joined["epoch"] and fresh["seq"] == 0


def test_a_burst_is_coalesced_into_one_write_per_member() -> None:
    hand = HandHub()
    peers = hand.members("r", "p0", "p1", "p2")
    for n in range(10):
        hand.hub.handle_text(peers[0], json.dumps({"type": "publish", "room": "r", "data": n}))
    hand.run()
    for peer in peers:
        assert len(peer.sink.writes) == 1
        assert [m["seq"] for m in peer.sink.messages()] == list(range(1, 11))


def test_a_broadcast_frame_is_encoded_once_and_shared() -> None:
    hand = HandHub()
    peers = hand.members("r", "p0", "p1", "p2")
    hand.hub.handle_text(peers[0], '{"type":"publish","room":"r","data":1}')
    hand.run()  # alone in its loop iteration: written whole to the room
    written = [peer.sink.writes[-1] for peer in peers]
    assert all(frame is written[0] for frame in written)
    hand.hub.handle_text(peers[0], '{"type":"publish","room":"r","data":2}')
    hand.hub.handle_text(peers[0], '{"type":"publish","room":"r","data":3}')
    queued = [peer.out for peer in peers]  # two in one iteration: queued per member
    assert all(len(q) == 2 and q[0] is queued[0][0] and q[1] is queued[0][1] for q in queued)


@pytest.mark.parametrize("others", [0, 30], ids=["small-room", "big-room"])
def test_a_lone_broadcast_is_one_cast_and_what_follows_keeps_its_order(others: int) -> None:
    # In a big room the few members taken out of the cast are left out by
    # another path (a copy of the member dict) than in a small one.
    hand = HandHub()
    ann, bob, cy, *rest = hand.members("r", "ann", "bob", "cy", *(f"o{i}" for i in range(others)))
    hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": 1, "id": 7}))
    assert hand.hub.stats()["cast_pending"] == 1
    assert bob.out is None and ann.out is not None  # only the publisher, for its ack
    hand.hub.enqueue(bob, protocol.encode({"type": "note"}))  # pulls bob out of the cast
    hand.run()
    assert [m["type"] for m in ann.sink.take()] == ["message", "ack"]
    assert [m["type"] for m in bob.sink.take()] == ["message", "note"]
    for peer in (cy, *rest):
        assert [(m["type"], m["seq"]) for m in peer.sink.take()] == [("message", 1)]
    assert hand.hub.stats()["cast_pending"] == 0


def test_a_second_broadcast_in_the_iteration_expands_the_cast_in_order() -> None:
    hand = HandHub()
    ann, bob = hand.members("r", "ann", "bob")
    for n in (1, 2):
        hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": n}))
    hand.run()
    assert len(bob.sink.writes) == 1  # both frames in one write
    assert [m["data"] for m in bob.sink.take()] == [1, 2]


def test_joins_and_leaves_after_a_cast_see_exactly_what_was_sent_while_members() -> None:
    hand = HandHub()
    ann, bob = hand.members("r", "ann", "bob")
    late = hand.connect("late")
    hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": "before"}))
    hand.hub.handle_text(late, json.dumps({"type": "join", "room": "r"}))  # same iteration
    hand.hub.handle_text(bob, json.dumps({"type": "leave", "room": "r"}))
    hand.run()
    got_late = late.sink.take()
    # Nothing from before it joined (joined says seq 1 is past), then bob leaving.
    assert [(m["type"], m.get("event")) for m in got_late] == [
        ("joined", None),
        ("presence", "leave"),
    ]
    assert got_late[0]["seq"] == 1
    assert [m["type"] for m in bob.sink.take()] == ["message", "presence", "left"]
    assert [m["type"] for m in ann.sink.take()] == ["message", "presence", "presence"]


def test_a_member_leaving_right_after_a_cast_still_gets_it() -> None:
    hand = HandHub()
    ann, bob = hand.members("r", "ann", "bob")
    hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": "bye"}))
    hand.hub.handle_text(bob, json.dumps({"type": "leave", "room": "r"}))
    hand.run()
    assert [m["type"] for m in bob.sink.take()] == ["message", "left"]


class PresenceLaterBroker(MemoryBroker):
    """Announces joins later, as a broker in another process would (never, here)."""

    def join(self, room: str, member: dict[str, str], *args: Any) -> None:
        deliver, self._deliver = self._deliver, lambda *args: None
        try:
            super().join(room, member, *args)
        finally:
            self._deliver = deliver


def test_a_member_joining_right_after_a_cast_does_not_get_it() -> None:
    hand = HandHub(broker=PresenceLaterBroker(100, 300.0))
    ann, bob = hand.members("r", "ann", "bob")
    late = hand.connect("late")
    hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": "before"}))
    hand.hub.handle_text(late, json.dumps({"type": "join", "room": "r"}))
    hand.run()
    assert [m["type"] for m in late.sink.take()] == ["joined"]
    assert [m["data"] for m in bob.sink.take()] == ["before"]


def test_acks_keep_their_place_when_a_cast_is_expanded() -> None:
    hand = HandHub()
    ann, bob = hand.members("r", "ann", "bob")
    for n in (1, 2):
        hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": n, "id": n}))
    hand.run()
    got = [(m["type"], m.get("seq")) for m in ann.sink.take()]
    assert got == [("message", 1), ("ack", 1), ("message", 2), ("ack", 2)]


def test_a_member_closed_after_a_cast_gets_it_before_the_close_frame() -> None:
    hand = HandHub()
    ann, bob = hand.members("r", "ann", "bob")
    hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": "last"}))
    hand.hub.disconnect(bob, 1001, "going away")
    assert [m["data"] for m in bob.sink.take()] == ["last"]
    assert bob.sink.closed_with == (1001, "going away", False)
    hand.run()
    assert bob.sink.writes == []


def test_a_cast_reaches_a_member_with_a_backlog_through_its_queue_and_drops_it_at_the_limit() -> (
    None
):
    hand = HandHub(send_buffer_limit=2000, rate_limit=0)
    ann, bob, stuck = hand.members("r", "ann", "bob", "stuck")
    stuck.sink.stuck = True
    for n in range(40):  # one per iteration: every broadcast is a cast
        hand.say(ann, type="publish", room="r", data=f"{n:03d}" + "x" * 97)
        assert stuck.sink.queued <= 2000 + 200
    assert stuck.sink.closed_with == (CLOSE_SLOW_CONSUMER, "slow consumer", True)
    got = [m["seq"] for m in bob.sink.take() if m["type"] == "message"]
    assert got == list(range(1, 41))


@pytest.mark.parametrize("burst", [False, True], ids=["cast", "queued"])
def test_a_member_whose_socket_drained_since_its_last_write_is_not_dropped(burst: bool) -> None:
    hand = HandHub(send_buffer_limit=2000, rate_limit=0)
    ann, bob = hand.members("r", "ann", "bob")
    bob.sink.stuck = True
    hand.say(ann, type="publish", room="r", data="x" * 1500)
    assert bob.backlog > 1500  # its socket took none of it
    bob.sink.stuck, bob.sink.queued = False, 0  # drained, with nothing written since
    for data in ("y" * 300, "z" * 300) if burst else ("y" * 600,):
        hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": data}))
    hand.run()  # the cached backlog plus these would pass the limit; the socket's would not
    assert bob.sink.closed_with is None
    got = [m["data"][0] for m in bob.sink.take() if m["type"] == "message"]
    assert got == (["x", "y", "z"] if burst else ["x", "y"])
    assert hand.hub.counters.slow_consumers_dropped == 0


def test_a_big_flush_is_written_in_batches_of_bounded_size() -> None:
    hand = HandHub(rate_limit=0)
    held: list[int] = []
    write_each = hand.hub.write_batch

    def recording(peers: list[Peer], datas: list[bytes]) -> list[tuple[int, int]]:
        held.append(sum(map(len, datas)))
        return write_each(peers, datas)

    hand.hub.write_batch = recording
    members = hand.members("r", *(f"m{i}" for i in range(300)))
    held.clear()
    for n in range(10):  # ten 1 KB broadcasts in one iteration: 10 KB per member
        hand.hub.handle_text(
            members[0], json.dumps({"type": "publish", "room": "r", "data": "z" * 1000 + str(n)})
        )
    hand.run()
    assert sum(held) > 3 * BATCH_BYTES and len(held) >= 4  # ~3.2 MB: several batches
    assert max(held) <= BATCH_BYTES + 11_000  # a batch stops once it holds the limit
    assert all(len([m for m in p.sink.take() if m["type"] == "message"]) == 10 for p in members)


def test_slow_consumer_is_dropped_and_the_others_keep_receiving() -> None:
    hand = HandHub(send_buffer_limit=4096, rate_limit=0)
    ann, bob, stuck = hand.members("r", "ann", "bob", "stuck")
    stuck.sink.stuck = True
    for n in range(100):
        hand.say(ann, type="publish", room="r", data="x" * 100 + str(n))
    assert stuck.sink.closed_with == (CLOSE_SLOW_CONSUMER, "slow consumer", True)
    assert stuck.closed and stuck.client_id not in hand.hub.peers
    assert hand.hub.counters.slow_consumers_dropped == 1
    assert stuck.sink.queued <= 4096 + 200
    got = [m for m in bob.sink.take() if m["type"] == "message"]
    assert [m["seq"] for m in got] == list(range(1, 101))


def test_a_burst_bigger_than_the_limit_drops_only_a_member_whose_socket_refuses_it() -> None:
    hand = HandHub(send_buffer_limit=1000, rate_limit=0)
    ann, bob, stuck = hand.members("r", "ann", "bob", "stuck")
    stuck.sink.stuck = True
    for _ in range(20):  # ~2,000 bytes to each member within one iteration
        hand.hub.handle_text(ann, json.dumps({"type": "publish", "room": "r", "data": "y" * 80}))
    assert stuck.closed and not bob.closed and not ann.closed
    assert stuck.sink.queued <= 1000 + 200  # offered once past the limit, then judged
    hand.run()
    assert len([m for m in bob.sink.take() if m["type"] == "message"]) == 20
    assert hand.hub.counters.slow_consumers_dropped == 1


def test_heartbeat_pings_then_evicts_the_silent_with_presence_leave() -> None:
    hand = HandHub(ping_interval=10, ping_timeout=5)
    ann, bob = hand.members("r", "ann", "bob")
    hand.hub.sweep()
    hand.run()
    assert (0x9, b"") in bob.sink.frames()
    hand.now += 10
    ann.last_seen = hand.now  # ann answered, bob did not
    hand.hub.sweep()
    hand.now += 5.5
    hand.hub.sweep()
    hand.run()
    assert bob.sink.closed_with == (CLOSE_PING_TIMEOUT, "ping timeout", True)
    assert hand.hub.counters.stale_evicted == 1
    assert [m["event"] for m in ann.sink.take() if m["type"] == "presence"] == ["leave"]
    assert ann.sink.closed_with is None


def test_capacity_guard_never_exceeds_the_limit() -> None:
    hand = HandHub(max_connections=2)
    hand.connect(), hand.connect(kind=ECHO)
    extra = Peer("x", None, RecordingSink())
    assert hand.hub.register(extra)[0] == CLOSE_TRY_AGAIN_LATER
    assert len(hand.hub.peers) == 2 and hand.hub.counters.rejected_at_capacity == 1


def test_per_ip_cap() -> None:
    hand = HandHub(max_connections_per_ip=2)
    hand.connect(ip="10.0.0.1"), hand.connect(ip="10.0.0.1")
    assert hand.hub.register(Peer("x", None, RecordingSink(), ip="10.0.0.1"))[0] == 1008
    hand.connect(ip="10.0.0.2")
    assert hand.hub.counters.rejected_per_ip == 1


def test_rate_limit_errors_then_closes_when_it_persists() -> None:
    hand = HandHub(rate_limit=1, rate_burst=3)
    ann = hand.connect("ann")
    codes = []
    for _ in range(8):
        codes += [m.get("code") for m in hand.say(ann, type="leave", room="r")]
    assert codes[:3] == ["not_joined"] * 3 and codes[3:] == ["rate_limited"] * 3
    assert ann.sink.closed_with == (CLOSE_POLICY, "rate limit exceeded", False)
    hand.now += 10  # tokens come back with time for a well-behaved client
    bob = hand.connect("bob")
    assert hand.say(bob, type="leave", room="r")[0]["code"] == "not_joined"


def test_rooms_per_connection_cap() -> None:
    hand = HandHub(max_rooms_per_connection=2)
    ann = hand.connect("ann")
    hand.say(ann, type="join", room="a")
    hand.say(ann, type="join", room="b")
    [error] = hand.say(ann, type="join", room="c")
    assert error["code"] == "too_many_rooms"
    assert hand.say(ann, type="join", room="a")[0]["type"] == "joined"


def test_ephemeral_gets_no_seq_no_history_and_skips_filling_members() -> None:
    hand = HandHub(lossy_threshold=100)
    ann, bob, busy = hand.members("r", "ann", "bob", "busy")
    busy.sink.stuck, busy.sink.queued, busy.backlog = True, 500, 500
    got = hand.say(ann, type="publish", room="r", data={"x": 1}, ephemeral=True, id=1)
    assert got[0]["ephemeral"] is True and "seq" not in got[0]
    assert got[1] == {"type": "ack", "id": 1}
    assert bob.sink.take()[0]["data"] == {"x": 1}
    assert busy.sink.take() == [] and hand.hub.counters.ephemeral_skipped == 1
    [after] = hand.say(ann, type="publish", room="r", data=2)
    assert after["seq"] == 1


def test_unregister_leaves_no_trace() -> None:
    hand = HandHub()
    peers = [hand.connect(f"p{i}") for i in range(5)]
    for i, peer in enumerate(peers):
        hand.say(peer, type="join", room=f"r{i % 2}")
        hand.say(peer, type="publish", room=f"r{i % 2}", data=i)
    for peer in peers:
        hand.hub.unregister(peer)
        hand.hub.unregister(peer)  # idempotent
    hand.run()
    assert hand.hub.peers == {} and hand.hub.rooms == {} and hand.hub._per_ip == {}
    assert hand.hub.stats()["memberships"] == 0


def test_binary_on_ws_is_bad_request() -> None:
    hand = HandHub()
    ann = hand.connect("ann")
    hand.hub.handle_binary(ann)
    hand.run()
    assert ann.sink.take()[0]["code"] == "bad_request"


def test_pings_past_the_ping_rate_get_no_pong_and_a_flood_is_closed_with_1008() -> None:
    hand = HandHub(ping_rate_limit=10)
    ann = hand.connect("ann")
    pong = frame(b"p", 0xA)
    for _ in range(60):
        hand.hub.ping(ann, pong)
    hand.run()
    assert [op for op, _ in ann.sink.frames()].count(0xA) == 50  # the burst
    assert not ann.closed
    for _ in range(60):
        hand.hub.ping(ann, pong)
    assert ann.sink.closed_with == (CLOSE_POLICY, "ping rate exceeded", True)
    assert hand.hub.counters.closed_for_ping_rate == 1
