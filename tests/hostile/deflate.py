"""permessage-deflate payloads the way RFC 7692 frames them, for raw clients."""

from __future__ import annotations

import zlib

RSV1 = 4  # the "compressed" bit, as `Wire.send`'s rsv argument


def deflate(data: bytes) -> bytes:
    """One message compressed the RFC 7692 way (sync flush, tail removed), no context kept."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data: bytes) -> bytes:
    """A message the server compressed without context takeover."""
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
