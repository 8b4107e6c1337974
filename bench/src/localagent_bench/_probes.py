"""Reading a process's resources from ``/proc``: CPU time and resident memory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_cpu", "rss_bytes"]


def process_cpu(pid: int) -> float | None:
    """CPU seconds process ``pid`` has used so far (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        run_ns = [
            int(path.read_text().split()[0])
            for path in Path(f"/proc/{pid}/task").glob("*/schedstat")
        ]
        if run_ns:
            return sum(run_ns) / 1e9
    except (OSError, ValueError, IndexError):
        pass  # a thread ended meanwhile, or no schedstat: use stat
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# -- one repetition ----------------------------------------------------------------


def rss_bytes() -> int | None:
    """This process's resident set size (``VmRSS``; ``None`` where ``/proc`` is missing)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None
