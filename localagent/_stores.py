"""Key-value stores behind one interface: process memory (default) and Redis.

Both implement :class:`localagent_hookspecs.KeyValueStore`. Values are JSON;
Redis holds them JSON-encoded under ``localagent:kv:<key>``, so an integer
written by ``set`` can be incremented by ``incr`` and read back by anyone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from localagent_hookspecs import KeyValueStore, MessageError

from . import _codec

if TYPE_CHECKING:
    import redis.asyncio

    from ._autopipeline import AutoPipeline

__all__ = ["UNAVAILABLE", "MemoryStore", "RedisStore", "open_store"]

logger = logging.getLogger("localagent.store")

UNAVAILABLE = "unavailable"
NOT_AN_INTEGER = "not_an_integer"
KEY_PREFIX = "localagent:kv:"


class MemoryStore:
    """The embedded default: a dict in this process, with lazy TTL expiry."""

    kind = "memory"

    def __init__(self) -> None:
        # key -> (value, expiry on the monotonic clock or None)
        self._data: dict[str, tuple[Any, float | None]] = {}

    def _live(self, key: str) -> tuple[Any, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= time.monotonic():
            del self._data[key]
            return None
        return entry

    async def get(self, key: str, default: Any = None) -> Any:
        entry = self._live(key)
        return default if entry is None else entry[0]

    async def get_many(self, keys: Sequence[str], default: Any = None) -> list[Any]:
        return [await self.get(key, default) for key in keys]

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._data[key] = (value, time.monotonic() + ttl if ttl is not None else None)

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        expiry = time.monotonic() + ttl if ttl is not None else None
        self._data.update({key: (value, expiry) for key, value in items.items()})

    async def delete(self, keys: Sequence[str]) -> int:
        return sum(self._data.pop(key, None) is not None for key in set(keys) if self._live(key))

    async def incr(self, key: str, amount: int = 1) -> int:
        entry = self._live(key)
        current, expiry = entry if entry is not None else (0, None)
        if type(current) is not int:
            raise MessageError(NOT_AN_INTEGER, f"the value of {key!r} is not an integer")
        self._data[key] = (current + amount, expiry)
        return current + amount

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in list(self._data) if k.startswith(prefix) and self._live(k))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    netloc += f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=netloc).geturl()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Values in Redis through ``redis.asyncio``.

    Plainly configured by default: a bounded blocking connection pool (a
    command waits for a free connection beyond ``max_connections``),
    redis-py's default handshake, one round trip per command. Multi-key requests are single commands
    (``MGET``, ``DEL``) or one transaction (:meth:`set_many`) either way.

    :meth:`use_pool` is the hook an optimization plugin (``localagent-pooling``)
    fills: it hands over a tuned pool and turns on auto-pipelining, where the
    single-key commands issued in the same event-loop iteration (concurrent
    requests) travel as one pipeline.

    Fails fast: a short connect timeout and one retry, so a request gets an
    ``unavailable`` reply promptly while Redis is down; the pool reconnects
    by itself on the next request once Redis is back.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        max_connections: Upper bound of the default pool.
        timeout: Seconds for connecting, for each reply, and for a free connection.

    Redis Cluster: the URL may name any node of one. :meth:`ping` (the
    agent's start) asks (``INFO cluster``), and so does the first command a
    node redirects (``MOVED``, when Redis was away at the start); from then on
    the store uses redis-py's cluster client: single-key commands go to the
    node of their key's slot, ``get_many`` and ``delete`` are split by slot,
    ``set_many`` is atomic per slot only, ``keys`` scans every primary. The
    pool of :meth:`use_pool` is for one server: a cluster store keeps its own.

    Attributes:
        pipelining: Whether concurrent commands are auto-pipelined.
        cluster: Whether the Redis turned out to be a Redis Cluster.
    """

    kind = "redis"

    def __init__(self, url: str, *, max_connections: int = 32, timeout: float = 2.0) -> None:
        import redis.asyncio

        # Here, not at the top: an agent on the memory store never loads the Redis machinery.
        from ._autopipeline import AutoPipeline

        self.url = url
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
            TimeoutError,
        )
        self._response_error = redis.exceptions.ResponseError
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=self.retry(),
        )
        self._redis: Any = redis.asyncio.Redis(connection_pool=pool)
        self._timeout = timeout
        self._max_connections = max_connections
        self.pipelining = False
        self.cluster = False
        self._detected = False
        # Auto-pipelining (when on): commands issued in the same event-loop
        # iteration go to Redis as one pipeline (one write, one read) instead
        # of one round trip each. Concurrent requests are the common case.
        self._pipeline: AutoPipeline = AutoPipeline(
            lambda: self._redis.connection_pool, timeout=timeout
        )

    @staticmethod
    def retry() -> Any:
        """The retry policy the store's connections use: once, after 10-50 ms.

        A pool handed to :meth:`use_pool` should use it too (``retry=``), so
        a command that finds its connection dropped (Redis restarted) is
        sent once more on a new connection instead of failing.
        """
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        return Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1)

    @property
    def pool(self) -> redis.asyncio.ConnectionPool:
        """The connection pool the store uses now."""
        pool: redis.asyncio.ConnectionPool = self._redis.connection_pool
        return pool

    async def use_pool(
        self, pool: redis.asyncio.ConnectionPool, *, pipelining: bool = True
    ) -> None:
        """Use ``pool`` from now on (the store owns it: :meth:`aclose` disconnects it).

        The previous pool's connections are closed. Commands already sent
        finish on the old pool.

        Args:
            pool: A ``redis.asyncio`` connection pool for the same Redis.
            pipelining: Auto-pipeline the commands issued in the same
                event-loop iteration.
        """
        import redis.asyncio

        if self.cluster:
            await pool.disconnect()
            raise ValueError("the store's Redis is a Redis Cluster: it keeps a pool per node")
        previous = self._redis
        self._redis = redis.asyncio.Redis(connection_pool=pool)
        self.pipelining = pipelining
        await previous.aclose()
        await previous.connection_pool.disconnect()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> MessageError:
        return MessageError(
            UNAVAILABLE, f"the store (Redis at {_safe_url(self.url)}) is unavailable: {exc}"
        )

    async def _command(self, *args: Any) -> Any:
        """Run one command (pipelined with the others of this loop iteration, if on)."""
        try:  # _guard(), inlined: this runs for every kv request
            if not self.pipelining:
                return await self._redis.execute_command(*args)
            return await self._pipeline(*args)
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        except self._response_error as exc:
            from ._redis_cluster import is_redirection  # an error reply: not the common path

            if self.cluster or not is_redirection(exc):
                raise
        await self._use_cluster()  # a lone client met a cluster node (Redis was away at start)
        return await self._command(*args)

    async def _detect(self) -> None:
        """Ask the Redis whether it is a Redis Cluster (once it answers); if so, use one."""
        if self._detected:
            return
        from ._redis_cluster import is_cluster

        with self._guard():
            found = await is_cluster(self.url, timeout=self._timeout)
        self._detected = True
        if found and not self.cluster:
            await self._use_cluster()

    async def _use_cluster(self) -> None:
        import redis.exceptions

        from ._redis_cluster import ClusterAutoPipeline, cluster_client

        self._detected = self.cluster = True
        previous = self._redis
        self._redis = cluster_client(
            self.url,
            max_connections=self._max_connections,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
        )
        self._pipeline = ClusterAutoPipeline(self._redis)  # type: ignore[assignment]
        self._errors += (redis.exceptions.ClusterError, redis.exceptions.RedisClusterException)
        await previous.aclose()
        await previous.connection_pool.disconnect()
        logger.info(
            "store: the Redis at %s is a Redis Cluster node: using the cluster client",
            _safe_url(self.url),
        )

    async def get(self, key: str, default: Any = None) -> Any:
        raw = await self._command("GET", KEY_PREFIX + key)
        return default if raw is None else _codec.loads(raw)

    async def get_many(self, keys: Sequence[str], default: Any = None) -> list[Any]:
        if not keys:
            return []
        if self.cluster:  # one MGET per slot
            with self._guard():
                raws = await self._redis.mget_nonatomic([KEY_PREFIX + key for key in keys])
            return [default if raw is None else _codec.loads(raw) for raw in raws]
        raws = await self._command("MGET", *(KEY_PREFIX + key for key in keys))
        return [default if raw is None else _codec.loads(raw) for raw in raws]

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        expiry = ("PX", max(1, round(ttl * 1000))) if ttl is not None else ()
        await self._command("SET", KEY_PREFIX + key, _codec.dumps(value), *expiry)

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        if not items:
            return
        px = max(1, round(ttl * 1000)) if ttl is not None else None
        with self._guard():
            # A cluster's transaction spans one slot: there, each key is set on its own.
            async with self._redis.pipeline(transaction=not self.cluster) as pipe:
                for key, value in items.items():
                    pipe.set(KEY_PREFIX + key, _codec.dumps(value), px=px)
                await pipe.execute()

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        if self.cluster:  # one DEL per slot
            with self._guard():
                return int(await self._redis.delete(*(KEY_PREFIX + key for key in keys)))
        return int(await self._command("DEL", *(KEY_PREFIX + key for key in keys)))

    async def incr(self, key: str, amount: int = 1) -> int:
        try:
            return int(await self._command("INCRBY", KEY_PREFIX + key, amount))
        except self._response_error as exc:
            raise MessageError(NOT_AN_INTEGER, f"the value of {key!r} is not an integer") from exc

    async def keys(self, prefix: str = "") -> list[str]:
        pattern = KEY_PREFIX + _glob_escape(prefix) + "*"
        found: list[str] = []
        with self._guard():
            async for raw in self._redis.scan_iter(match=pattern, count=1000):
                found.append(raw.decode()[len(KEY_PREFIX) :])
        return sorted(found)

    async def ping(self) -> None:
        await self._detect()
        with self._guard():
            await self._redis.ping()

    async def aclose(self) -> None:
        await self._pipeline.aclose()
        await self._redis.aclose()
        if not self.cluster:
            await self._redis.connection_pool.disconnect()


def open_store(redis_url: str | None) -> KeyValueStore:
    """The store the settings ask for: Redis when a URL is given, else memory."""
    if redis_url is None:
        return MemoryStore()
    try:
        import redis  # noqa: F401
    except ImportError:
        from .exceptions import ConfigError

        raise ConfigError(
            "a Redis URL is configured but redis-py is not installed; "
            "install the extra: pip install 'localagent[redis]'"
        ) from None
    return RedisStore(redis_url)
