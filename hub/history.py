"""One room's numbered, bounded message history (data and rules, no I/O).

Seq numbers count 1, 2, 3... without gaps inside one *epoch*; the epoch is a
fresh random id whenever numbering starts over, so a client never mistakes
seq numbers of another history for this one.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from itertools import islice


def new_epoch() -> str:
    """A random id naming one history of a room."""
    return secrets.token_hex(8)


@dataclass(slots=True, frozen=True)
class Replay:
    """What a joiner asking for ``since`` gets: the frames, and whether some were missed."""

    frames: list[bytes]
    gap: bool
    oldest_seq: int
    """Seq of the oldest message still held (last seq + 1 when none is)."""


class RoomHistory:
    """The last ``capacity`` framed messages of a room, by seq."""

    __slots__ = ("epoch", "seq", "_frames", "empty_since")

    def __init__(self, capacity: int) -> None:
        self.epoch: str = new_epoch()
        self.seq: int = 0  # last seq handed out; 0 for a fresh room
        self._frames: deque[bytes] = deque(maxlen=max(capacity, 0))
        self.empty_since: float | None = None  # when the last member left, for expiry

    @property
    def oldest_seq(self) -> int:
        return self.seq - len(self._frames) + 1

    def record(self, frame: bytes) -> int:
        """Keep the frame of message number ``seq + 1`` and return that seq."""
        self.seq += 1
        if self._frames.maxlen:
            self._frames.append(frame)
        return self.seq

    def replay(self, since: int | None, epoch: str | None) -> Replay:
        """Frames a client that saw up to ``since`` of ``epoch`` has missed.

        A gap is reported when the epoch differs or is missing, when ``since``
        is beyond the last seq, or when history no longer reaches back to it;
        the frames are then all that history still holds.
        """
        oldest = self.oldest_seq
        held = len(self._frames)
        if since is None:
            return Replay([], False, oldest)
        if epoch != self.epoch or since > self.seq or since < oldest - 1:
            return Replay(list(self._frames), True, oldest)
        skip = since - oldest + 1
        return Replay(list(islice(self._frames, skip, held)), False, oldest)
