"""Room history: seq numbering, bounded retention, epochs and gaps (no I/O)."""

from hub.history import RoomHistory


def filled(capacity: int, count: int) -> RoomHistory:
    history = RoomHistory(capacity)
    for n in range(1, count + 1):
        assert history.record(f"m{n}".encode()) == n
    return history


def test_replay_returns_exactly_what_was_missed() -> None:
    history = filled(10, 5)
    replay = history.replay(2, history.epoch)
    assert replay.frames == [b"m3", b"m4", b"m5"] and not replay.gap


def test_up_to_date_client_gets_nothing_and_no_gap() -> None:
    history = filled(10, 5)
    replay = history.replay(5, history.epoch)
    assert replay.frames == [] and not replay.gap


def test_history_is_bounded_and_reports_a_gap_past_it() -> None:
    history = filled(3, 10)
    assert history.oldest_seq == 8
    assert history.replay(7, history.epoch).frames == [b"m8", b"m9", b"m10"]
    replay = history.replay(6, history.epoch)
    assert replay.gap and replay.frames == [b"m8", b"m9", b"m10"] and replay.oldest_seq == 8


def test_other_or_missing_epoch_is_a_gap() -> None:
    history = filled(10, 4)
    for epoch in ("another", None):
        replay = history.replay(2, epoch)
        assert replay.gap and len(replay.frames) == 4


def test_since_beyond_last_seq_is_a_gap() -> None:
    history = filled(10, 4)
    assert history.replay(9, history.epoch).gap


def test_each_history_gets_its_own_epoch() -> None:
    assert RoomHistory(1).epoch != RoomHistory(1).epoch


def test_zero_capacity_keeps_counting() -> None:
    history = filled(0, 3)
    assert history.seq == 3
    replay = history.replay(2, history.epoch)
    assert replay.gap and replay.frames == [] and replay.oldest_seq == 4


def test_history_is_bounded_by_bytes_too() -> None:
    history = RoomHistory(100, max_bytes=10)
    for _ in range(7):
        history.record(b"abcd")  # 4 bytes each: two fit in 10
    assert history.bytes == 8 and history.oldest_seq == 6
    replay = history.replay(5, history.epoch)
    assert replay.frames == [b"abcd", b"abcd"] and not replay.gap


def test_a_frame_bigger_than_the_byte_bound_is_numbered_not_kept() -> None:
    history = RoomHistory(100, max_bytes=10)
    history.record(b"small")
    assert history.record(b"x" * 11) == 2
    assert history.bytes == 0 and history.oldest_seq == 3


def test_since_zero_without_epoch_asks_for_everything_there_is() -> None:
    """A first join with since 0: a gap only when history no longer starts at seq 1."""
    full = filled(10, 4)
    replay = full.replay(0, None)
    assert replay.frames == [b"m1", b"m2", b"m3", b"m4"] and not replay.gap
    assert not RoomHistory(10).replay(0, None).gap  # a fresh room
    trimmed = filled(3, 5)
    replay = trimmed.replay(0, None)
    assert replay.gap and replay.frames == [b"m3", b"m4", b"m5"] and replay.oldest_seq == 3


def test_since_zero_with_an_epoch_keeps_the_epoch_rules() -> None:
    history = filled(10, 4)
    assert history.replay(0, "another").gap
    assert not history.replay(0, history.epoch).gap
