"""One room's numbered, bounded message history (data and rules, no I/O).

Seq numbers count 1, 2, 3... without gaps inside one *epoch*; the epoch is a
fresh random id whenever numbering starts over, so a client never mistakes
seq numbers of another history for this one.

History is bounded twice: by message count (``capacity``) and by the bytes of
the frames it holds (``max_bytes``), oldest messages going first. A count alone
let 100 messages of 64 KB each hold 6.4 MB per room.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Sequence
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


def replay_of(
    held: Sequence[bytes], epoch: str, seq: int, since: int | None, client_epoch: str | None
) -> Replay:
    """What a client that saw up to ``since`` of ``client_epoch`` has missed, of the
    messages ``held`` (the last ones of ``epoch``, up to ``seq``); every broker's rule.

    A gap is reported when the epoch differs or is missing, when ``since``
    is beyond the last seq, or when history no longer reaches back to it;
    the frames are then all that is held. ``since: 0`` without an epoch asks
    for everything there is: a gap only when history no longer starts at seq 1.
    """
    oldest = seq - len(held) + 1
    if since is None:
        return Replay([], False, oldest)
    if since == 0 and client_epoch is None:
        return Replay(list(held), oldest > 1, oldest)
    if client_epoch != epoch or since > seq or since < oldest - 1:
        return Replay(list(held), True, oldest)
    return Replay(list(islice(held, since - oldest + 1, None)), False, oldest)


class RoomHistory:
    """The last ``capacity`` framed messages of a room, by seq, within ``max_bytes``."""

    __slots__ = ("epoch", "seq", "_frames", "empty_since", "capacity", "max_bytes", "bytes")

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.epoch: str = new_epoch()
        self.seq: int = 0  # last seq handed out; 0 for a fresh room
        self.capacity = max(capacity, 0)
        self.max_bytes = max_bytes  # None: bounded by count only
        self.bytes = 0  # frame bytes held
        self._frames: deque[bytes] = deque()
        self.empty_since: float | None = None  # when the last member left, for expiry

    @property
    def oldest_seq(self) -> int:
        return self.seq - len(self._frames) + 1

    def record(self, frame: bytes) -> int:
        """Keep the frame of message number ``seq + 1`` and return that seq.

        Older frames go until both bounds hold again; a frame bigger than
        ``max_bytes`` on its own is numbered but not kept.
        """
        self.seq += 1
        if self.capacity:
            self._frames.append(frame)
            self.bytes += len(frame)
            limit = self.max_bytes
            while len(self._frames) > self.capacity or (limit is not None and self.bytes > limit):
                self.drop_oldest()
        return self.seq

    def drop_oldest(self) -> int:
        """Forget the oldest frame held; return the bytes freed (0 when none is)."""
        if not self._frames:
            return 0
        size = len(self._frames.popleft())
        self.bytes -= size
        return size

    def forget_frames(self) -> int:
        """Drop every frame but keep numbering (members still count on it); return bytes freed.

        Resumes from before now see ``history_gap``: history no longer reaches back.
        """
        freed = self.bytes
        self._frames.clear()
        self.bytes = 0
        return freed

    def replay(self, since: int | None, epoch: str | None) -> Replay:
        """Frames a client that saw up to ``since`` of ``epoch`` has missed (`replay_of`)."""
        return replay_of(self._frames, self.epoch, self.seq, since, epoch)
