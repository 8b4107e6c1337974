"""The monitor's pure parts on their own: config, histograms, windows, health, optimizer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from localagent_monitor import DEFAULT_TYPES, NAME, MonitorConfig
from localagent_monitor._health import HealthTracker, Reading, assess
from localagent_monitor._metrics import BUCKETS, MAX_KEYS, OTHER, Metrics, percentile
from localagent_monitor._optimizer import AutoOptimizer
from localagent_monitor._port import OPEN_TIMEOUT

import localagent

# -- config ------------------------------------------------------------------


def settings(table: dict[str, Any]) -> MonitorConfig:
    """``table`` as ``[plugins.monitor]``, read the way ``on_load`` reads it."""
    config = localagent.Settings(config_dir=Path("/cfg"), plugins={NAME: table})
    return config.plugin_settings(NAME, MonitorConfig)


def test_the_defaults_monitor_the_state_changing_types_on_the_agents_port() -> None:
    config = settings({})
    assert config == MonitorConfig()
    assert config.port is None  # no port of its own: the agent's
    assert config.types == DEFAULT_TYPES
    assert not config.all_paths and not config.open_metrics and not config.auto_optimize


def test_config_values_are_read() -> None:
    config = settings(
        {"port": 0, "types": ["echo"], "all_paths": True, "tick": 0.5, "batch_above": 300}
    )
    assert (config.port, config.types, config.all_paths, config.tick) == (0, ("echo",), True, 0.5)
    assert config.batch_above == 300.0
    assert settings({"host": "[::1]"}).host == "::1"


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"nope": 1}, "plugins.monitor.nope: unknown setting"),
        ({"port": 70000}, "port = 70000: port must be an integer 0-65535"),
        ({"port": "80"}, "port = '80': expected int, got str"),
        ({"host": "0.0.0.0"}, "host = '0.0.0.0': host must be a loopback address"),
        ({"host": "example.com"}, "host must be a loopback address"),
        ({"types": "echo"}, "types = 'echo': expected array, got str"),
        ({"types": [""]}, "types must be a list of non-empty strings"),
        ({"all_paths": "yes"}, "all_paths = 'yes': expected bool, got str"),
        ({"tick": 0}, "tick = 0: tick must be greater than 0"),
        ({"warn_p99_ms": -1}, "warn_p99_ms = -1: warn_p99_ms must be a number >= 0"),
        ({"warn_queue": float("nan")}, "warn_queue must be a number >= 0"),
        ({"warn_p99_ms": 10, "critical_p99_ms": 5}, "warn_p99_ms (10.0) exceeds critical_p99"),
        ({"batch_above": 10, "unbatch_below": 10}, "unbatch_below (10.0) must be below"),
        ({"window": 0}, "window = 0: window must be greater than 0"),
        ({"allowed_hosts": ["a", ""]}, "allowed_hosts = ['a', '']: allowed_hosts must be a list"),
        ({"actions_cooldown": -1}, "actions_cooldown = -1: actions_cooldown must be a number"),
        ({"warning_budget": 0.01}, "warning_budget = 0.01: warning_budget must be between 0.05"),
        ({"critical_budget": 1.5}, "critical_budget = 1.5: critical_budget must be between"),
        ({"critical_budget": 0.6}, "critical_budget = 0.6: critical_budget (0.6) exceeds warning"),
        ({"pressure_pooled_bytes": -1}, "pressure_pooled_bytes = -1: 'pressure_pooled_bytes' must"),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(table: dict[str, Any], named: str) -> None:
    with pytest.raises(localagent.ConfigError) as caught:
        settings(table)
    assert named in str(caught.value)


# -- metrics -----------------------------------------------------------------


def test_histogram_buckets_are_upper_bounds() -> None:
    metrics = Metrics()
    metrics.handled("echo", BUCKETS[0])  # on the bound: in that bucket (Prometheus "le")
    metrics.handled("echo", BUCKETS[0] * 1.01)
    metrics.handled("echo", 1e6, failed=True)  # past the last bound: +Inf
    stats = metrics.types["echo"]
    assert stats.latency.counts[0] == 1
    assert stats.latency.counts[1] == 1
    assert stats.latency.counts[-1] == 1
    assert (stats.handled, stats.failed, stats.latency.count) == (3, 1, 3)


def test_percentiles_interpolate_inside_the_bucket() -> None:
    counts = [0] * (len(BUCKETS) + 1)
    assert percentile(counts, 0.5) is None
    counts[4] = 100  # all in (BUCKETS[3], BUCKETS[4]]
    p50 = percentile(counts, 0.5)
    assert p50 is not None and BUCKETS[3] < p50 < BUCKETS[4]
    counts[-1] = 1000
    assert percentile(counts, 0.99) == BUCKETS[-1]


def test_client_chosen_type_names_cannot_grow_memory_without_bound() -> None:
    metrics = Metrics()
    for n in range(MAX_KEYS + 50):
        metrics.handled(f"t{n}", 0.001)
    assert len(metrics.types) == MAX_KEYS + 1
    assert metrics.types[OTHER].handled == 50


def test_window_figures_give_rates_and_percentiles_of_the_window_only() -> None:
    metrics = Metrics()
    for _ in range(10):
        metrics.handled("echo", 5.0)  # slow, before the window
    old = metrics.sample(100.0)
    for _ in range(40):
        metrics.handled("echo", 0.0002)
    metrics.error("message", "bad", "ValueError")
    metrics.error("message", "bad", "ValueError")
    new = metrics.sample(102.0)
    from localagent_monitor._window import window_figures

    figures = window_figures(old, new)
    assert figures.rates == {"echo": 20.0}
    assert figures.errors_per_s == 1.0
    assert figures.p99_ms is not None and figures.p99_ms < 1.0  # the old 5 s are not in it
    assert metrics.errors == {("message", "bad", "ValueError"): 2}


# -- health ------------------------------------------------------------------


def test_health_is_the_worst_threshold_passed() -> None:
    config = MonitorConfig(warn_p99_ms=10, critical_p99_ms=100, warn_queue=5, critical_queue=50)
    healthy = Reading(errors_per_s=0, p99_ms=None, queue=0, memory_growth_mb=0)
    assert assess(healthy, config).status == "healthy"
    warning = assess(Reading(0, 20.0, 0, 0), config)
    assert warning.status == "warning"
    assert warning.reasons == ("p99 latency (ms) 20.0 >= warning 10",)
    critical = assess(Reading(0, 20.0, 60, 0), config)
    assert critical.status == "critical"
    assert len(critical.reasons) == 2


def test_the_healthy_share_counts_time_per_verdict() -> None:
    tracker = HealthTracker(started=0.0)
    assert tracker.healthy_share(0.0) == 1.0
    tracker.update(assess(Reading(100.0, None, 0, 0), MonitorConfig()), now=30.0)  # critical
    assert tracker.current.status == "critical"
    assert tracker.healthy_share(40.0) == pytest.approx(30 / 40)
    tracker.update(assess(Reading(0.0, None, 0, 0), MonitorConfig()), now=60.0)  # healthy
    assert tracker.healthy_share(100.0) == pytest.approx((30 + 40) / 100)


# -- auto-optimizer ----------------------------------------------------------


def test_the_optimizer_switches_with_hysteresis() -> None:
    optimizer = AutoOptimizer(batch_above=100, unbatch_below=20, min_switch_interval=0)
    assert optimizer.decide("c1", 50, enabled=False, now=0) is None  # between: stay
    on = optimizer.decide("c1", 150, enabled=False, now=1)
    assert on is not None and on.enable and on.rate == 150 and on.threshold == 100
    assert "batching on for connection c1: 150 msg/s out > batch_above 100" in on.describe()
    assert optimizer.decide("c1", 50, enabled=True, now=2) is None  # between: stay on
    off = optimizer.decide("c1", 10, enabled=True, now=3)
    assert off is not None and not off.enable
    assert "< unbatch_below 20" in off.describe()


def test_the_optimizer_never_flaps_faster_than_the_period() -> None:
    optimizer = AutoOptimizer(batch_above=100, unbatch_below=20, min_switch_interval=10)
    assert optimizer.decide("c1", 500, enabled=False, now=0.0) is not None
    assert optimizer.decide("c1", 0, enabled=True, now=9.9) is None  # too soon
    assert optimizer.decide("c2", 500, enabled=False, now=9.9) is not None  # per connection
    assert optimizer.decide("c1", 0, enabled=True, now=10.0) is not None
    optimizer.forget("c1")
    assert optimizer.decide("c1", 500, enabled=False, now=10.5) is not None


# -- the documented examples -------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("page", ["docs/monitor.md", "plugins/monitor/README.md"])
def test_the_documented_config_examples_are_valid(page: str) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / page).read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for block in blocks:
        settings(tomllib.loads(block)["plugins"]["monitor"])


def test_the_documented_timeout_of_its_own_port_is_the_servers() -> None:
    text = " ".join((ROOT / "docs/monitor.md").read_text(encoding="utf-8").split())
    assert f"and {OPEN_TIMEOUT:g} s on a port of the monitor's own" in text
