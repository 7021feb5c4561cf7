"""The process-wide bound on history (MemoryBroker's ``memory_limit``): the least
recently used rooms lose their history first (no I/O)."""

from __future__ import annotations

from hub.broker import MemoryBroker

MEMBER = {"client_id": "c1", "name": "ann"}


def broker(limit: int, per_room: int | None = None) -> MemoryBroker:
    return MemoryBroker(100, 300.0, history_bytes=per_room, memory_limit=limit)


def fill(b: MemoryBroker, room: str, count: int, size: int = 1000) -> None:
    for _ in range(count):
        b.publish(room, {"name": "ann"}, "x" * size, False)


def test_history_bytes_never_exceed_the_limit_and_the_least_recently_used_go() -> None:
    b = broker(limit=10_000)
    for room in ("a", "b", "c"):
        fill(b, room, 4)  # ~4.1 KB each
        assert b.stats()["history_bytes"] <= 10_000
    stats = b.stats()
    assert stats["history_rooms_evicted"] == 1
    assert stats["history_rooms"] == 2  # "a" had no members: forgotten
    assert b.replay("b", 4, b.join("b", MEMBER).epoch).frames == []  # nothing missed
    assert len(b.replay("c", 0, None).frames) == 4


def test_using_a_room_keeps_its_history() -> None:
    b = broker(limit=10_000)
    fill(b, "a", 4)
    fill(b, "b", 4)
    b.replay("a", 0, None)  # "a" is now more recent than "b"
    fill(b, "c", 4)
    assert len(b.replay("a", 0, None).frames) == 4
    assert "b" not in b._histories


def test_a_forgotten_empty_room_comes_back_with_a_new_epoch() -> None:
    b = broker(limit=5_000)
    old = b.join("a", MEMBER).epoch
    fill(b, "a", 3)
    b.leave("a", MEMBER)
    fill(b, "b", 4)
    fresh = b.join("a", MEMBER)
    assert fresh.epoch != old and fresh.seq == 0
    assert b.replay("a", 3, old).gap


def test_a_room_with_members_keeps_its_numbering_and_reports_the_gap() -> None:
    b = broker(limit=5_000)
    epoch = b.join("a", MEMBER).epoch
    fill(b, "a", 3)
    fill(b, "b", 4)
    replay = b.replay("a", 1, epoch)
    assert replay.gap and replay.frames == [] and replay.oldest_seq == 4
    assert b.publish("a", "ann", "next", False) == 4


def test_one_room_alone_over_the_limit_loses_only_its_oldest_messages() -> None:
    b = broker(limit=5_000)
    fill(b, "a", 10)
    replay = b.replay("a", 0, None)
    assert replay.gap and 0 < len(replay.frames) < 10 and replay.oldest_seq > 1
    assert b.stats()["history_bytes"] <= 5_000 and b.stats()["history_rooms_evicted"] == 0


def test_expiry_returns_the_bytes() -> None:
    now = [0.0]
    b = MemoryBroker(100, 10.0, clock=lambda: now[0], memory_limit=1 << 20)
    b.join("a", MEMBER)
    fill(b, "a", 3)
    b.leave("a", MEMBER)
    now[0] = 11.0
    assert b.expire(now[0]) == 1
    assert b.stats()["history_bytes"] == 0
