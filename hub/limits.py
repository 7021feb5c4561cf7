"""Per-connection abuse limits that need state: the message-rate token bucket."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` messages per second on average and bursts of ``burst``.

    ``strikes`` counts refusals in a row; the hub closes a connection whose
    strikes pass the burst size, since such a client is not backing off.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "strikes")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now
        self.strikes = 0

    def take(self, now: float) -> bool:
        """Spend one token if there is one; refill by elapsed time first."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.strikes = 0
            return True
        self.strikes += 1
        return False
