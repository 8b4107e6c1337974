"""The ``[plugins.monitor]`` settings, as the plugin declares them (pure, no asyncio)."""

from __future__ import annotations

import math
from typing import Final

import msgspec

__all__ = ["DEFAULT_TYPES", "MonitorConfig"]

#: Message types monitored by default: the built-in ones that change state or run programs.
DEFAULT_TYPES: Final = ("exec", "fs.write", "fs.delete")


def _loopback(value: str) -> None:
    if value in ("127.0.0.1", "localhost"):  # the default needs no ipaddress import
        return
    import ipaddress  # only when a host is configured: `plugins list` imports this module

    try:
        loopback = value == "localhost" or ipaddress.ip_address(value.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"host must be a loopback address, not {value!r}")


def _number(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, not {value!r}")


#: The figures checked to be numbers >= 0 (``tick`` and ``window`` must also be above 0,
#: the budgets between 0.05 and 1).
_NUMBERS = (
    "tick",
    "window",
    "warn_errors_per_s",
    "critical_errors_per_s",
    "warn_p99_ms",
    "critical_p99_ms",
    "warn_queue",
    "critical_queue",
    "warn_memory_growth_mb",
    "critical_memory_growth_mb",
    "batch_above",
    "unbatch_below",
    "min_switch_interval",
    "actions_cooldown",
)
_POSITIVE = ("tick", "window")
_SHARES = ("warning_budget", "critical_budget")


class MonitorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the monitor watches, where it listens, and when it calls the agent unhealthy.

    Attributes:
        port: A TCP port of the endpoints' own (0 picks a free one); ``None``
            (the default) serves them on the agent's own port.
        host: Loopback address to bind with a port of their own (a
            non-loopback address is refused).
        types: Message types whose handlers get a timing wrapper (the critical paths).
        all_paths: Wrap every message type instead of ``types`` (costs throughput).
        open_metrics: Serve ``/metrics`` without the token (for a local Prometheus).
        allowed_hosts: ``Host`` header names accepted besides the loopback names,
            on a port of their own (the agent's port has ``server.allowed_hosts``).
        tick: Seconds between two samples (rates, health, auto-optimizer).
        window: Seconds of samples that rates and the health percentiles cover.
        warn_errors_per_s: Errors per second (every ``on_error``) that make it a warning.
        critical_errors_per_s: ... critical.
        warn_p99_ms: p99 handler latency over the monitored types, warning.
        critical_p99_ms: ... critical.
        warn_queue: Outbound messages queued by batching (all connections), warning.
        critical_queue: ... critical.
        warn_memory_growth_mb: Resident memory grown since the monitor started, warning.
        critical_memory_growth_mb: ... critical.
        auto_optimize: Let the auto-optimizer switch batching per connection.
        batch_above: Outbound msg/s of a connection above which batching is switched on.
        unbatch_below: Outbound msg/s below which it is switched off again.
        min_switch_interval: Fewest seconds between two switches of one connection.
        actions: Let the optimization cycle act while health is warning or
            critical (budget, refused connections, buffer pool).
        warning_budget: Share of ``server.max_pending_bytes`` the outbound
            budget is cut to while warning (0.05-1).
        critical_budget: ... while critical.
        refuse_when_critical: Close new connections with 1013 while critical.
        pressure_pooled_bytes: Most bytes the mempool plugin's buffer pool
            keeps idle while warning or critical.
        actions_cooldown: Seconds the health must stay better before the
            actions are relaxed.
    """

    port: int | None = None
    host: str = "127.0.0.1"
    types: tuple[str, ...] = DEFAULT_TYPES
    all_paths: bool = False
    open_metrics: bool = False
    allowed_hosts: tuple[str, ...] = ()
    tick: float = 1.0
    window: float = 10.0
    warn_errors_per_s: float = 1.0
    critical_errors_per_s: float = 10.0
    warn_p99_ms: float = 250.0
    critical_p99_ms: float = 1000.0
    warn_queue: float = 1000.0
    critical_queue: float = 10000.0
    warn_memory_growth_mb: float = 256.0
    critical_memory_growth_mb: float = 1024.0
    auto_optimize: bool = False
    batch_above: float = 1000.0
    unbatch_below: float = 200.0
    min_switch_interval: float = 10.0
    actions: bool = False
    warning_budget: float = 0.5
    critical_budget: float = 0.25
    refuse_when_critical: bool = True
    pressure_pooled_bytes: int = 1 << 20
    actions_cooldown: float = 10.0

    def __post_init__(self) -> None:
        # Each key's own rule first (in msgspec.convert a ValueError here names no key:
        # plugin_settings finds the key whose value alone fails the same way).
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an integer 0-65535, not {self.port!r}")
        _loopback(self.host)
        for name in ("types", "allowed_hosts"):
            value = getattr(self, name)
            if not all(value):
                raise ValueError(f"{name} must be a list of non-empty strings, not {value!r}")
        for name in _NUMBERS:
            value = getattr(self, name)
            _number(name, value)
            if value == 0 and name in _POSITIVE:
                raise ValueError(f"{name} must be greater than 0")
        for name in _SHARES:
            value = getattr(self, name)
            if not 0.05 <= value <= 1:
                raise ValueError(f"{name} must be between 0.05 and 1, not {value!r}")
        if self.pressure_pooled_bytes < 0:
            raise ValueError(
                f"'pressure_pooled_bytes' must be >= 0: {self.pressure_pooled_bytes!r}"
            )
        # "[::1]" is written as a URL would; the socket wants the bare address.
        msgspec.structs.force_setattr(self, "host", self.host.strip("[]"))
        for name in ("errors_per_s", "p99_ms", "queue", "memory_growth_mb"):
            warn, critical = getattr(self, f"warn_{name}"), getattr(self, f"critical_{name}")
            if warn > critical:
                raise ValueError(f"warn_{name} ({warn}) exceeds critical_{name} ({critical})")
        if self.critical_budget > self.warning_budget:
            raise ValueError(
                f"critical_budget ({self.critical_budget}) exceeds "
                f"warning_budget ({self.warning_budget})"
            )
        if self.unbatch_below >= self.batch_above:
            raise ValueError(
                f"unbatch_below ({self.unbatch_below}) must be below "
                f"batch_above ({self.batch_above})"
            )
