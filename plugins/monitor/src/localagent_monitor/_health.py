"""Health: healthy / warning / critical from thresholds, and the share of time spent healthy."""

from __future__ import annotations

from typing import Literal

import msgspec

from ._config import MonitorConfig

__all__ = ["Health", "HealthTracker", "Reading", "Status", "assess"]

Status = Literal["healthy", "warning", "critical"]

_RANK: dict[Status, int] = {"healthy": 0, "warning": 1, "critical": 2}


class Reading(msgspec.Struct, frozen=True):
    """The figures health is judged on.

    Attributes:
        errors_per_s: Failures reported to ``on_error`` per second, over the window.
        p99_ms: p99 handler latency of the monitored types over the window (``None``: no data).
        queue: Outbound messages queued by batching, all connections.
        memory_growth_mb: Resident memory grown since the monitor started.
    """

    errors_per_s: float
    p99_ms: float | None
    queue: float
    memory_growth_mb: float


class Health(msgspec.Struct, frozen=True):
    """A verdict and the reasons for it (empty when healthy).

    Attributes:
        status: ``"healthy"``, ``"warning"`` or ``"critical"``.
        reasons: One line per threshold passed, with the figure and the threshold.
    """

    status: Status
    reasons: tuple[str, ...] = ()

    @property
    def rank(self) -> int:
        """0 healthy, 1 warning, 2 critical (the Prometheus gauge's value)."""
        return _RANK[self.status]


#: Checked worst first: a figure past both thresholds is reported once, as critical.
_LEVELS: tuple[tuple[Status, str], ...] = (("critical", "critical"), ("warning", "warn"))

_LABELS = {
    "errors_per_s": ("errors/s", "{:.2f}"),
    "p99_ms": ("p99 latency (ms)", "{:.1f}"),
    "queue": ("queued outbound messages", "{:.0f}"),
    "memory_growth_mb": ("memory growth (MB)", "{:.1f}"),
}


def assess(reading: Reading, config: MonitorConfig) -> Health:
    """The worst status any figure of ``reading`` reaches under ``config``'s thresholds."""
    status: Status = "healthy"
    reasons = []
    for name, (label, number) in _LABELS.items():
        value = getattr(reading, name)
        if value is None:
            continue
        for level, prefix in _LEVELS:
            limit = getattr(config, f"{prefix}_{name}")
            if value >= limit:
                reasons.append(f"{label} {number.format(value)} >= {level} {limit:g}")
                if _RANK[level] > _RANK[status]:
                    status = level
                break
    return Health(status, tuple(reasons))


class HealthTracker:
    """Keeps the current verdict and how long the agent has been healthy since ``started``."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._changed = started
        self._healthy_before = 0.0
        self.current = Health("healthy")

    def update(self, health: Health, now: float) -> None:
        """Record the verdict reached at ``now``; the time since the last one counts as before."""
        if self.current.status == "healthy":
            self._healthy_before += now - self._changed
        self._changed = now
        self.current = health

    def healthy_share(self, now: float) -> float:
        """Fraction of the time since the start spent healthy (1.0 at the very start)."""
        total = now - self._started
        if total <= 0:
            return 1.0
        healthy = self._healthy_before
        if self.current.status == "healthy":
            healthy += now - self._changed
        return min(1.0, healthy / total)
