"""Key-value stores behind one interface: process memory (default) and Redis.

Both implement :class:`localagent_hookspecs.KeyValueStore`. Values are JSON;
Redis holds them JSON-encoded under ``localagent:kv:<key>``, so an integer
written by ``set`` can be incremented by ``incr`` and read back by anyone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from localagent_hookspecs import KeyValueStore, MessageError

from . import _codec

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["UNAVAILABLE", "MemoryStore", "RedisStore", "open_store"]

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

    Attributes:
        pipelining: Whether concurrent commands are auto-pipelined.
    """

    kind = "redis"

    def __init__(self, url: str, *, max_connections: int = 32, timeout: float = 2.0) -> None:
        import redis.asyncio

        self.url = url
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
            TimeoutError,
        )
        self._response_error = redis.exceptions.ResponseError
        self._timeout = timeout
        self._hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = None
        try:  # hiredis (redis-py's C parser, in the ``redis`` extra) also packs in C
            from hiredis import pack_command

            self._hiredis_pack = pack_command
        except ImportError:  # redis-py's own packer then
            pass
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=self.retry(),
        )
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis(connection_pool=pool)
        self.pipelining = False
        # Auto-pipelining (when on): commands issued in the same event-loop
        # iteration go to Redis as one pipeline (one write, one read) instead
        # of one round trip each. Concurrent requests are the common case.
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()

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
        return self._redis.connection_pool

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
            raise MessageError(
                UNAVAILABLE, f"the store (Redis at {_safe_url(self.url)}) is unavailable: {exc}"
            ) from exc

    async def _command(self, *args: Any) -> Any:
        """Run one command (pipelined with the others of this loop iteration, if on)."""
        if not self.pipelining:
            with self._guard():
                return await self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
        future = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            with self._guard():
                results = await self._pipeline([args for args, _future in batch])
        except BaseException as exc:
            for _args, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_args, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on one pooled connection; their raw replies.

        Leaner than a redis-py ``Pipeline`` (no command stack, no reply
        callbacks, one timeout for the whole exchange instead of one per
        reply): the store needs only the raw replies. An error reply is
        returned as its exception, in its place. A dropped connection is
        retried once, like any command of the pool (:meth:`retry`).
        """
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await connection.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: self._exchange(connection, commands),
                lambda _error: connection.disconnect(),
            )
        finally:
            await pool.release(connection)

    def _pack(self, connection: Any, commands: list[tuple[Any, ...]]) -> bytes | list[bytes]:
        """The commands in RESP: hiredis packs in C when it is installed (the ``redis`` extra)."""
        if self._hiredis_pack is None:
            return connection.pack_commands(commands)  # type: ignore[no-any-return]
        return b"".join(map(self._hiredis_pack, commands))

    async def _exchange(self, connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        results: list[Any] = []
        async with asyncio.timeout(self._timeout):
            await connection.send_packed_command(self._pack(connection, commands))
            for _command in commands:
                try:
                    # math.inf: no timer of its own per reply (redis-py >= 8 skips
                    # it); the exchange as a whole has one.
                    results.append(await connection.read_response(timeout=math.inf))
                except self._response_error as exc:
                    results.append(exc)
        return results

    async def get(self, key: str, default: Any = None) -> Any:
        raw = await self._command("GET", KEY_PREFIX + key)
        return default if raw is None else _codec.loads(raw)

    async def get_many(self, keys: Sequence[str], default: Any = None) -> list[Any]:
        if not keys:
            return []
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
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, value in items.items():
                    pipe.set(KEY_PREFIX + key, _codec.dumps(value), px=px)
                await pipe.execute()

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
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
        with self._guard():
            await self._redis.ping()

    async def aclose(self) -> None:
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._redis.aclose()
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
