"""Run a server under cProfile that the benchmark switches on and off by signal.

``python -m bench.profiled PREFIX server.py --port=...`` (or ``-m module``)
runs the server in this process; SIGUSR1 starts profiling, SIGUSR2 stops it
and writes ``PREFIX.N.prof`` (N counts from 1). Profiling only the measured
phase keeps the ramp-up (handshakes, joins) out of a fan-out profile.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
from types import FrameType


class SignalProfiler:
    """cProfile toggled by SIGUSR1 (start) and SIGUSR2 (stop and dump)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self.profile: cProfile.Profile | None = None

    def start(self, signum: int, frame: FrameType | None) -> None:
        if self.profile is None:
            self.profile = cProfile.Profile()
            self.profile.enable()

    def stop(self, signum: int, frame: FrameType | None) -> None:
        if self.profile is None:
            return
        self.profile.disable()
        self.count += 1
        path = f"{self.prefix}.{self.count}.prof"
        self.profile.dump_stats(path + ".tmp")
        os.replace(path + ".tmp", path)  # appears complete or not at all
        self.profile = None


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    prefix, target, *rest = argv
    profiler = SignalProfiler(prefix)
    signal.signal(signal.SIGUSR1, profiler.start)
    signal.signal(signal.SIGUSR2, profiler.stop)
    if target == "-m":
        module, *rest = rest
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *rest]
        sys.path.insert(0, ".")
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
