"""The ``[plugins.pooling]`` settings, as the plugin declares them (``agent.plugin_settings``)."""

from __future__ import annotations

import math
from typing import Final, Literal

import attrs

__all__ = ["NAME", "PoolingConfig"]

#: The plugin's name: its entry point and its ``[plugins.pooling]`` table.
NAME: Final = "pooling"

SetInfo = Literal["auto", "always", "never"]


def _seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, not {value!r}")


def _agent_urls(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    for url in value:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"prewarm: {url!r} is not a ws:// or wss:// URL")


_AT_LEAST_0 = attrs.validators.ge(0)
_AT_LEAST_1 = attrs.validators.ge(1)


@attrs.frozen(kw_only=True)
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

    min_size: int = attrs.field(default=2, validator=_AT_LEAST_0)
    max_size: int = attrs.field(default=10, validator=_AT_LEAST_1)
    acquire_timeout: float = attrs.field(default=5.0, validator=_seconds)
    idle_timeout: float = attrs.field(default=60.0, validator=_seconds)
    health_check_interval: float = attrs.field(default=1.0, validator=_seconds)
    ping_timeout: float = attrs.field(default=2.0, validator=_seconds)
    prewarm: tuple[str, ...] = attrs.field(default=(), validator=_agent_urls)
    redis_max_connections: int = attrs.field(default=16, validator=_AT_LEAST_1)
    redis_min_connections: int = attrs.field(default=2, validator=_AT_LEAST_0)
    redis_timeout: float = attrs.field(default=2.0, validator=_seconds)
    redis_health_check_interval: float = attrs.field(default=30.0, validator=_seconds)
    redis_setinfo: SetInfo = "auto"
    redis_pipelining: bool = True

    def __attrs_post_init__(self) -> None:
        for low, high in (
            ("min_size", "max_size"),
            ("redis_min_connections", "redis_max_connections"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must be at most {high} ({getattr(self, high)})"
                )
