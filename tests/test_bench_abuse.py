"""Smoke test of the memory abuse scenarios of ``bench`` (bench/abuse_memory.py), small:
they run end to end against a real server and report what the docs quote.
No timing or memory assertions: figures depend on the machine."""

from __future__ import annotations

import asyncio

from bench import abuse_memory as abuse
from bench.progress import Progress
from bench.scenarios import Env
from bench.servers import OURS


def test_compressed_churn_reports_memory_and_the_canary() -> None:
    env = Env(progress=Progress(False))
    result = asyncio.run(abuse.compressed_churn(env, OURS, "churn", cycles=40, live=10))
    assert result["failed"] == 0 and result["connections_after"] == 1, result  # the canary
    assert result["canary_failure"] is None and result["canary_round_trips"] > 0, result
    for key in ("server_rss_peak_mb", "server_rss_after_mb", "canary_p99_ms"):
        assert result[key] is not None, key


def test_history_fill_reports_what_history_holds() -> None:
    env = Env(progress=Progress(False))
    result = asyncio.run(abuse.history_fill(env, OURS, "fill", rooms=3, per_room=5, size=60_000))
    assert result["canary_failure"] is None and result["canary_round_trips"] > 0, result
    assert 0 < result["history_mb"] <= 1.1 * result["offered_mb"], result  # frames: payload + JSON
    assert result["server_rss_peak_mb"] >= result["server_rss_before_mb"], result
