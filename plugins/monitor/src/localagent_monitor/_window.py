"""Rates and percentiles over a time window, from two :class:`~._metrics.Sample` objects.

Pure, like ``_metrics``. Kept apart because only the ticker needs it: the
monitor imports it at its first tick, so a start does not build its class.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ._metrics import BUCKETS, Sample, percentile

__all__ = ["WindowFigures", "window_figures"]


class WindowFigures(msgspec.Struct, frozen=True):
    """Rates and percentiles between two samples.

    Attributes:
        seconds: Length of the window.
        rates: Messages per second, per type.
        total_rate: Their sum.
        errors_per_s: Failures per second.
        percentiles: Per type: ``{"p50": ms, "p90": ms, "p99": ms}`` (``None`` without data).
        p99_ms: p99 latency over every monitored type (``None`` without data).
        messages_per_s: Messages received per second, all traffic.
        error_replies_per_s: Error replies per second, all traffic.
        error_ratio: Error replies per message received (``None`` without messages).
        cpu_percent: CPU time of the process per wall time, in percent (100 = one core).
        gc_per_s: Garbage collections per second.
        gc_pause_percent: Share of the wall time spent in garbage collection, in percent.
    """

    seconds: float
    rates: Mapping[str, float]
    total_rate: float
    errors_per_s: float
    percentiles: Mapping[str, Mapping[str, float | None]]
    p99_ms: float | None
    messages_per_s: float = 0.0
    error_replies_per_s: float = 0.0
    error_ratio: float | None = None
    cpu_percent: float = 0.0
    gc_per_s: float = 0.0
    gc_pause_percent: float = 0.0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def window_figures(old: Sample, new: Sample) -> WindowFigures:
    """What happened between ``old`` and ``new``."""
    seconds = max(new.time - old.time, 1e-9)
    rates = {
        name: (count - old.handled.get(name, 0)) / seconds for name, count in new.handled.items()
    }
    merged = [0] * (len(BUCKETS) + 1)
    percentiles: dict[str, dict[str, float | None]] = {}
    for name, counts in new.buckets.items():
        before = old.buckets.get(name) or (0,) * len(counts)
        delta = [now - then for now, then in zip(counts, before, strict=True)]
        for index, count in enumerate(delta):
            merged[index] += count
        percentiles[name] = {
            label: _ms(percentile(delta, fraction))
            for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        }
    messages = new.messages - old.messages
    error_replies = new.error_replies - old.error_replies
    return WindowFigures(
        seconds=seconds,
        rates=rates,
        total_rate=sum(rates.values()),
        errors_per_s=(new.errors - old.errors) / seconds,
        percentiles=percentiles,
        p99_ms=_ms(percentile(merged, 0.99)),
        messages_per_s=messages / seconds,
        error_replies_per_s=error_replies / seconds,
        error_ratio=error_replies / messages if messages > 0 else None,
        cpu_percent=(new.cpu - old.cpu) / seconds * 100,
        gc_per_s=(new.gc_collections - old.gc_collections) / seconds,
        gc_pause_percent=(new.gc_pause - old.gc_pause) / seconds * 100,
    )
