"""Small statistics helpers (no numpy needed for a few million samples)."""

from __future__ import annotations

from array import array
from collections.abc import Iterable


def merge_latencies(chunks: Iterable[bytes]) -> array:
    """Concatenate the raw ``array('q')`` byte strings sent by workers."""
    out = array("q")
    for raw in chunks:
        out.frombytes(raw)
    return out


def percentile(sorted_values: array | list[int], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (None when empty)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, min(n, int(round(p / 100.0 * n + 0.5))))
    return float(sorted_values[rank - 1])


def latency_summary_ms(latencies_us: array) -> dict[str, float | int | None]:
    """p50/p99/max in milliseconds plus the sample count."""
    values = sorted(latencies_us)
    p50 = percentile(values, 50)
    p99 = percentile(values, 99)
    return {
        "samples": len(values),
        "p50_ms": None if p50 is None else p50 / 1000.0,
        "p99_ms": None if p99 is None else p99 / 1000.0,
        "max_ms": values[-1] / 1000.0 if values else None,
    }
