"""Smoke test of the benchmark suite: ``python -m bench --quick`` end to end.

Runs every scenario small against our server and the textbook baseline and
checks the report's structure and that well-behaved clients lost nothing.
Deliberately no timing assertions: numbers depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK_CASES = {
    "idle-200",
    "handshakes-500",
    "fanout-200",
    "steady-200",
    "slow-200",
    "ping-flood-quick",
    "big-resume-quick",
}
CLUSTER_CASES = {"cluster-fanout", "cluster-publish", "cluster-latency", "join-storm"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-progress", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_report_has_every_case_for_both_servers(report: dict) -> None:
    assert {"command", "python", "tornado"} <= set(report["meta"])
    names = {c["name"] for c in report["cases"]}
    assert names == QUICK_CASES | CLUSTER_CASES
    for case in report["cases"]:
        assert set(case["runs"]) == {"ours", "baseline"}, case["name"]
        if case["name"] in CLUSTER_CASES and "redis-server is missing" in str(case["runs"]):
            continue  # skipped, saying so (CI installs redis-server)
        for server, run in case["runs"].items():
            assert "error" not in run, (case["name"], server, run.get("error"))
        assert case["comparison"], case["name"]
        for row in case["comparison"]:
            assert {"metric", "ours", "baseline", "gain", "target"} <= set(row)


def runs(report: dict, case_type: str) -> list[tuple[str, dict]]:
    return [
        (f"{c['name']}/{server}", run)
        for c in report["cases"]
        if c["type"] == case_type
        for server, run in c["runs"].items()
    ]


@pytest.mark.parametrize("case_type", ["fanout", "steady", "slow"])
def test_no_loss_for_well_behaved_subscribers(report: dict, case_type: str) -> None:
    for name, run in runs(report, case_type):
        assert run["messages_sent"] > 0, name
        assert run["expected"] == (run["subscribers"] - run["stuck"]) * run["messages_sent"], name
        assert run["lost"] == 0, (name, run["errors"])
        assert run["closed_during_run"] == 0, name
        assert run["latency_samples"] > 0, name
        assert run["server_cpu_us_per_delivery"] is None or run["server_cpu_us_per_delivery"] >= 0


def test_slow_case_compares_with_a_clean_run(report: dict) -> None:
    for name, run in runs(report, "slow"):
        assert run["stuck"] == 10, name
        assert run["without_stuck"]["lost"] == 0, name
        assert run["normal_throughput_vs_no_stuck"] is not None, name


def test_idle_connections_are_all_held(report: dict) -> None:
    for name, run in runs(report, "idle"):
        assert run["held"] == run["connections"], (name, run["errors"])
        assert run["kb_per_connection"] is not None, name


def test_handshakes_all_succeed(report: dict) -> None:
    for name, run in runs(report, "handshake"):
        assert run["handshakes"] == run["attempted"], (name, run["errors"])
        assert run["handshakes_per_s"] > 0, name


def test_cluster_cases_compare_two_nodes_on_redis_with_one_node(report: dict) -> None:
    for case in report["cases"]:
        if case["name"] not in CLUSTER_CASES:
            continue
        cluster, single = case["runs"]["ours"], case["runs"]["baseline"]
        if "redis-server is missing" in str(cluster.get("error", "")):
            pytest.skip("redis-server is missing (apt-get install redis-server)")
        if case["type"] == "cluster-fanout":
            assert cluster["nodes"] == 2 and single["nodes"] == 1
            assert cluster["lost"] == single["lost"] == 0
            assert cluster["redis_cpu_us_per_message"] is not None
        elif case["type"] == "cluster-publish":
            assert cluster["acked"] == single["acked"] == case["params"]["messages"]
        elif case["type"] == "cluster-latency":
            # Every tenth subscriber timed every message, on each node.
            probes = case["params"]["subscribers"] // 10
            for run in (cluster, single):
                assert run["lost"] == 0
                assert run["latency_samples"] == probes * run["messages_sent"] > 0
            assert len(cluster["latency_p99_ms_by_node"]) == 2
            assert None not in cluster["latency_p99_ms_by_node"]
        else:
            assert cluster["failed"] == single["failed"] == 0
            assert cluster["memberships_on_node_1"] + 0 < case["params"]["clients"]  # split


def test_abuse_cases_report_memory_and_the_canary(report: dict) -> None:
    for name, run in runs(report, "abuse"):
        if name.endswith("/baseline"):
            assert "note" in run, name  # ours only
            continue
        assert run["canary_round_trips"] > 0 and run["canary_p99_ms"] is not None, name
        assert run["server_rss_peak_growth_mb"] is not None, name
        assert run["slow_consumers_dropped"] == 0, name
    (flood,) = [run for name, run in runs(report, "abuse") if name == "ping-flood-quick/ours"]
    assert flood["attacker_end"].startswith("close 1008"), flood
    (resume,) = [run for name, run in runs(report, "abuse") if name == "big-resume-quick/ours"]
    assert resume["replayed"] == resume["of"], resume
