"""The outbox on its own, without the hub's rules: queues, casts, the flush and
the slow-consumer bound, driven by a hand scheduler and recording transports."""

from __future__ import annotations

from collections.abc import Callable

from hub.frames import frame
from hub.outbox import CLOSE_SLOW_CONSUMER, Outbox
from hub.peer import Peer
from hub.settings import HubSettings
from tests.hubkit import RecordingTransport


class Counters:
    slow_consumers_dropped = 0
    ephemeral_skipped = 0
    deliveries = 0
    bytes_sent = 0


class HandOutbox:
    """An `Outbox` over hand-made rooms; ``run`` is one loop iteration's callbacks."""

    def __init__(self, **settings: int) -> None:
        self.rooms: dict[str, dict[str, Peer]] = {}
        self.callbacks: list[Callable[[], None]] = []
        self.forgotten: list[Peer] = []
        self.counters = Counters()
        self.outbox = Outbox(
            HubSettings(**settings),
            self.rooms,
            self.counters,
            self.callbacks.append,
            lambda peer, close_code: self.forgotten.append(peer),
        )

    def member(self, room: str, name: str) -> Peer:
        peer = Peer(name, name, RecordingTransport())
        self.rooms.setdefault(room, {})[name] = peer
        peer.rooms.add(room)
        return peer

    def run(self) -> None:
        while self.callbacks:
            callbacks, self.callbacks[:] = list(self.callbacks), []
            for callback in callbacks:
                callback()


def payloads(peer: Peer) -> list[bytes]:
    return [p for _, p in peer.transport.frames()]


def test_a_lone_broadcast_is_one_cast_written_once_per_member() -> None:
    hand = HandOutbox()
    ann, bob = hand.member("r", "ann"), hand.member("r", "bob")
    hand.outbox.deliver("r", frame(b"hi"), None, False)
    assert hand.outbox.stats()["cast_pending"] == 1 and ann.out is None
    hand.run()
    assert payloads(ann) == payloads(bob) == [b"hi"]
    assert hand.outbox.stats() == {"queued_peers": 0, "cast_pending": 0, "pending_callbacks": 0}


def test_frames_to_one_peer_keep_their_order_around_a_cast_and_are_coalesced() -> None:
    hand = HandOutbox()
    ann, bob = hand.member("r", "ann"), hand.member("r", "bob")
    hand.outbox.deliver("r", frame(b"m1"), None, False)
    hand.outbox.send(ann, frame(b"ack"))  # pulls the cast into ann's queue first
    hand.outbox.deliver("r", frame(b"m2"), None, False)
    hand.run()
    assert payloads(ann) == [b"m1", b"ack", b"m2"] and len(ann.transport.writes) == 1
    assert payloads(bob) == [b"m1", b"m2"]


def test_joining_after_a_cast_skips_it_and_leaving_after_one_still_gets_it() -> None:
    hand = HandOutbox()
    ann = hand.member("r", "ann")
    hand.outbox.deliver("r", frame(b"before"), None, False)
    cid = hand.member("r", "cid")
    hand.outbox.joining(cid, "r")
    hand.outbox.leaving(ann, "r")
    del hand.rooms["r"]["ann"]
    hand.run()
    assert payloads(ann) == [b"before"] and payloads(cid) == []


def test_a_peer_over_the_limit_is_dropped_once_and_closed_at_the_flush() -> None:
    hand = HandOutbox(send_buffer_limit=1000)
    ann, bob = hand.member("r", "ann"), hand.member("r", "bob")
    bob.transport.stuck = True
    for _ in range(3):
        hand.outbox.deliver("r", frame(b"x" * 400), None, False)
        hand.run()
    assert bob.closed and hand.forgotten == [bob] and hand.counters.slow_consumers_dropped == 1
    assert bob.transport.closed_with == (CLOSE_SLOW_CONSUMER, "slow consumer", True)
    assert payloads(ann) == [b"x" * 400] * 3 and "bob" not in hand.rooms["r"]


def test_ephemeral_frames_skip_a_peer_whose_queue_is_past_the_lossy_threshold() -> None:
    hand = HandOutbox(lossy_threshold=500)
    ann, bob = hand.member("r", "ann"), hand.member("r", "bob")
    bob.transport.stuck = True
    hand.outbox.deliver("r", frame(b"x" * 600), None, False)
    hand.run()
    hand.outbox.deliver("r", frame(b"e"), None, True)
    hand.run()
    assert payloads(ann)[-1] == b"e" and payloads(bob) == [b"x" * 600]
    assert hand.counters.ephemeral_skipped == 1 and not bob.closed


def test_a_backfill_goes_out_as_the_socket_drains_and_what_follows_stays_behind() -> None:
    hand = HandOutbox(send_buffer_limit=1000)
    ann = hand.member("r", "ann")
    ann.transport.stuck = True
    history = [bytes([65 + i]) * 298 for i in range(10)]  # 3,000 bytes: 3x the limit
    hand.outbox.send_paced(ann, [frame(p) for p in history])
    hand.outbox.send(ann, frame(b"ack"))
    hand.run()
    assert len(payloads(ann)) == 2  # half the limit's worth, then it waits for a drain
    assert not ann.closed and hand.counters.slow_consumers_dropped == 0
    ann.transport.unstick()
    hand.run()
    assert payloads(ann) == [*history, b"ack"]


def test_what_is_sent_behind_a_backfill_counts_against_the_limit() -> None:
    hand = HandOutbox(send_buffer_limit=1000)
    ann = hand.member("r", "ann")
    ann.transport.stuck = True
    hand.outbox.send_paced(ann, [frame(b"h" * 298)] * 10)
    hand.run()
    for _ in range(4):  # 1,200 bytes of broadcasts while it does not read
        hand.outbox.deliver("r", frame(b"b" * 298), None, False)
        hand.run()
    assert ann.closed and hand.counters.slow_consumers_dropped == 1
