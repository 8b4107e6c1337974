"""The ``[plugins.monitor]`` settings and their validation (pure, no asyncio)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["DEFAULT_TYPES", "MonitorConfig", "parse_config"]

#: Message types monitored by default: the built-in ones that change state or run programs.
DEFAULT_TYPES: Final = ("exec", "fs.write", "fs.delete")

_SECTION = "[plugins.monitor]"


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


def _number(key: str, value: Any, *, positive: bool = False) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{_SECTION} {key} must be a number >= 0, not {value!r}")
    if positive and value == 0:
        raise ValueError(f"{_SECTION} {key} must be greater than 0")
    return float(value)


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{_SECTION} {key} must be a list of non-empty strings, not {value!r}")
    return tuple(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{_SECTION} {key} must be true or false, not {value!r}")
    return value


def _loopback(value: Any) -> str:
    import ipaddress  # only when a host is configured: `plugins list` imports this module

    if not isinstance(value, str):
        raise ValueError(f"{_SECTION} host must be a string, not {value!r}")
    try:
        loopback = value == "localhost" or ipaddress.ip_address(value.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{_SECTION} host must be a loopback address, not {value!r}")
    return value.strip("[]")


def parse_config(table: Mapping[str, Any]) -> MonitorConfig:
    """Validate a ``[plugins.monitor]`` table (without ``enabled``).

    Raises:
        ValueError: An unknown key or a bad value; the message names the key.
    """
    known = {f.name for f in attrs.fields(MonitorConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{_SECTION} unknown key(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "port":
            if type(value) is not int or not 0 <= value <= 65535:
                raise ValueError(f"{_SECTION} port must be an integer 0-65535, not {value!r}")
            values[key] = value
        elif key == "host":
            values[key] = _loopback(value)
        elif key in ("types", "allowed_hosts"):
            values[key] = _strings(key, value)
        elif key in ("all_paths", "open_metrics", "auto_optimize"):
            values[key] = _flag(key, value)
        else:
            values[key] = _number(key, value, positive=key in ("tick", "window"))
    config = MonitorConfig(**values)
    for name in ("errors_per_s", "p99_ms", "queue", "memory_growth_mb"):
        warn, critical = getattr(config, f"warn_{name}"), getattr(config, f"critical_{name}")
        if warn > critical:
            raise ValueError(
                f"{_SECTION} warn_{name} ({warn}) exceeds critical_{name} ({critical})"
            )
    if config.unbatch_below >= config.batch_above:
        raise ValueError(
            f"{_SECTION} unbatch_below ({config.unbatch_below}) must be below "
            f"batch_above ({config.batch_above})"
        )
    return config
