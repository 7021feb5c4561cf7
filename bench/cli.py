"""Command line: ``python -m bench [SCENARIO ...] [--quick] [--json PATH]``.

Runs each selected case against our server and the textbook baseline, one
after the other on a fresh server each, then prints side-by-side tables and
writes the JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import tornado

from bench import abuse, abuse_memory, cluster, scenarios
from bench.procstat import raise_nofile_limit
from bench.progress import Progress
from bench.report import render_markdown, render_text, to_json
from bench.servers import KINDS, REPO_ROOT
from bench.suite import Case, cluster_cases, full_suite, quick_suite

TYPES = (
    "idle",
    "fanout",
    "slow",
    "handshake",
    "steady",
    "abuse",
    "churn-deflate",
    "history-fill",
    *cluster.SCENARIOS,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "scenarios",
        nargs="*",
        default=["all"],
        help=f"any of {', '.join(TYPES)}, or a case name, or 'all'",
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes: every scenario in well under a minute"
    )
    p.add_argument(
        "--servers",
        default="ours,baseline",
        help="comma list of: ours, baseline, ours-handoff-off (ours on Tornado's public API),"
        " ours-tls (ours over wss://), ours-metrics-off (ours with --metrics=false)",
    )
    p.add_argument(
        "--json", default="bench-results.json", help="write the JSON report here ('-' = stdout)"
    )
    p.add_argument("--markdown", help="also write Markdown tables to this file")
    p.add_argument("--subscribers", type=int, help="override subscriber count (fanout/slow/steady)")
    p.add_argument("--messages", type=int, help="override message count (fanout/slow)")
    p.add_argument("--connections", type=int, help="override connection count (idle)")
    p.add_argument("--size", type=int, help="override message payload size in bytes")
    p.add_argument("--window", type=int, default=32, help="publisher's un-acked window")
    p.add_argument("--workers", type=int, help="load-generator processes (default: automatic)")
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin the server to the first core and the load generator to the others"
        " (only on an otherwise idle machine: pinning makes contention worse)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument(
        "--ours-dir",
        metavar="DIR",
        help="run 'ours' from another checkout (A/B test of a change; default: this one)",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="run servers under cProfile during each measured fan-out phase; write .prof files"
        " to DIR (CPU figures are then inflated by the profiler)",
    )
    p.add_argument(
        "--read-batch",
        type=int,
        default=32,
        help="steady cases: counting subscribers are woken once this many payloads' worth of"
        " bytes wait (SO_RCVLOWAT; a message frame is ~2x its payload, so about half as many"
        " messages), probes at every frame; 1 = every frame (default: 32)",
    )
    p.add_argument(
        "--perf",
        metavar="DIR",
        help="sample the server with `perf record -g` (kernel included) during each measured"
        " phase; write DIR/SERVER-CASE.data (read with `perf report -i`)",
    )
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="KIND:FLAG",
        help="extra flag for one server, e.g. ours:--send_buffer_limit=524288",
    )
    return p.parse_args(argv)


def select_cases(args: argparse.Namespace) -> list[Case]:
    cases = (quick_suite() if args.quick else full_suite()) + cluster_cases(args.quick)
    wanted = set(args.scenarios)
    if "all" not in wanted:
        cases = [c for c in cases if c.type in wanted or c.name in wanted]
    out = []
    for c in cases:
        params = dict(c.params)
        if args.subscribers and "subscribers" in params:
            params["subscribers"] = args.subscribers
        if args.messages and "messages" in params:
            params["messages"] = args.messages
        if args.connections and "connections" in params:
            params["connections"] = args.connections
        if args.size and c.type in ("fanout", "slow", "steady"):
            params["size"] = args.size
        out.append(Case(c.name, c.type, c.description, params, c.group))
    if not out:
        raise SystemExit(f"no case matches {sorted(wanted)}")
    return out


def phase_for(case: Case, window: int, read_batch: int) -> scenarios.Phase:
    """The publishing phase of a fan-out or steady case."""
    p = case.params
    if case.type == "steady":
        return scenarios.Phase(
            case.name,
            int(p["rate"] * p["seconds"]),
            p.get("size", 100),
            window,
            p["rate"],
            p["seconds"] + 10,
            read_batch,
        )
    return scenarios.Phase(
        case.name, p["messages"], p.get("size", 100), window, None, p.get("max_seconds", 60.0)
    )


async def run_group(
    env: scenarios.Env, cases: list[Case], kind: Any, window: int, read_batch: int = 1
) -> list[dict[str, Any]]:
    """Run one case, or several fan-out/steady cases sharing one ramp-up."""
    case = cases[0]
    p = case.params
    if case.type == "idle":
        return [await scenarios.idle(env, kind, case.name, p["connections"])]
    if case.type == "handshake":
        return [await scenarios.handshakes(env, kind, case.name, p["total"])]
    if case.type == "abuse":
        return [await abuse.abuse(env, kind, case.name, p)]
    if case.type in ("churn-deflate", "history-fill") and kind.name != "ours":
        return [{"not_applicable": "no compression or history in this server"}]
    if case.type == "churn-deflate":
        return [await abuse_memory.compressed_churn(env, kind, case.name, p["cycles"], p["live"])]
    if case.type == "history-fill":
        return [
            await abuse_memory.history_fill(
                env, kind, case.name, p["rooms"], p["per_room"], p.get("size", 60_000)
            )
        ]
    if case.type == "slow":
        return [
            await scenarios.slow_consumers(
                env,
                kind,
                case.name,
                p["subscribers"],
                p["stuck"],
                p["messages"],
                p.get("size", 1024),
                p.get("window", window),
                p.get("max_seconds", 60.0),
                p.get("server_args", {}).get(kind.name),
            )
        ]
    phases = [phase_for(c, window, read_batch) for c in cases]
    return await scenarios.fanout(env, kind, p["subscribers"], phases)


async def run_cluster_case(env: scenarios.Env, case: Case) -> dict[str, Any]:
    """A scale-out case: it runs both of its configurations itself (bench.cluster)."""
    why = cluster.available()
    if why is not None:
        env.progress.log(f"[{case.name}] skipped: {why}")
        runs: dict[str, Any] = {"ours": {"error": f"skipped: {why}"}, "baseline": {}}
    else:
        try:
            runs = await cluster.SCENARIOS[case.type](env, case.params)
        except Exception as exc:  # one failed case must not lose the others
            env.progress.log(f"[{case.name}] FAILED: {type(exc).__name__}: {exc}")
            runs = {"ours": {"error": f"{type(exc).__name__}: {exc}"}, "baseline": {}}
    return {
        "name": case.name,
        "type": case.type,
        "description": case.description,
        "params": case.params,
        "runs": runs,
    }


def grouped(cases: list[Case]) -> list[list[Case]]:
    """Consecutive cases with the same group (and subscriber count) run together."""
    out: list[list[Case]] = []
    for c in cases:
        prev = out[-1][0] if out else None
        if (
            prev is not None
            and c.group is not None
            and c.group == prev.group
            and c.params.get("subscribers") == prev.params.get("subscribers")
        ):
            out[-1].append(c)
        else:
            out.append([c])
    return out


async def run_all(args: argparse.Namespace, cases: list[Case]) -> list[dict[str, Any]]:
    ncpu = len(os.sched_getaffinity(0))
    env = scenarios.Env(
        workers=args.workers,
        progress=Progress(not args.no_progress),
        profile_dir=args.profile,
        perf_dir=args.perf,
    )
    if args.pin and ncpu >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        env.server_cpu, env.loadgen_cpus = cpus[0], cpus[1:]
        os.sched_setaffinity(0, set(env.loadgen_cpus))
    for spec in args.server_arg:
        name, _, flag = spec.partition(":")
        env.server_args.setdefault(name, []).append(flag)
    kinds = [KINDS[k.strip()] for k in args.servers.split(",") if k.strip()]
    if args.ours_dir:
        root = env.ours_root = Path(args.ours_dir).resolve()
        ours = [k.name for k in kinds if k.name.startswith("ours")]
        kinds = [dataclasses.replace(k, root=root) if k.name in ours else k for k in kinds]
    out = []
    for group in grouped(cases):
        if group[0].type in cluster.SCENARIOS:
            out.append(await run_cluster_case(env, group[0]))
            env.progress.log(render_text(out[-1:]))
            continue
        runs: list[dict[str, Any]] = [{} for _ in group]
        for kind in kinds:
            if not kind.available():
                env.progress.log(f"[{group[0].name}] skipping {kind.name}: server.py not found")
                continue
            try:
                results = await run_group(env, group, kind, args.window, args.read_batch)
            except Exception as exc:  # one failed case must not lose the others
                env.progress.log(
                    f"[{group[0].name} {kind.name}] FAILED: {type(exc).__name__}: {exc}"
                )
                results = [{"error": f"{type(exc).__name__}: {exc}"} for _ in group]
            for r, res in zip(runs, results, strict=True):
                r[kind.name] = res
        for case, r in zip(group, runs, strict=True):
            out.append(
                {
                    "name": case.name,
                    "type": case.type,
                    "description": case.description,
                    "params": case.params,
                    "runs": r,
                }
            )
            env.progress.log(render_text(out[-1:]))
    return out


def git_state() -> str:
    """Commit of the checkout under test, with "+dirty" when files are modified."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def meta(argv: list[str] | None) -> dict[str, Any]:
    return {
        "git": git_state(),
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "tornado": tornado.version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = meta(argv)  # the checkout as it was when the run started
    raise_nofile_limit()
    cases = select_cases(args)
    try:
        import uvloop

        results = uvloop.run(run_all(args, cases))
    except ImportError:
        results = asyncio.run(run_all(args, cases))
    print(render_text(results))
    if args.ours_dir:
        info["ours_dir"] = str(Path(args.ours_dir).resolve())
    doc = to_json(info, results)
    if args.json == "-":
        print(doc)
    elif args.json:
        with open(args.json, "w") as f:
            f.write(doc + "\n")
        print(f"\nJSON report written to {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(results))
    failed = [c["name"] for c in results for r in c["runs"].values() if "error" in r]
    return 1 if failed else 0
