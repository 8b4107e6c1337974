"""``/metrics``: the monitor's figures in the Prometheus text format, via prometheus_client.

The hooks never call prometheus_client: they bump plain counters
(:class:`~localagent_monitor._metrics.Metrics`), and this collector turns them
into metric families when ``/metrics`` is scraped. This module imports
prometheus_client, so only ``on_load`` imports it (never ``plugins list``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ._metrics import BUCKETS, Metrics

__all__ = ["CONTENT_TYPE", "MonitorCollector", "exposition", "registry_for"]

CONTENT_TYPE: str = CONTENT_TYPE_LATEST


class MonitorCollector:
    """A prometheus_client collector that reads :class:`Metrics` at scrape time.

    Args:
        metrics: The monitor's counters.
        gauges: Returns the current values the counters do not hold:
            ``health`` (0/1/2), ``healthy_share``, ``send_queue``,
            ``memory_growth_bytes``, ``cpu_percent``.
        plugins: Returns ``(name, load seconds or None)`` per loaded plugin.
    """

    def __init__(
        self,
        metrics: Metrics,
        gauges: Callable[[], dict[str, float]],
        plugins: Callable[[], Sequence[tuple[str, float | None]]],
    ) -> None:
        self._metrics = metrics
        self._gauges = gauges
        self._plugins = plugins

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        handled = CounterMetricFamily(
            "localagent_messages", "Messages handled, per monitored type", labels=["type"]
        )
        failed = CounterMetricFamily(
            "localagent_message_failures",
            "Messages whose handler raised, per monitored type",
            labels=["type"],
        )
        latency = HistogramMetricFamily(
            "localagent_message_duration_seconds",
            "Handler latency per monitored type",
            labels=["type"],
        )
        for name, stats in sorted(metrics.types.items()):
            handled.add_metric([name], stats.handled)
            failed.add_metric([name], stats.failed)
            cumulative, running = [], 0
            for bound, count in zip((*BUCKETS, float("inf")), stats.latency.counts, strict=True):
                running += count
                cumulative.append((_le(bound), running))
            latency.add_metric([name], cumulative, stats.latency.sum)
        yield handled
        yield failed
        yield latency
        errors = CounterMetricFamily(
            "localagent_errors",
            "Failures reported to on_error, by stage, plugin and kind",
            labels=["stage", "plugin", "kind"],
        )
        for (stage, plugin, kind), count in sorted(metrics.errors.items()):
            errors.add_metric([stage, plugin, kind], count)
        yield errors
        traffic = metrics.traffic
        if traffic is not None:
            yield CounterMetricFamily(
                "localagent_messages_received",
                "Inbound messages received, all traffic (the runtime's own counter)",
                value=traffic.messages,
            )
            yield CounterMetricFamily(
                "localagent_error_replies",
                "Error replies sent, all traffic (the runtime's own counter)",
                value=traffic.errors,
            )
        collections = CounterMetricFamily(
            "localagent_gc_collections",
            "Garbage collections, per generation (gc.callbacks)",
            labels=["generation"],
        )
        pauses = CounterMetricFamily(
            "localagent_gc_pause_seconds",
            "Time spent in garbage collection, per generation (gc.callbacks)",
            labels=["generation"],
        )
        for generation, (count, pause) in enumerate(
            zip(metrics.gc.collections, metrics.gc.pause, strict=True)
        ):
            collections.add_metric([str(generation)], count)
            pauses.add_metric([str(generation)], pause)
        yield collections
        yield pauses
        yield GaugeMetricFamily(
            "localagent_connections_open", "Open connections", value=metrics.connections_open
        )
        yield CounterMetricFamily(
            "localagent_connections", "Connections accepted", value=metrics.connections_total
        )
        gauges = self._gauges()
        for name, help_text in (
            ("health", "Health status: 0 healthy, 1 warning, 2 critical"),
            ("healthy_share", "Share of the time since start spent healthy (0-1)"),
            ("send_queue", "Outbound messages queued by batching, all connections"),
            ("memory_growth_bytes", "Resident memory grown since the monitor started"),
            ("cpu_percent", "CPU time per wall time over the last window, percent (100: a core)"),
        ):
            yield GaugeMetricFamily(f"localagent_{name}", help_text, value=gauges[name])
        load = GaugeMetricFamily(
            "localagent_plugin_load_seconds", "Time of each plugin's on_load", labels=["plugin"]
        )
        for plugin, seconds in self._plugins():
            if seconds is not None:
                load.add_metric([plugin], seconds)
        yield load


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry_for(collector: MonitorCollector) -> CollectorRegistry:
    """A private registry with ``collector`` and the process collector (CPU, memory, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: Any) -> bytes:
    """The registry's metrics in the Prometheus text format."""
    return bytes(_generate_latest(registry))
