"""Render benchmark results as side-by-side tables (text) and JSON.

Each scenario's rows show ours, the baseline, and a gain factor oriented so
that > 1 always means "ours is better", next to the issue's target for ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One row of a comparison table."""

    key: str
    label: str
    better: str  # "higher" | "lower" | "" (informational)
    fmt: str = "{:,.1f}"
    target: str = ""  # the target for our server, shown verbatim
    limit: float | None = None  # numeric form of the target, when there is one

    def show(self, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, str):
            return value
        try:
            return self.fmt.format(value)
        except (TypeError, ValueError):
            return str(value)


def latency_metrics(
    fmt: str = "{:.1f}", scope: str = "", p99_target: tuple[str, float] | None = None
) -> list[Metric]:
    """The p50, p99 and max latency rows (``p99_target``: the p99's target and limit)."""
    target, limit = p99_target or ("", None)
    return [
        Metric("latency_p50_ms", f"latency p50 ms{scope}", "lower", fmt),
        Metric("latency_p99_ms", f"latency p99 ms{scope}", "lower", fmt, target, limit),
        Metric("latency_max_ms", "latency max ms", "lower", fmt),
    ]


FANOUT = [
    Metric("messages_sent", "messages sent", "", "{:,}"),
    Metric("deliveries_per_s", "deliveries/s", "higher", "{:,.0f}"),
    Metric(
        "server_cpu_us_per_delivery",
        "server CPU µs/delivery",
        "lower",
        "{:.2f}",
        "≤ 2 (1k), ≤ 3 (10k)",
    ),
    *latency_metrics(),
    Metric("lost", "lost (expected - received)", "", "{:,}", "0", 0),
    Metric("server_rss_growth_mb", "server RSS growth MB", "lower", "{:.1f}"),
    Metric("server_cpu_util", "server CPU util", "", "{:.0%}"),
    Metric("loadgen_cpu_util", "loadgen CPU util (all procs)", "", "{:.0%}"),
    Metric("other_processes_cpu_util", "other processes' CPU (cores)", "", "{:.2f}"),
    Metric("bottleneck", "bottleneck", ""),
    Metric("ramp_s", "ramp-up (connect + join) s", "lower", "{:.1f}"),
    Metric("ramp_server_cpu_us_per_join", "ramp-up server CPU µs/join", "lower", "{:,.0f}"),
]
IDLE = [
    Metric("held", "connections held", "higher", "{:,}", "19,000"),
    Metric("kb_per_connection", "server KB/idle connection", "lower", "{:.2f}", "≤ 8", 8.0),
    Metric("server_rss_after_mb", "server RSS MB", "lower", "{:.1f}"),
    Metric("ramp_conn_per_s", "ramp-up connections/s", "higher", "{:,.0f}"),
    Metric("ramp_server_cpu_us_per_conn", "server CPU µs/connection", "lower", "{:.0f}"),
    Metric("failed", "failed", "", "{:,}"),
]
HANDSHAKE = [
    Metric("handshakes", "handshakes", "", "{:,}"),
    Metric("handshakes_per_s", "handshakes/s", "higher", "{:,.0f}", "≥ 5,000"),
    Metric("server_cpu_us_per_handshake", "server CPU µs/handshake", "lower", "{:.0f}"),
    Metric("failed", "failed", "", "{:,}", "0", 0),
    Metric("server_cpu_util", "server CPU util", "", "{:.0%}"),
    Metric("loadgen_cpu_util", "loadgen CPU util (all procs)", "", "{:.0%}"),
    Metric("other_processes_cpu_util", "other processes' CPU (cores)", "", "{:.2f}"),
    Metric("bottleneck", "bottleneck", ""),
]
SLOW = [
    Metric("messages_sent", "messages sent", "", "{:,}"),
    Metric("per_member_msgs_per_s", "msgs/s per normal member", "higher", "{:,.0f}"),
    Metric(
        "normal_throughput_vs_no_stuck",
        "normal throughput vs no stuck",
        "higher",
        "{:.2f}",
        "≥ 0.90",
        0.9,
    ),
    Metric(
        "server_rss_growth_mb",
        "server RSS growth MB (peak)",
        "lower",
        "{:.1f}",
        "≤ 10 MiB + few MB",
    ),
    Metric("slow_consumers_dropped", "slow consumers dropped", "", "{}"),
    Metric("lost", "lost by normal members", "", "{:,}", "0", 0),
    Metric("server_cpu_us_per_delivery", "server CPU µs/delivery", "lower", "{:.2f}"),
    Metric("bottleneck", "bottleneck", ""),
]
STEADY = [
    Metric("messages_sent", "messages sent", "", "{:,}"),
    *latency_metrics(p99_target=("≤ 50", 50.0)),
    Metric("lost", "lost", "", "{:,}", "0", 0),
    Metric("server_cpu_us_per_delivery", "server CPU µs/delivery", "lower", "{:.2f}"),
    Metric("server_cpu_util", "server CPU util", "", "{:.0%}"),
]
CLUSTER_FANOUT = [
    Metric("messages_sent", "messages sent", "", "{:,}"),
    Metric("lost", "lost (expected - received)", "", "{:,}", "0", 0),
    Metric(
        "server_cpu_us_per_delivery",
        "server CPU µs/delivery (all nodes)",
        "lower",
        "{:.2f}",
        "≤ 1.3× one node",
    ),
    Metric(
        "remote_cpu_us_per_delivery",
        "... every subscriber on node 2 (Redis path alone)",
        "lower",
        "{:.2f}",
    ),
    Metric("redis_cpu_us_per_message", "Redis CPU µs/message", "", "{:.0f}"),
    Metric("deliveries_per_s", "deliveries/s", "higher", "{:,.0f}"),
    Metric("ramp_s", "ramp-up (connect + join) s", "lower", "{:.1f}"),
]
CLUSTER_PUBLISH = [
    Metric("acked", "messages acked", "", "{:,}"),
    Metric("messages_per_s", "messages/s", "higher", "{:,.0f}", "≥ 20,000 (Redis)"),
    Metric("server_cpu_us_per_message", "server CPU µs/message", "lower", "{:.1f}"),
    Metric("redis_cpu_us_per_message", "Redis CPU µs/message", "", "{:.1f}"),
]
CLUSTER_LATENCY = [
    Metric("messages_sent", "messages sent", "", "{:,}"),
    Metric("lost", "lost (expected - received)", "", "{:,}", "0", 0),
    Metric("latency_samples", "latency samples", "", "{:,}"),
    *latency_metrics("{:.2f}", " (all subscribers)"),
    Metric("latency_p50_ms_by_node", "... p50 ms per node (node 1 publishes)", "", "{}"),
    Metric("latency_p99_ms_by_node", "... p99 ms per node", "", "{}"),
]
JOIN_STORM = [
    Metric("clients", "clients", "", "{:,}"),
    Metric("join_storm_s", "seconds until all joined", "lower", "{:.2f}", "≤ 3 (1 node), ≤ 4 (2)"),
    Metric("joins_per_s", "joins/s", "higher", "{:,.0f}"),
    Metric("server_cpu_us_per_join", "server CPU µs/join (all nodes)", "lower", "{:.0f}"),
    Metric("loadgen_cpu_us_per_join", "load generator CPU µs/join", "lower", "{:.0f}"),
    Metric("loadgen_start_s", "load generator start-up s (before the clock)", "", "{:.2f}"),
    Metric("failed", "failed", "", "{:,}", "0", 0),
]
ABUSE = [
    Metric("attacker_end", "how the attacker was ended", ""),
    Metric("pings_sent", "pings the attacker got in", "", "{:,}"),
    Metric("replayed", "messages replayed to the resumer", "", "{:,}"),
    Metric("server_rss_peak_growth_mb", "server RSS growth MB (peak)", "lower", "{:.1f}"),
    Metric("server_rss_after_growth_mb", "server RSS growth MB (after)", "lower", "{:.1f}"),
    Metric("canary_p50_ms", "canary round trip p50 ms", "lower", "{:.1f}"),
    Metric("canary_p99_ms", "canary round trip p99 ms", "lower", "{:.1f}"),
    Metric("canary_max_ms", "canary round trip max ms", "lower", "{:.1f}"),
    Metric("slow_consumers_dropped", "slow consumers dropped", "", "{}"),
]
CHURN_DEFLATE = [
    Metric("cycles", "cycles", "", "{:,}"),
    Metric("server_rss_peak_mb", "server RSS peak MB", "lower", "{:.1f}"),
    Metric("server_rss_after_churn_mb", "server RSS after the churn MB", "lower", "{:.1f}"),
    Metric("kb_per_cycle_kept", "KB kept per cycle", "lower", "{:.2f}", "0"),
    Metric("kb_per_live_connection", "KB per live compressed connection", "lower", "{:.1f}"),
    Metric("server_rss_after_mb", "server RSS after all closed MB", "lower", "{:.1f}"),
    Metric("canary_p99_ms", "canary round trip p99 ms", "lower", "{:.1f}"),
    Metric("canary_max_ms", "canary round trip max ms", "lower", "{:.1f}"),
    Metric("server_cpu_us_per_cycle", "server CPU µs/cycle", "lower", "{:.0f}"),
    Metric("failed", "failed cycles", "", "{:,}", "0", 0),
]
HISTORY_FILL = [
    Metric("offered_mb", "history offered MB", "", "{:.1f}"),
    Metric("server_rss_peak_mb", "server RSS peak MB", "lower", "{:.1f}"),
    Metric("server_rss_after_mb", "server RSS after MB", "lower", "{:.1f}"),
    Metric("history_mb", "history held MB (/healthz)", "lower", "{:.1f}", "≤ 64"),
    Metric("canary_p99_ms", "canary round trip p99 ms", "lower", "{:.1f}"),
    Metric("canary_max_ms", "canary round trip max ms", "lower", "{:.1f}"),
]
METRICS = {
    "fanout": FANOUT,
    "idle": IDLE,
    "handshake": HANDSHAKE,
    "slow": SLOW,
    "steady": STEADY,
    "cluster-fanout": CLUSTER_FANOUT,
    "cluster-publish": CLUSTER_PUBLISH,
    "cluster-latency": CLUSTER_LATENCY,
    "join-storm": JOIN_STORM,
    "abuse": ABUSE,
    "churn-deflate": CHURN_DEFLATE,
    "history-fill": HISTORY_FILL,
}
COLUMNS = {
    "cluster-fanout": ("2 nodes, Redis", "1 node, memory"),
    "cluster-publish": ("via Redis", "memory broker"),
    "cluster-latency": ("2 nodes, Redis", "1 node, memory"),
    "join-storm": ("2 nodes, Redis", "1 node, memory"),
}
"""Column names of the cases that compare two configurations of ours, not ours
with the baseline; their last column is then the plain ratio first ÷ second."""


def _ratio(first: Any, second: Any) -> float | None:
    if isinstance(first, (int, float)) and isinstance(second, (int, float)) and second:
        return first / second
    return None


def columns(case: dict[str, Any]) -> tuple[str, str]:
    """The names of a case's two columns of figures."""
    return COLUMNS.get(case["type"], ("ours", reference(case)))


def gain(metric: Metric, ours: Any, base: Any) -> float | None:
    """Factor by which ours is better than the baseline (> 1 = better)."""
    if (
        not metric.better
        or not isinstance(ours, (int, float))
        or not isinstance(base, (int, float))
    ):
        return None
    if metric.better == "higher":
        return ours / base if base else None
    return base / ours if ours else None


def reference(case: dict[str, Any]) -> str:
    """What "ours" is compared with: the baseline, or else the other server run
    (``--servers=ours,ours-handoff-off`` shows what the hand-off buys)."""
    others = [name for name in case["runs"] if name != "ours"]
    return "baseline" if "baseline" in others or not others else others[0]


def compare(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of {metric, ours, baseline, gain, target} for one case ("baseline"
    holds the `reference` run's figures)."""
    rows = []
    ours, base = case["runs"].get("ours"), case["runs"].get(reference(case))
    ratio = case["type"] in COLUMNS
    for m in METRICS[case["type"]]:
        o = ours.get(m.key) if ours else None
        b = base.get(m.key) if base else None
        g = None if ratio else gain(m, o, b)
        rows.append(
            {
                "metric": m.label,
                "key": m.key,
                "ours": o,
                "baseline": b,
                "gain": (_ratio(o, b) if m.better else None) if ratio else g,
                "target": m.target,
                "ours_text": m.show(o) if ours else "n/a",
                "baseline_text": m.show(b) if base else "n/a",
            }
        )
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def render_text(cases: list[dict[str, Any]]) -> str:
    """All cases as plain-text tables."""
    out = []
    for case in cases:
        out.append(f"\n== {case['name']}: {case['description']}")
        rows = []
        for r in compare(case):
            g = f"{r['gain']:.2f}x" if r["gain"] else ""
            rows.append([r["metric"], r["ours_text"], r["baseline_text"], g, r["target"]])
        first, second = columns(case)
        last = "ratio" if case["type"] in COLUMNS else "gain"
        out.append(_table(["metric", first, second, last, "target"], rows))
        for server, run in case["runs"].items():
            if run.get("errors"):
                out.append(f"  {server} errors: {run['errors']}")
            if str(run.get("bottleneck", "")).startswith("LOADGEN"):
                out.append(f"  WARNING: the load generator was saturated in the {server} run")
    return "\n".join(out)


def render_markdown(cases: list[dict[str, Any]]) -> str:
    """All cases as Markdown tables (for docs/performance.md)."""
    out = []
    for case in cases:
        out.append(f"\n### {case['name']}\n\n{case['description']}\n")
        first, second = columns(case)
        last = "ratio" if case["type"] in COLUMNS else "gain"
        out.append(f"| metric | {first} | {second} | {last} | target |")
        out.append("|---|---:|---:|---:|---|")
        for r in compare(case):
            g = f"{r['gain']:.2f}×" if r["gain"] else ""
            out.append(
                f"| {r['metric']} | {r['ours_text']} | {r['baseline_text']} | {g} | {r['target']} |"
            )
    return "\n".join(out) + "\n"


def to_json(meta: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    """Machine-readable report: raw runs plus the comparison rows."""
    doc = {"meta": meta, "cases": [{**c, "comparison": compare(c)} for c in cases]}
    return json.dumps(doc, indent=2, default=str)
