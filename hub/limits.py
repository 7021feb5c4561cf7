"""Per-connection abuse limits that need state: the message-rate token bucket."""

from __future__ import annotations

PARSE_SECONDS_PER_TOKEN = 0.001
"""A message's own token covers this much parsing; each further such slice
costs one more token. Ordinary messages parse in well under it (60 KB of small
integers: ~0.9 ms), so only input that is costly to parse pays more, and a
client cannot spend more than about rate_limit ms of parsing per second.
"""


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

    def charge(self, cost: float) -> None:
        """Spend ``cost`` more tokens for work the message caused beyond its own
        token (the balance may go negative: later messages wait for the refill)."""
        self.tokens = max(self.tokens - cost, -self.burst)
