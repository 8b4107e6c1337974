"""The ``[plugins.pooling]`` settings and their validation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

__all__ = ["NAME", "PoolingConfig", "parse_config"]

#: The plugin's name: its entry point and its ``[plugins.pooling]`` table.
NAME: Final = "pooling"

SetInfo = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class PoolingConfig:
    """The ``[plugins.pooling]`` settings.

    Attributes:
        min_size: WebSocket connections each pool keeps open.
        max_size: Most WebSocket connections per pool.
        acquire_timeout: Seconds a caller waits for a free connection.
        idle_timeout: Seconds an idle connection beyond ``min_size`` lives.
        health_check_interval: Seconds after which an idle connection must
            answer a ping before it is handed out (and the maintenance period).
        ping_timeout: Seconds a health-check ping may take.
        prewarm: Agent URLs whose pools are dialled at ``on_load`` (token: the
            user's default token).
        redis_max_connections: Bound of the Redis pool (callers wait beyond it).
        redis_min_connections: Redis connections opened at ``on_load``.
        redis_timeout: Seconds to connect to Redis, for each reply, and to wait
            for a free pooled connection.
        redis_health_check_interval: Seconds idle before a Redis connection is
            checked with PING on its next use.
        redis_setinfo: ``CLIENT SETINFO`` in the handshake: ``"auto"`` sends it
            only to Redis >= 7.2 (older servers answer it with an error),
            ``"never"`` trims it always, ``"always"`` keeps redis-py's default.
        redis_pipelining: Auto-pipeline concurrent kv commands.
    """

    min_size: int = 2
    max_size: int = 10
    acquire_timeout: float = 5.0
    idle_timeout: float = 60.0
    health_check_interval: float = 1.0
    ping_timeout: float = 2.0
    prewarm: tuple[str, ...] = ()
    redis_max_connections: int = 16
    redis_min_connections: int = 2
    redis_timeout: float = 2.0
    redis_health_check_interval: float = 30.0
    redis_setinfo: SetInfo = "auto"
    redis_pipelining: bool = True


def _fail(key: str, wanted: str, value: Any) -> ValueError:
    return ValueError(f"[plugins.{NAME}] {key} must be {wanted}, not {value!r}")


def _integer(table: Mapping[str, Any], key: str, minimum: int) -> int:
    value = table.get(key, getattr(PoolingConfig, key))
    if type(value) is not int or value < minimum:
        raise _fail(key, f"an integer >= {minimum}", value)
    return value


def _seconds(table: Mapping[str, Any], key: str) -> float:
    value = table.get(key, getattr(PoolingConfig, key))
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise _fail(key, "a number of seconds > 0", value)
    return float(value)


def parse_config(table: Mapping[str, Any]) -> PoolingConfig:
    """Validate a ``[plugins.pooling]`` table (without ``enabled``).

    Raises:
        ValueError: For an unknown key or a bad value; the message names the key.
    """
    known = {field.name for field in fields(PoolingConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"[plugins.{NAME}] unknown key(s): {', '.join(unknown)}")
    max_size = _integer(table, "max_size", 1)
    min_size = _integer(table, "min_size", 0)
    if min_size > max_size:
        raise _fail("min_size", f"<= max_size ({max_size})", min_size)
    redis_max = _integer(table, "redis_max_connections", 1)
    redis_min = _integer(table, "redis_min_connections", 0)
    if redis_min > redis_max:
        raise _fail("redis_min_connections", f"<= redis_max_connections ({redis_max})", redis_min)
    prewarm = table.get("prewarm", [])
    if not isinstance(prewarm, list) or not all(
        isinstance(url, str) and url.startswith(("ws://", "wss://")) for url in prewarm
    ):
        raise _fail("prewarm", "a list of ws:// or wss:// URLs", prewarm)
    setinfo = table.get("redis_setinfo", "auto")
    if setinfo not in ("auto", "always", "never"):
        raise _fail("redis_setinfo", '"auto", "always" or "never"', setinfo)
    pipelining = table.get("redis_pipelining", True)
    if type(pipelining) is not bool:
        raise _fail("redis_pipelining", "true or false", pipelining)
    return PoolingConfig(
        min_size=min_size,
        max_size=max_size,
        acquire_timeout=_seconds(table, "acquire_timeout"),
        idle_timeout=_seconds(table, "idle_timeout"),
        health_check_interval=_seconds(table, "health_check_interval"),
        ping_timeout=_seconds(table, "ping_timeout"),
        prewarm=tuple(prewarm),
        redis_max_connections=redis_max,
        redis_min_connections=redis_min,
        redis_timeout=_seconds(table, "redis_timeout"),
        redis_health_check_interval=_seconds(table, "redis_health_check_interval"),
        redis_setinfo=setinfo,
        redis_pipelining=pipelining,
    )
