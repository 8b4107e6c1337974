"""Shared parts of the benchmark scripts: running an agent, percentiles, tables."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AGENT", "BenchError", "Target", "agent_server", "percentile", "stop", "table"]

AGENT = "agent"
STARTUP_TIMEOUT = 30.0
URL_PATTERN = re.compile(r"listening on (ws://\S+)")


class BenchError(RuntimeError):
    """A server misbehaved or could not be started."""


@dataclass(frozen=True)
class Target:
    """A server under test."""

    name: str
    url: str
    token: str
    pid: int


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate ``process`` (SIGTERM, then SIGKILL after 5 s) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def agent_server(
    config_dir: Path, env: dict[str, str], *args: str
) -> Iterator[tuple[Target, Path]]:
    """Run ``localagent serve --port 0``; yield the target and the path of its log."""
    log_path = config_dir / "agent.log"
    command = [sys.executable, "-m", "localagent", "--config-dir", str(config_dir)]
    command += ["serve", "--port", "0", "--log-level", "warning", *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (match := URL_PATTERN.search(log_path.read_text(errors="replace"))) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the agent did not start:\n{log_path.read_text()}")
            time.sleep(0.02)  # waiting for a subprocess to start, not simulating I/O
        token = (config_dir / "token").read_text().strip()
        yield Target(AGENT, match.group(1), token, process.pid), log_path
    finally:
        stop(process)


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if col == 0 else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
