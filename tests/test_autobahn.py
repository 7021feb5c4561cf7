"""Autobahn TestSuite conformance of /ws/echo, driven by ``kosoku`` (fuzzingclient mode).

Two runs against a real ``server.py`` process:

* default options (compression off): every case but 12.x/13.x, plus 12.1.1,
  which must come back UNIMPLEMENTED (compression is opt-in);
* ``--compression``: the whole suite, including the permessage-deflate cases
  12.x and 13.x.

Every case must pass (OK, NON-STRICT or INFORMATIONAL; never FAILED). The
counts by result are printed and written to reports/autobahn/summary.json;
the HTML/JSON reports are in reports/autobahn/<run>-<random>/ (git-ignored;
the path is printed).

Run standalone to print the Markdown summary for docs/conformance.md:
``python tests/test_autobahn.py``. ``AUTOBAHN_QUICK=1`` skips the slow
large-message compression cases (12.x.9-18, 13.x.9-18) for local iteration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.hostile.proc import REPO, HubProcess

REPORTS = os.path.join(REPO, "reports", "autobahn")
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
# Autobahn 9.x sends messages of up to 16 MiB and reads the echo back at its pace;
# the hub's pings would show up as unexpected events in the timed cases.
SERVER_ARGS = (
    "--max_message_size=16777216",
    "--send_buffer_limit=67108864",
    "--ping_interval=3600",
    "--ping_timeout=3600",
)
KOSOKU_TIMEOUT = 1200.0
QUICK = os.environ.get("AUTOBAHN_QUICK") == "1"


@dataclass
class Run:
    name: str
    server_args: tuple[str, ...]
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    expect_unimplemented: set[str] = field(default_factory=set)


PLAIN = Run(
    "plain",
    SERVER_ARGS,
    exclude=["12.*", "13.*"],
)
PLAIN_NO_DEFLATE = Run(
    "plain-no-deflate", SERVER_ARGS, include=["12.1.1"], expect_unimplemented={"12.1.1"}
)
COMPRESSION = Run(
    "compression",
    (*SERVER_ARGS, "--compression"),
    exclude=[f"{c}.*.{n}" for c in (12, 13) for n in range(9, 19)] if QUICK else [],
)


@dataclass
class Outcome:
    run: Run
    cases: dict[str, dict]
    seconds: float
    exit_code: int
    outdir: str

    def counts(self) -> Counter[str]:
        return Counter(case["behavior"] for case in self.cases.values())

    def close_counts(self) -> Counter[str]:
        return Counter(case["behaviorClose"] for case in self.cases.values())

    def failures(self) -> list[str]:
        bad = []
        for case_id, case in sorted(self.cases.items(), key=lambda kv: _case_key(kv[0])):
            if case_id in self.run.expect_unimplemented:
                ok = case["behavior"] == "UNIMPLEMENTED"
            else:
                ok = case["behavior"] in PASSING and case["behaviorClose"] in PASSING_CLOSE
            if not ok:
                bad.append(f"{case_id}: {case['behavior']} / {case['behaviorClose']}")
        return bad

    def summary(self) -> dict:
        return {
            "cases": len(self.cases),
            "behavior": dict(sorted(self.counts().items())),
            "behaviorClose": dict(sorted(self.close_counts().items())),
            "seconds": round(self.seconds, 1),
        }


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def kosoku_command() -> list[str]:
    script = shutil.which("kosoku") or os.path.join(os.path.dirname(sys.executable), "kosoku")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from kosoku._cli import main; main()"]


def run_suite(run: Run, parallelism: int = 2) -> Outcome:
    """Start the server, drive kosoku at its /ws/echo, read the report."""
    # A fresh directory per run: two runs in one checkout must not clobber each other.
    os.makedirs(REPORTS, exist_ok=True)
    outdir = tempfile.mkdtemp(prefix=f"{run.name}-", dir=REPORTS)
    server = HubProcess(*run.server_args)
    try:
        command = [*kosoku_command(), "-p", str(parallelism), "-o", outdir]
        for case in run.include:
            command += ["-i", case]
        for case in run.exclude:
            command += ["-x", case]
        command.append(f"ws://127.0.0.1:{server.port}/ws/echo")
        started = time.monotonic()
        done = subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=KOSOKU_TIMEOUT,
        )
        seconds = time.monotonic() - started
        assert server.alive(), "server died during the run:\n" + server.log()[-5000:]
        errors = server.errors()
    finally:
        server.stop()
    index_file = os.path.join(outdir, "index.json")
    assert os.path.exists(index_file), f"kosoku wrote no report:\n{done.stdout}\n{done.stderr}"
    with open(index_file) as f:
        index = json.load(f)
    assert len(index) == 1, f"expected one agent in the report, got {list(index)}"
    cases = next(iter(index.values()))
    assert not errors, "server logged errors during the run:\n" + "".join(errors[:50])
    return Outcome(run, cases, seconds, done.returncode, outdir)


def record(outcome: Outcome) -> None:
    """Print the counts and merge them into reports/autobahn/summary.json."""
    summary = outcome.summary()
    print(f"\nAutobahn [{outcome.run.name}]: {json.dumps(summary)}  report: {outcome.outdir}")
    path = os.path.join(REPORTS, "summary.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    data[outcome.run.name] = summary
    os.makedirs(REPORTS, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


@pytest.mark.parametrize("run", [PLAIN, PLAIN_NO_DEFLATE, COMPRESSION], ids=lambda r: r.name)
def test_autobahn(run: Run) -> None:
    outcome = run_suite(run)
    record(outcome)
    failures = outcome.failures()
    assert not failures, f"{len(failures)} cases did not pass:\n" + "\n".join(failures)
    assert outcome.cases, "no case ran"
    if not run.expect_unimplemented:
        assert outcome.exit_code == 0, "kosoku reported a failure"


def markdown(outcomes: list[Outcome]) -> str:
    """The summary table for docs/conformance.md and the README."""
    results = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    lines = [
        "| run | cases | " + " | ".join(results) + " | time |",
        "|---|---:|" + "---:|" * len(results) + "---:|",
    ]
    for outcome in outcomes:
        counts = outcome.counts()
        cells = " | ".join(str(counts.get(r, 0)) for r in results)
        lines.append(
            f"| {outcome.run.name} | {len(outcome.cases)} | {cells} | {outcome.seconds:.0f} s |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    done = [run_suite(r) for r in (PLAIN, PLAIN_NO_DEFLATE, COMPRESSION)]
    for outcome in done:
        record(outcome)
        for failure in outcome.failures():
            print("  not passed:", failure)
    print()
    print(markdown(done))
