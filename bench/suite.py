"""Named benchmark cases for the full and the ``--quick`` suites.

Sizes come from the issue: idle 10k/19k, fan-out 1k/10k, 1k subscribers with
10 stuck readers under a 1 KB flood, a handshake storm, and 10k subscribers at
a steady 10 messages/s. Message counts are chosen so that the textbook
baseline also finishes each case within about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    """One scenario with its parameters, run once per server."""

    name: str
    type: str  # key into scenarios/report: fanout | idle | slow | handshake | steady
    description: str
    params: dict[str, Any] = field(default_factory=dict)


def full_suite() -> list[Case]:
    return [
        Case(
            "idle-10k",
            "idle",
            "10,000 idle connections: server RSS growth per connection",
            {"connections": 10_000},
        ),
        Case(
            "idle-19k",
            "idle",
            "19,000 idle connections held by one server process",
            {"connections": 19_000},
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
            "10,000 subscribers in one room, 150 messages of ~100 B, ack window 32",
            {"subscribers": 10_000, "messages": 150},
        ),
        Case(
            "slow-1k",
            "slow",
            "1,000 subscribers, 10 never read, 2,000 messages of 1 KB (compared with 0 stuck)",
            {"subscribers": 1_000, "stuck": 10, "messages": 2_000, "size": 1024, "max_seconds": 45},
        ),
        Case(
            "handshakes",
            "handshake",
            "10,000 WebSocket upgrades to /ws, 2 client processes",
            {"total": 10_000},
        ),
        Case(
            "steady-10k",
            "steady",
            "10,000 subscribers, 10 messages/s for 20 s: end-to-end latency",
            {"subscribers": 10_000, "rate": 10.0, "seconds": 20.0},
        ),
    ]


def quick_suite() -> list[Case]:
    return [
        Case("idle-200", "idle", "200 idle connections (quick)", {"connections": 200}),
        Case(
            "fanout-200",
            "fanout",
            "200 subscribers, 200 messages of ~100 B (quick)",
            {"subscribers": 200, "messages": 200},
        ),
        Case(
            "slow-200",
            "slow",
            "200 subscribers, 10 never read, 200 messages of 1 KB (quick)",
            {"subscribers": 200, "stuck": 10, "messages": 200, "size": 1024, "max_seconds": 20},
        ),
        Case("handshakes-500", "handshake", "500 WebSocket upgrades (quick)", {"total": 500}),
        Case(
            "steady-200",
            "steady",
            "200 subscribers, 10 messages/s for 2 s (quick)",
            {"subscribers": 200, "rate": 10.0, "seconds": 2.0},
        ),
    ]
