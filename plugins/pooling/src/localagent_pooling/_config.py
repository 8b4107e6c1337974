"""The ``[plugins.pooling]`` settings, as the plugin declares them (``agent.plugin_settings``)."""

from __future__ import annotations

import math
from typing import Final, Literal

import msgspec

__all__ = ["NAME", "PoolingConfig"]

#: The plugin's name: its entry point and its ``[plugins.pooling]`` table.
NAME: Final = "pooling"

SetInfo = Literal["auto", "always", "never"]

_AT_LEAST_0 = ("min_size", "redis_min_connections")
_AT_LEAST_1 = ("max_size", "redis_max_connections")
_SECONDS = (
    "acquire_timeout",
    "idle_timeout",
    "health_check_interval",
    "ping_timeout",
    "redis_timeout",
    "redis_health_check_interval",
)


def _at_least(name: str, value: int, bound: int) -> None:
    if value < bound:
        raise ValueError(f"{name!r} must be >= {bound}: {value!r}")


class PoolingConfig(msgspec.Struct, frozen=True, kw_only=True):
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

    def __post_init__(self) -> None:
        for name in _AT_LEAST_0:
            _at_least(name, getattr(self, name), 0)
        for name in _AT_LEAST_1:
            _at_least(name, getattr(self, name), 1)
        for name in _SECONDS:
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
        for url in self.prewarm:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"prewarm: {url!r} is not a ws:// or wss:// URL")
        for low, high in (
            ("min_size", "max_size"),
            ("redis_min_connections", "redis_max_connections"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must be at most {high} ({getattr(self, high)})"
                )
