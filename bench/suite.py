"""Named benchmark cases for the full and the ``--quick`` suites.

Sizes come from the issue: idle 10k/19k, fan-out 1k/10k, 1k subscribers with
10 stuck readers under a 1 KB flood, a handshake storm, and 10k subscribers at
a steady 10 messages/s. Message counts are chosen so that the textbook
baseline also finishes each case within about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STUCK_SERVER_ARGS = ["--send_buffer_limit=262144", "--max_message_size=1048576"]
"""Issue 10's server options for the stuck-reader cases (large messages, a tight limit)."""


@dataclass(frozen=True)
class Case:
    """One scenario with its parameters, run once per server."""

    name: str
    type: str  # key into scenarios/report: fanout | idle | slow | handshake | steady
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    # Consecutive fan-out/steady cases with the same group share one server and
    # one ramp-up of subscribers (joining a 10k room is the slowest part).
    group: str | None = None


def full_suite() -> list[Case]:
    return [
        Case(
            "idle-10k",
            "idle",
            "10,000 idle connections (upgraded, no room): server RSS growth per connection",
            {"connections": 10_000},
        ),
        Case(
            "idle-19k",
            "idle",
            "19,000 idle connections held by one server process (fd limit 20,000)",
            {"connections": 19_000},
        ),
        Case(
            "handshakes",
            "handshake",
            "10,000 upgrades to /ws (each closed after the 101), 2 client processes",
            {"total": 10_000},
        ),
        Case(
            "fanout-1k",
            "fanout",
            "1,000 subscribers in one room, 1,000 messages of ~100 B, ack window 32",
            {"subscribers": 1_000, "messages": 1_000},
        ),
        Case(
            "fanout-10k",
            "fanout",
            "10,000 subscribers in one room, 100 messages of ~100 B, ack window 32",
            {"subscribers": 10_000, "messages": 100},
            group="room-10k",
        ),
        Case(
            "steady-10k",
            "steady",
            "the same 10,000 subscribers, 10 messages/s for 20 s: end-to-end latency",
            {"subscribers": 10_000, "rate": 10.0, "seconds": 20.0},
            group="room-10k",
        ),
        Case(
            "slow-1k",
            "slow",
            "1,000 subscribers, 10 never read, up to 6,000 messages of 1 KB in at most 30 s"
            " (compared with the same run without stuck readers). 6 MB per stuck reader is"
            " more than the kernel's socket buffers (~4 MB) plus send_buffer_limit (1 MiB)",
            {"subscribers": 1_000, "stuck": 10, "messages": 6_000, "size": 1024, "max_seconds": 30},
        ),
        Case(
            "stuck-32k",
            "slow",
            "issue 10: 2 subscribers that read and 8 that never read (SO_RCVBUF 4096), 1,500"
            " messages of 32 KiB at most 8 ahead, send_buffer_limit 256 KiB (compared with the"
            " same run without the stuck readers: the ratio must stay >= 0.9)",
            {
                "subscribers": 10,
                "stuck": 8,
                "messages": 1_500,
                "size": 32 * 1024,
                "window": 8,
                "max_seconds": 60,
                "server_args": {"ours": STUCK_SERVER_ARGS},
            },
        ),
        Case(
            "ping-flood",
            "abuse",
            "issue 11.1: one connection sends 125-byte pings, 1,000 per write, never reading,"
            " up to 1,000,000 pings; a canary publishes and waits for its acks throughout",
            {"attack": "ping-flood", "batches": 1_000},
        ),
        Case(
            "big-resume",
            "abuse",
            "issue 11.4: a room holding 100 messages of 60 KB (history_bytes off, so all 6 MB"
            " are kept); a client with a 16 KiB receive window joins with since 0 and reads"
            " promptly; a canary throughout",
            {
                "attack": "big-resume",
                "messages": 100,
                "size": 60_000,
                "server_args": ["--history_bytes=0"],
            },
        ),
        *abuse_memory_cases(),
    ]


def abuse_memory_cases() -> list[Case]:
    """Issue 11's memory abuse (findings 3 and 6), against our server only."""
    return [
        Case(
            "churn-deflate",
            "churn-deflate",
            "--compression: 6,000 cycles of (offer permessage-deflate, a compressed message,"
            " FIN or RST), 8 at a time; then 500 live compressed connections",
            {"cycles": 6_000, "live": 500},
        ),
        Case(
            "history-fill",
            "history-fill",
            "one connection fills 30 rooms with 50 messages of 60 KB each (90 MB offered),"
            " each acked before the next, then leaves",
            {"rooms": 30, "per_room": 50, "size": 60_000},
        ),
    ]


def cluster_cases(quick: bool) -> list[Case]:
    """Scale-out cases (bench.cluster): each runs both configurations itself."""
    subscribers, published, storm = (200, 2_000, 500) if quick else (10_000, 20_000, 10_000)
    latency = 200 if quick else 2_000
    return [
        Case(
            "cluster-fanout",
            "cluster-fanout",
            f"{subscribers:,} subscribers split over 2 nodes on Redis vs all on 1 node (memory"
            " broker), 100 messages of ~100 B, ack window 32",
            {"subscribers": subscribers, "messages": 100},
        ),
        Case(
            "cluster-publish",
            "cluster-publish",
            f"{published:,} messages as fast as an ack window of 256 allows, one node through"
            " Redis vs the memory broker, to a 10-member room",
            {"members": 10, "messages": published, "window": 256},
        ),
        Case(
            "cluster-latency",
            "cluster-latency",
            f"{latency:,} subscribers split over 2 nodes on Redis vs all on 1 node (memory"
            " broker), 20 messages/s for 5 s from a publisher on the first node; every"
            " tenth subscriber times its deliveries",
            {"subscribers": latency, "rate": 20, "seconds": 5},
        ),
        Case(
            "join-storm",
            "join-storm",
            f"{storm:,} clients connect and join one room: 2 nodes on Redis vs 1 node (memory"
            " broker); presence_limit 1000",
            {"clients": storm},
        ),
    ]


def quick_suite() -> list[Case]:
    return [
        Case("idle-200", "idle", "200 idle connections (quick)", {"connections": 200}),
        Case("handshakes-500", "handshake", "500 upgrades to /ws (quick)", {"total": 500}),
        Case(
            "fanout-200",
            "fanout",
            "200 subscribers, 200 messages of ~100 B (quick)",
            {"subscribers": 200, "messages": 200},
            group="room-200",
        ),
        Case(
            "steady-200",
            "steady",
            "the same 200 subscribers, 10 messages/s for 2 s (quick)",
            {"subscribers": 200, "rate": 10.0, "seconds": 2.0},
            group="room-200",
        ),
        Case(
            "slow-200",
            "slow",
            "200 subscribers, 10 never read, 200 messages of 1 KB (quick)",
            {"subscribers": 200, "stuck": 10, "messages": 200, "size": 1024, "max_seconds": 20},
        ),
        Case(
            "ping-flood-quick",
            "abuse",
            "ping flood, up to 100,000 pings (quick)",
            {"attack": "ping-flood", "batches": 100},
        ),
        Case(
            "big-resume-quick",
            "abuse",
            "resume of 30 messages of 60 KB, history_bytes off (quick)",
            {
                "attack": "big-resume",
                "messages": 30,
                "size": 60_000,
                "server_args": ["--history_bytes=0"],
            },
        ),
    ]
