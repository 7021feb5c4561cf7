"""What the hub counts for /healthz, /api/stats and /metrics, free of I/O.

The counters themselves are plain ints and dicts in `hub.hub.HubCounters`,
moved by the hub and its outbox once per event or once per broadcast, never
once per member. This module holds the small helpers they share: telling a
room message from a presence event, counting by key, and timing broadcasts
for the ``wshub_broadcast_duration_seconds`` histogram.
"""

from __future__ import annotations

from collections.abc import Callable

CLOSE_ABNORMAL = 1006
"""The close code recorded for a connection that ended without a close frame
(RFC 6455 7.1.5): the client vanished, or the TCP connection broke."""
CLOSE_NO_STATUS = 1005
"""The close code recorded for a close frame that carried no code."""

_MESSAGE_MARK = b'{"type":"message"'
_MARK_END = 10 + len(_MESSAGE_MARK)
"""A frame's header is 2, 4 or 10 bytes; the payload's first key comes right after."""


def is_message(frame: bytes) -> bool:
    """Whether ``frame`` (a framed server event) is a room message, durable or
    ephemeral; presence events and counts are not. Looks at 27 bytes at most."""
    return frame.find(_MESSAGE_MARK, 2, _MARK_END) != -1


def count(by_key: dict[str, int], key: str, amount: int = 1) -> None:
    """Add ``amount`` to ``by_key[key]``."""
    by_key[key] = by_key.get(key, 0) + amount


Observe = Callable[[float], None]


class BroadcastTimer:
    """Times each broadcast from the publish arriving to the end of the flush that
    wrote it to this node's members (`Observe` gets the seconds, once per broadcast).

    The hub notes when a publish arrived (`arrived`); the outbox calls `started`
    when it queues a room message to local members, which takes that time (a
    message from another node, through a shared broker, starts there and then),
    and `flushed` after its writes.
    """

    __slots__ = ("clock", "observe", "_arrival", "_starts")

    def __init__(self, clock: Callable[[], float], observe: Observe) -> None:
        self.clock = clock
        self.observe = observe
        self._arrival: float | None = None  # the publish being handled now
        self._starts: list[float] = []  # broadcasts queued and not yet flushed

    def arrived(self, at: float | None) -> None:
        """A publish that arrived at ``at`` is handed to the broker now (None: done)."""
        self._arrival = at

    def started(self) -> None:
        """A room message is queued to its local members now."""
        arrival = self._arrival
        self._starts.append(self.clock() if arrival is None else arrival)

    def flushed(self) -> None:
        """Every broadcast started so far has been written: observe each."""
        starts = self._starts
        if starts:
            self._starts = []
            now = self.clock()
            observe = self.observe
            for start in starts:
                observe(now - start)
