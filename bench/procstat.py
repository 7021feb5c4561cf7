"""Read CPU time and memory of processes from /proc (Linux only).

Server CPU per delivery is measured from the server process's own counters
(utime + stime in /proc/PID/stat) rather than wall time, so that the result
does not depend on how busy the load generator keeps the machine.
"""

from __future__ import annotations

import os
import resource

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by process ``pid``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name may contain spaces; fields restart after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat).

    Compared with the server's and the load generator's own CPU time, this
    shows how much CPU other processes on the machine took during a run.
    """
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (from /proc/PID/statm)."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def self_cpu_seconds() -> float:
    """CPU seconds used by the calling process (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def raise_nofile_limit(wanted: int | None = None) -> int:
    """Raise the open-file soft limit towards the hard limit; return the new soft limit.

    The hard limit cannot be raised without privileges, so the load generator
    spreads connections over processes instead of asking for more.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else min(wanted, hard)
    if hard == resource.RLIM_INFINITY and wanted is None:
        target = max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def ephemeral_port_count() -> int:
    """Size of the kernel's ephemeral port range (ports per source address)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return hi - lo + 1
    except (OSError, ValueError):
        return 28232
