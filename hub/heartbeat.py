"""The hub-level timers: pings, stale eviction and history expiry; presence counts."""

from __future__ import annotations

from tornado.ioloop import PeriodicCallback

from hub.hub import Hub

COUNT_INTERVAL = 1.0
"""Seconds between presence count events of a room over the presence limit."""


class Heartbeat:
    """Runs `Hub.sweep` often enough to evict within a fraction of ping_timeout.

    The tick is half the shorter of ping_interval and ping_timeout, so a dead
    connection is closed at most that long after its deadline; pings still go
    out only every ping_interval (the hub tracks when the next is due).
    """

    def __init__(self, hub: Hub) -> None:
        settings = hub.settings
        tick = min(settings.ping_interval, settings.ping_timeout) / 2
        self.callback = PeriodicCallback(hub.sweep, max(tick, 0.01) * 1000)
        self.counts = PeriodicCallback(hub.announce_counts, COUNT_INTERVAL * 1000)

    def start(self) -> None:
        self.callback.start()
        self.counts.start()

    def stop(self) -> None:
        self.callback.stop()
        self.counts.stop()
