"""What permessage-deflate (RFC 7692) may cost per connection, and how we negotiate it.

zlib's state is large next to a connection's Python objects: a compressor
holds ``2**(window_bits + 2) + 2**(mem_level + 9)`` bytes (256 KiB at zlib's
defaults), a decompressor ``2**window_bits`` bytes plus ~7 KiB. Kept for a
connection's whole life, that is most of what an idle compressed connection
costs. So by default the server compresses each message on its own
(``server_no_context_takeover``, which RFC 7692 lets a server announce
unasked): its compressor lives only while one message is being compressed.
The client's window, which the server must keep to inflate what the client
sends, is capped at ``window_bits`` when the client lets us
(``client_max_window_bits`` in its offer, as browsers send it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPTIONS_KEY = "wshub_deflate"
"""Where the settings ride in Tornado's compression options dict (Tornado ignores the key)."""


@dataclass(frozen=True, slots=True)
class DeflateSettings:
    level: int = 1
    """zlib level: 1 compresses small real-time messages nearly as well as 6 for a
    fraction of the CPU (the Autobahn 12.x/13.x runs take half the time)."""
    mem_level: int = 5
    """zlib memLevel (1-9): the hash table and output buffer; 8 (zlib's default) makes a
    fresh compressor cost ~26 µs against ~4 µs at 5, for the same output on small messages."""
    window_bits: int = 12
    """Largest LZ77 window (9-15) the server compresses with and asks of clients: 4 KiB."""
    context_takeover: bool = False
    """Keep the server's compressor between messages: better ratios on repetitive
    streams, at ``2**(window_bits + 2) + 2**(mem_level + 9)`` bytes held per connection."""

    def __post_init__(self) -> None:
        if not 0 <= self.level <= 9:
            raise ValueError(f"compression_level {self.level} is not in 0-9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError(f"compression_mem_level {self.mem_level} is not in 1-9")
        if not 9 <= self.window_bits <= 15:
            raise ValueError(f"compression_window_bits {self.window_bits} is not in 9-15")

    def tornado_options(self) -> dict[str, Any]:
        """The dict `WebSocketHandler.get_compression_options` returns."""
        return {"compression_level": self.level, "mem_level": self.mem_level, OPTIONS_KEY: self}

    def accept(self, offer: dict[str, str | None]) -> dict[str, str | None]:
        """The parameters of our answer to an acceptable offer (see RFC 7692 section 7.1).

        Tornado echoes them and builds its compressors from them, so capping
        them here is what bounds the zlib state it creates.
        """
        agreed = dict(offer)
        if not self.context_takeover:
            agreed["server_no_context_takeover"] = None
        if "server_max_window_bits" in offer:
            agreed["server_max_window_bits"] = str(self._capped(offer["server_max_window_bits"]))
        if "client_max_window_bits" in offer:  # only then may the answer name it
            agreed["client_max_window_bits"] = str(self._capped(offer["client_max_window_bits"]))
        return agreed

    def _capped(self, offered: str | None) -> int:
        return min(int(offered), self.window_bits) if offered else self.window_bits

    def compressor_bytes(self) -> int:
        """zlib's deflate state for one compressor with these settings (zlib.h's formula)."""
        return (1 << (self.window_bits + 2)) + (1 << (self.mem_level + 9))


def settings_in(compression_options: dict[str, Any] | None) -> DeflateSettings | None:
    """The settings `DeflateSettings.tornado_options` put into Tornado's options, if any."""
    return (compression_options or {}).get(OPTIONS_KEY)
