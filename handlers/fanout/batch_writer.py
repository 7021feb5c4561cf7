"""The hub's batch writer: one loop iteration's frames to their sockets.

`hub.outbox.Outbox.flush` hands over every peer with something queued and the bytes
for it. Written one by one from Python, each ``send()`` holds the GIL, and on
loopback about three quarters of its cost is kernel work, so a broadcast to
10,000 members keeps one core busy for ~50 ms while the other idles. Here,
every peer whose socket can take a direct send (``sink.fd >= 0``: a
handed-off connection whose asyncio transport holds nothing unsent) goes into one
``send_many`` call of the C helper `handlers.fanout._send_many`, which releases the GIL
and spreads the sends over ``threads`` threads. Others, and anything the
kernel did not take at once, go through the peer's sink (`hub.peer.Sink`) as
before, which buffers it and reports the backlog the hub bounds.
"""

from __future__ import annotations

import logging
import os

from hub.outbox import write_each
from hub.peer import BatchWrite, Peer

try:
    from handlers.fanout._send_many import send_many
except ImportError:  # built without a C compiler: the sinks only
    send_many = None

log = logging.getLogger("wshub.batch_writer")

SMALL_BATCH = 4
"""Below this many peers a C call buys nothing: write through the sinks."""


def default_threads() -> int:
    """One sending thread per core, at most 4 (beyond that the loopback stack contends)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def make_batch_writer(threads: int) -> BatchWrite:
    """A batch writer using ``threads`` threads; 0 (or no C helper) = the sinks only."""
    if threads <= 0:
        return write_each
    if send_many is None:
        log.warning("handlers.fanout._send_many is not built: writing through the transports")
        return write_each
    return DirectBatchWriter(threads)


def describe_writer(writer: BatchWrite) -> str:
    """For the start-up log line: how fan-out writes are made."""
    if isinstance(writer, DirectBatchWriter):
        return f"fan-out sends on {writer.threads} thread(s) without the GIL"
    return "fan-out sends through the event loop's transports"


class DirectBatchWriter:
    """Direct sends without the GIL where the socket allows, the sinks elsewhere."""

    __slots__ = ("threads",)

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __call__(self, peers: list[Peer], datas: list[bytes]) -> list[tuple[int, int]]:
        if len(peers) < SMALL_BATCH:
            return write_each(peers, datas)
        # fd -1 (Tornado's stream, a backlog, closing) is skipped by send_many and
        # comes back as "0 bytes sent": its sink then writes it all.
        fds = [peer.sink.fd for peer in peers]
        left: list[tuple[int, int]] = []
        for i, sent in send_many(fds, datas, self.threads):
            # Not all taken (or an error, which the sink meets again and reports).
            data = datas[i]
            backlog = peers[i].sink.write(data[sent:] if sent > 0 else data)
            if backlog:
                left.append((i, backlog))
        return left
