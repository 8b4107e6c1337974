"""What the monitor records: counters and latency histograms, and figures over a time window.

Pure Python, no I/O and no asyncio: the hooks call :meth:`Metrics.handled` and
:meth:`Metrics.error`, and the ticker takes a :class:`Sample` now and then
(``_window.window_figures`` turns two samples into rates and percentiles). The
Prometheus collector and the dashboard read the same objects.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = [
    "BUCKETS",
    "MAX_KEYS",
    "OTHER",
    "GcWatch",
    "LatencyHistogram",
    "Metrics",
    "Sample",
    "TypeStats",
    "percentile",
    "resident_bytes",
]

#: Upper bounds of the latency buckets, in seconds (Prometheus ``le``); +Inf follows.
BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


#: Most distinct message types (and error keys) kept apart; the rest are counted as OTHER.
MAX_KEYS = 500
OTHER = "(other)"


class LatencyHistogram:
    """Handler latencies in fixed buckets: one list index increment per observation.

    Attributes:
        counts: Observations per bucket (not cumulative); the last one is +Inf.
        count: All observations.
        sum: Their total, in seconds.
    """

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds


class TypeStats:
    """The figures of one message type.

    Attributes:
        handled: Messages whose handlers returned or raised.
        failed: Those that raised (``MessageError`` included).
        latency: Handler latency, from the wrapper's start to the (awaited) result.
    """

    __slots__ = ("failed", "handled", "latency")

    def __init__(self) -> None:
        self.handled = 0
        self.failed = 0
        self.latency = LatencyHistogram()


def percentile(counts: Sequence[int], fraction: float) -> float | None:
    """Estimate a percentile, in seconds, from per-bucket counts (``None`` when empty).

    Interpolates linearly inside the bucket that holds the rank, as
    Prometheus's ``histogram_quantile`` does; the +Inf bucket answers with the
    largest finite bound.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(BUCKETS):
                return BUCKETS[-1]
            lower = BUCKETS[index - 1] if index else 0.0
            return lower + (BUCKETS[index] - lower) * (rank - seen) / count
        seen += count
    return BUCKETS[-1]


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``), else its peak (``getrusage``)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class GcWatch:
    """The garbage collector's collections and pause time, per generation, from ``gc.callbacks``.

    The callback costs two clock reads per collection (none per message).

    Attributes:
        collections: Collections finished, per generation (0, 1, 2).
        pause: Seconds spent collecting, per generation.
    """

    __slots__ = ("_started", "collections", "pause")

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info.get("generation", 0)
        if 0 <= generation < len(self.collections):
            self.collections[generation] += 1
            self.pause[generation] += time.perf_counter() - self._started

    def install(self) -> None:
        """Start watching (``gc.callbacks``)."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        """Stop watching."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class Metrics(msgspec.Struct):
    """Everything counted since the monitor started.

    Attributes:
        started: ``time.monotonic()`` at the start.
        types: Per monitored message type.
        errors: Failures reported to ``on_error``, by ``(stage, plugin, kind)``;
            ``kind`` is a ``MessageError``'s code or the exception's class name.
        errors_total: Their sum.
        connections_open: Connections open now.
        connections_total: Connections seen since the start.
        memory_at_start: Resident bytes when the monitor started.
        gc: The garbage collector's collections and pauses.
        traffic: The runtime's counters of all traffic (``agent.traffic``:
            ``messages``, ``errors``), ``None`` on a runtime without them.
    """

    started: float = msgspec.field(default_factory=time.monotonic)
    types: dict[str, TypeStats] = msgspec.field(default_factory=dict)
    errors: dict[tuple[str, str, str], int] = msgspec.field(default_factory=dict)
    errors_total: int = 0
    connections_open: int = 0
    connections_total: int = 0
    memory_at_start: int = msgspec.field(default_factory=resident_bytes)
    gc: GcWatch = msgspec.field(default_factory=GcWatch)
    traffic: Any = None

    def stats(self, message_type: str) -> TypeStats:
        """The stats of ``message_type``, created on first use.

        Clients choose type names, so past :data:`MAX_KEYS` distinct ones the
        rest share the entry ``"(other)"``: memory stays bounded.
        """
        found = self.types.get(message_type)
        if found is None:
            if len(self.types) >= MAX_KEYS and message_type != OTHER:
                return self.stats(OTHER)
            found = self.types[message_type] = TypeStats()
        return found

    def handled(self, message_type: str, seconds: float, *, failed: bool = False) -> None:
        """Count one handled message and its latency."""
        stats = self.types.get(message_type) or self.stats(message_type)
        stats.handled += 1
        stats.latency.observe(seconds)
        if failed:
            stats.failed += 1

    def error(self, stage: str, plugin: str | None, kind: str) -> None:
        """Count one failure reported to ``on_error``."""
        key = (stage, plugin or "", kind)
        if key not in self.errors and len(self.errors) >= MAX_KEYS:
            key = (stage, plugin or "", OTHER)
        self.errors[key] = self.errors.get(key, 0) + 1
        self.errors_total += 1

    def sample(self, now: float, queue: int = 0) -> Sample:
        """The cumulative figures at ``now`` (``time.monotonic()``)."""
        traffic = self.traffic
        return Sample(
            time=now,
            handled={name: stats.handled for name, stats in self.types.items()},
            buckets={name: tuple(stats.latency.counts) for name, stats in self.types.items()},
            errors=self.errors_total,
            queue=queue,
            memory=resident_bytes(),
            messages=traffic.messages if traffic is not None else 0,
            error_replies=traffic.errors if traffic is not None else 0,
            cpu=time.process_time(),
            gc_collections=sum(self.gc.collections),
            gc_pause=sum(self.gc.pause),
        )


class Sample(msgspec.Struct, frozen=True):
    """Cumulative figures at one moment (see :meth:`Metrics.sample`).

    Attributes:
        time: ``time.monotonic()`` when taken.
        handled: Messages handled so far, per type.
        buckets: Latency bucket counts so far, per type.
        errors: Failures reported so far.
        queue: Outbound messages queued by batching at that moment.
        memory: Resident bytes at that moment.
        messages: Messages received so far, all traffic (the runtime's counter).
        error_replies: Error replies sent so far, all traffic.
        cpu: CPU seconds of the process so far (``time.process_time()``).
        gc_collections: Garbage collections so far, every generation.
        gc_pause: Seconds spent in them so far.
    """

    time: float
    handled: Mapping[str, int]
    buckets: Mapping[str, tuple[int, ...]]
    errors: int
    queue: int
    memory: int
    messages: int = 0
    error_replies: int = 0
    cpu: float = 0.0
    gc_collections: int = 0
    gc_pause: float = 0.0
