"""Smoke test of ``python -m bench.abuse_http``: a small slow-request flood end to end.

Checks the report's structure and that the canary was served; no timing
assertions (the figures depend on the machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_slow_requests_scenario_reports_memory_descriptors_and_canary(tmp_path: Path) -> None:
    out = tmp_path / "abuse.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.abuse_http",
            "slow-requests",
            "--connections=300",
            "--hold=0.5",
            "--settle=0.5",
            f"--json={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads(out.read_text())
    assert run["scenario"] == "slow-requests"
    assert 0 < run["answered_503"] <= 300 - 256  # beyond --max_pending_per_ip's default
    assert run["answered_503"] + run["cut_by_server"] + run["still_open_after_hold"] == 300
    assert run["canary_round_trips"] > 0 and run["canary_timeouts"] == 0
    for key in ("peak_rss_mb", "rss_after_mb", "canary_p99_ms", "peak_fds", "fds_after"):
        assert run[key] is not None, key
