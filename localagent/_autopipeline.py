"""``AutoPipeline``: the Redis commands issued in one event-loop iteration, sent as one pipeline.

Concurrent requests each issue a command or two; sent one by one, each pays a
round trip and redis-py's per-command machinery. Collected per loop iteration,
they travel in one write on one pooled connection and their raw replies are
read back in order: commands packed in C by hiredis when it is installed (the
``redis`` extra), no command stack or reply callbacks, one timeout for the
whole exchange instead of a timer per reply. An error reply fails only its
own command. The kv store (``RedisStore``, when the pooling plugin turns
pipelining on) and the cluster node both use it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["AutoPipeline", "CommandQueue"]

logger = logging.getLogger("localagent.redis")

_Queued = tuple[tuple[Any, ...], "asyncio.Future[Any] | None"]


class CommandQueue:
    """The commands queued during one loop iteration, handed to :meth:`_exchange` at its end.

    The face both auto-pipelines share (``__call__``, :meth:`fire`,
    :meth:`fire_last`, :meth:`before_flush`, :meth:`aclose`); a subclass says
    how one batch of commands travels (:meth:`_exchange`).
    """

    def __init__(self) -> None:
        self._queue: list[_Queued] = []
        self._last: dict[tuple[Any, ...], list[Any]] = {}
        self._before: list[Callable[[], None]] = []
        self._scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()

    def __call__(self, *args: Any) -> asyncio.Future[Any]:
        """Queue a command; a future of its raw reply (an error reply is its exception)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        self._schedule()
        return future

    def fire(self, *args: Any) -> None:
        """Queue a command whose reply nobody waits for (a failure is logged at DEBUG)."""
        self._queue.append((args, None))
        self._schedule()

    def fire_last(self, head: tuple[Any, ...], items: Iterable[Any]) -> None:
        """Queue ``*head, *items`` to go after every other command of this iteration.

        The items of every call with the same ``head`` are merged into one
        command (one ``XACK stream group id...`` for the whole iteration, say),
        and nobody waits for its reply.
        """
        self._last.setdefault(head, []).extend(items)
        self._schedule()

    def before_flush(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when this iteration's commands are about to be sent.

        What it queues goes in the same pipeline: a caller that gathers work
        during the iteration (several messages in one stream entry) builds its
        commands then, without a loop iteration of its own.
        """
        self._before.append(callback)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if self._before:  # still scheduled meanwhile: what they queue goes now
            callbacks, self._before = self._before, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # the callback's own failure: the commands still go
                    logger.exception("a callback before a Redis pipeline failed")
        self._scheduled = False
        if self._before:  # added by a callback: for the next iteration
            self._schedule()
        batch, self._queue = self._queue, []
        last, self._last = self._last, {}
        batch.extend(((*head, *items), None) for head, items in last.items())
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(self, batch: list[_Queued]) -> None:
        try:
            results = await self._exchange([args for args, _future in batch])
        except BaseException as exc:
            for args, future in batch:
                if future is None:
                    logger.debug("Redis command %s failed: %r", args[0], exc)
                elif not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (args, future), result in zip(batch, results, strict=True):
            if future is None:
                if isinstance(result, BaseException):
                    logger.debug("Redis command %s failed: %r", args[0], result)
            elif future.done():
                continue
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands``; their replies in order (an error reply as its exception)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Wait for the pipelines already sent."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


class AutoPipeline(CommandQueue):
    """Sends the commands queued in one loop iteration as one pipeline.

    Args:
        pool: Returns the connection pool to use now (a store may swap its
            pool; the next flush takes the new one).
        timeout: Seconds allowed for one exchange (write and every reply).
    """

    def __init__(self, pool: Callable[[], redis.asyncio.ConnectionPool], *, timeout: float) -> None:
        super().__init__()
        import redis.exceptions

        self._pack_command: Callable[[tuple[Any, ...]], bytes] | None = None
        try:  # hiredis packs commands in C
            from hiredis import pack_command

            self._pack_command = pack_command
        except ImportError:  # redis-py's own packer then
            pass
        self._pool = pool
        self._timeout = timeout
        self._response_error = redis.exceptions.ResponseError

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Write ``commands`` on one pooled connection; their raw replies, in order.

        A dropped connection (Redis restarted) is retried once on a new one,
        as the pool's retry policy says.
        """
        pool = self._pool()
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await connection.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: self._roundtrip(connection, commands),
                lambda _error: connection.disconnect(),
            )
        finally:
            await pool.release(connection)

    async def _roundtrip(self, connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        pack = self._pack_command
        packed = b"".join(map(pack, commands)) if pack else connection.pack_commands(commands)
        results: list[Any] = []
        async with asyncio.timeout(self._timeout):
            await connection.send_packed_command(packed)
            for _command in commands:
                try:
                    # math.inf: no timer per reply (redis-py >= 8 skips it); the
                    # exchange as a whole has one.
                    results.append(await connection.read_response(timeout=math.inf))
                except self._response_error as exc:
                    results.append(exc)
        return results
