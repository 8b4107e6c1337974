"""The ``[plugins.monitor]`` settings, as the plugin declares them (pure, no asyncio)."""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

__all__ = ["DEFAULT_TYPES", "MonitorConfig"]

#: Message types monitored by default: the built-in ones that change state or run programs.
DEFAULT_TYPES: Final = ("exec", "fs.write", "fs.delete")


def _port(_instance: object, _attribute: object, value: int | None) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise ValueError(f"port must be an integer 0-65535, not {value!r}")


def _loopback(_instance: object, _attribute: object, value: str) -> None:
    import ipaddress  # only when a host is configured: `plugins list` imports this module

    try:
        loopback = value == "localhost" or ipaddress.ip_address(value.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"host must be a loopback address, not {value!r}")


def _names(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not all(value):
        raise ValueError(f"{attribute.name} must be a list of non-empty strings, not {value!r}")


def _number(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, not {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _number(instance, attribute, value)
    if value == 0:
        raise ValueError(f"{attribute.name} must be greater than 0")


def _share(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.05 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0.05 and 1, not {value!r}")


def _figure(default: float, validator: Any = _number) -> Any:
    return attrs.field(default=default, validator=validator)


@attrs.frozen(kw_only=True)
class MonitorConfig:
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

    port: int | None = attrs.field(default=None, validator=_port)
    host: str = attrs.field(default="127.0.0.1", validator=_loopback)
    types: tuple[str, ...] = attrs.field(default=DEFAULT_TYPES, validator=_names)
    all_paths: bool = False
    open_metrics: bool = False
    allowed_hosts: tuple[str, ...] = attrs.field(default=(), validator=_names)
    tick: float = _figure(1.0, _positive)
    window: float = _figure(10.0, _positive)
    warn_errors_per_s: float = _figure(1.0)
    critical_errors_per_s: float = _figure(10.0)
    warn_p99_ms: float = _figure(250.0)
    critical_p99_ms: float = _figure(1000.0)
    warn_queue: float = _figure(1000.0)
    critical_queue: float = _figure(10000.0)
    warn_memory_growth_mb: float = _figure(256.0)
    critical_memory_growth_mb: float = _figure(1024.0)
    auto_optimize: bool = False
    batch_above: float = _figure(1000.0)
    unbatch_below: float = _figure(200.0)
    min_switch_interval: float = _figure(10.0)
    actions: bool = False
    warning_budget: float = _figure(0.5, _share)
    critical_budget: float = _figure(0.25, _share)
    refuse_when_critical: bool = True
    pressure_pooled_bytes: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(0))
    actions_cooldown: float = _figure(10.0)

    def __attrs_post_init__(self) -> None:
        # "[::1]" is written as a URL would; the socket wants the bare address.
        object.__setattr__(self, "host", self.host.strip("[]"))
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
