"""The process-wide bound on history (MemoryBroker's ``memory_limit``): the least
recently used rooms lose their history first (no I/O)."""

from __future__ import annotations

from typing import Any

from hub.broker import JoinResult, MemoryBroker
from hub.history import Replay

MEMBER = {"client_id": "c1", "name": "ann"}


def join(
    b: MemoryBroker, room: str, member: dict[str, str], since: int | None = None, epoch: Any = None
) -> JoinResult:
    """The memory broker answers a join at once, through its callback."""
    results: list[JoinResult | None] = []
    b.join(room, member, since, epoch, results.append)
    assert results and results[0] is not None
    return results[0]


def replayed(b: MemoryBroker, room: str, since: int | None, epoch: str | None) -> Replay:
    """What ann, (re-)joining with ``since`` of ``epoch``, is replayed."""
    return join(b, room, MEMBER, since, epoch).replay


def publish(b: MemoryBroker, room: str, sender: dict[str, str], data: Any) -> int | None:
    seqs: list[int | None] = []
    b.publish(room, sender, data, False, lambda seq, error: seqs.append(seq))
    return seqs[0]


def broker(limit: int, per_room: int | None = None) -> MemoryBroker:
    return MemoryBroker(100, 300.0, history_bytes=per_room, memory_limit=limit)


def fill(b: MemoryBroker, room: str, count: int, size: int = 1000) -> None:
    for _ in range(count):
        publish(b, room, {"name": "ann"}, "x" * size)


def test_history_bytes_never_exceed_the_limit_and_the_least_recently_used_go() -> None:
    b = broker(limit=10_000)
    for room in ("a", "b", "c"):
        fill(b, room, 4)  # ~4.1 KB each
        assert b.stats()["history_bytes"] <= 10_000
    stats = b.stats()
    assert stats["history_rooms_evicted"] == 1
    assert stats["history_rooms"] == 2  # "a" had no members: forgotten
    assert replayed(b, "b", 4, join(b, "b", MEMBER).epoch).frames == []  # nothing missed
    assert len(replayed(b, "c", 0, None).frames) == 4


def test_using_a_room_keeps_its_history() -> None:
    b = broker(limit=10_000)
    fill(b, "a", 4)
    fill(b, "b", 4)
    replayed(b, "a", 0, None)  # "a" is now more recent than "b"
    fill(b, "c", 4)
    assert len(replayed(b, "a", 0, None).frames) == 4
    assert "b" not in b._histories


def test_a_forgotten_empty_room_comes_back_with_a_new_epoch() -> None:
    b = broker(limit=5_000)
    old = join(b, "a", MEMBER).epoch
    fill(b, "a", 3)
    b.leave("a", MEMBER)
    fill(b, "b", 4)
    fresh = join(b, "a", MEMBER)
    assert fresh.epoch != old and fresh.seq == 0
    assert replayed(b, "a", 3, old).gap


def test_a_room_with_members_keeps_its_numbering_and_reports_the_gap() -> None:
    b = broker(limit=5_000)
    epoch = join(b, "a", MEMBER).epoch
    fill(b, "a", 3)
    fill(b, "b", 4)
    replay = replayed(b, "a", 1, epoch)
    assert replay.gap and replay.frames == [] and replay.oldest_seq == 4
    assert publish(b, "a", {"name": "ann"}, "next") == 4


def test_one_room_alone_over_the_limit_loses_only_its_oldest_messages() -> None:
    b = broker(limit=5_000)
    fill(b, "a", 10)
    replay = replayed(b, "a", 0, None)
    assert replay.gap and 0 < len(replay.frames) < 10 and replay.oldest_seq > 1
    assert b.stats()["history_bytes"] <= 5_000 and b.stats()["history_rooms_evicted"] == 0


def test_expiry_returns_the_bytes() -> None:
    now = [0.0]
    b = MemoryBroker(100, 10.0, clock=lambda: now[0], memory_limit=1 << 20)
    join(b, "a", MEMBER)
    fill(b, "a", 3)
    b.leave("a", MEMBER)
    now[0] = 11.0
    assert b.expire(now[0]) == 1
    assert b.stats()["history_bytes"] == 0
