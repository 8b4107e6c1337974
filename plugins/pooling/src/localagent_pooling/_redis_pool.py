"""The tuned Redis pool the plugin hands to the agent's kv store.

A ``redis.asyncio.BlockingConnectionPool``: bounded (callers wait for a free
connection instead of opening ever more), connections checked with PING after
sitting idle (``health_check_interval``), short connect/reply/wait timeouts so
a request fails fast while Redis is down, one quick retry on a dropped
connection, and a trimmed handshake: no ``CLIENT SETINFO`` where the server
would answer it with an error anyway (Redis < 7.2).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING, Any

from ._config import PoolingConfig

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["SETINFO_SINCE", "redis_pool", "redis_version", "trimmed_handshake"]

#: The first Redis version that knows ``CLIENT SETINFO``.
SETINFO_SINCE = (7, 2)


def trimmed_handshake() -> dict[str, Any]:
    """Connection arguments that leave ``CLIENT SETINFO`` out of redis-py's handshake."""
    if importlib.util.find_spec("redis.driver_info") is not None:
        return {"driver_info": None}  # redis-py with DriverInfo: None disables SETINFO
    return {"lib_name": None, "lib_version": None}  # older redis-py


async def redis_version(url: str, timeout: float) -> tuple[int, ...]:
    """The server's version (``INFO server``), over one connection with no SETINFO."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, **trimmed_handshake()
    )
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return tuple(int(part) for part in str(info["redis_version"]).split(".")[:3])


async def redis_pool(
    url: str, config: PoolingConfig, *, retry: Any = None
) -> redis.asyncio.BlockingConnectionPool:
    """A tuned pool for ``url``, with ``redis_min_connections`` already open.

    Args:
        url: The Redis URL the store uses.
        config: The plugin's settings.
        retry: The ``redis.asyncio.retry.Retry`` policy for its connections.

    Raises:
        redis.exceptions.ConnectionError: Redis could not be reached.
    """
    import redis.asyncio

    options: dict[str, Any] = {}
    trim = config.redis_setinfo == "never"
    if config.redis_setinfo == "auto":
        trim = await redis_version(url, config.redis_timeout) < SETINFO_SINCE
    if trim:
        options.update(trimmed_handshake())
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=config.redis_max_connections,
        timeout=config.redis_timeout,
        socket_connect_timeout=config.redis_timeout,
        socket_timeout=config.redis_timeout,
        socket_keepalive=True,
        health_check_interval=config.redis_health_check_interval,
        retry=retry,
        **options,
    )
    connections = await asyncio.gather(
        *(pool.get_connection() for _ in range(config.redis_min_connections)),  # type: ignore[no-untyped-call]
        return_exceptions=True,
    )
    for connection in connections:
        if not isinstance(connection, BaseException):
            await pool.release(connection)
    failures = [c for c in connections if isinstance(c, BaseException)]
    if failures:
        await pool.disconnect()
        raise failures[0]
    return pool
