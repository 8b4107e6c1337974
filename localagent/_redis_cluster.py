"""Redis Cluster mode: telling a cluster node from a lone Redis, its client, its auto-pipeline.

Users give the URL of one Redis (``redis://host:port``, ``rediss://...``),
whether it is a lone server or any node of a Redis Cluster: :func:`is_cluster`
asks it (``INFO cluster``: ``cluster_enabled:1``), and then the agent uses
redis-py's cluster client (:func:`cluster_client`), which learns the other
nodes and the slot map from that one and follows them (``MOVED``, failovers).

:class:`ClusterAutoPipeline` is :class:`~._autopipeline.AutoPipeline` for a
cluster: the commands queued in one event-loop iteration go as one
``ClusterPipeline`` (one write per node, redirections followed by redis-py),
each command on the node that holds its key's slot. With ``wait_replicas``,
a ``WAIT`` follows the writes sent to each node, so a write is acknowledged
once that many replicas have it (see docs/cluster.md, "Failover").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    import redis
    import redis.asyncio.cluster

__all__ = [
    "ClusterAutoPipeline",
    "cluster_client",
    "is_cluster",
    "is_cluster_sync",
    "is_failover_error",
    "is_redirection",
    "through_failover",
    "without_db",
]

logger = logging.getLogger("localagent.redis")

_T = TypeVar("_T")

#: Commands that write nothing a replica needs: no ``WAIT`` for them.
_READS: Final = frozenset({b"EXISTS", b"GET", b"MGET", b"PUBLISH", b"PING"})
#: Seconds between two warnings about writes that no replica acknowledged in time.
_WAIT_LOG_SECONDS: Final = 10.0


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"


def _plain_options(timeout: float) -> dict[str, Any]:
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout}


async def is_cluster(url: str, *, timeout: float = 2.0) -> bool:
    """Whether the Redis at ``url`` is a node of a Redis Cluster (``INFO cluster``).

    Raises:
        redis.exceptions.ConnectionError: It cannot be reached (or another redis-py error).
    """
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, **_plain_options(timeout))
    try:
        return _cluster_enabled(await client.info("cluster"))
    finally:
        await client.aclose()


def is_cluster_sync(url: str, *, timeout: float = 2.0) -> bool:
    """:func:`is_cluster` with redis-py's synchronous client (for CLI commands)."""
    import redis

    client = redis.Redis.from_url(url, **_plain_options(timeout))
    try:
        return _cluster_enabled(client.info("cluster"))
    finally:
        client.close()


def is_redirection(error: BaseException) -> bool:
    """Whether a reply error says the key lives on another node (a lone client met a cluster)."""
    text = str(error)
    return text.startswith(("MOVED ", "ASK ", "CROSSSLOT")) or "CLUSTERDOWN" in text


#: Reply errors of a node being failed over (or of a replica, until the client follows).
_FAILOVER_ERRORS: Final = ("UNBLOCKED", "READONLY", "MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN",
                           "LOADING", "MASTERDOWN")  # fmt: skip


def is_failover_error(error: BaseException) -> bool:
    """Whether a reply error is one a failover causes for a while (a blocked read ended...)."""
    return str(error).startswith(_FAILOVER_ERRORS)


#: Seconds a write is retried while the cluster fails over (a failover takes a few).
FAILOVER_SECONDS: Final = 30.0


async def through_failover(
    command: Callable[[], Awaitable[_T]],
    errors: tuple[type[BaseException], ...],
    *,
    within: float = FAILOVER_SECONDS,
) -> _T:
    """Run ``command()`` until it succeeds, while it fails as a failover makes it fail.

    The cluster client follows the slot to its new primary once the cluster
    elected one; meanwhile the command fails with a connection error, a
    ``CLUSTERDOWN``, ``TRYAGAIN`` or ``READONLY`` reply: it is sent again,
    waiting 50 ms, then longer, up to 1 s, for at most ``within`` seconds.

    Raises:
        Exception: The last failure, once ``within`` seconds have passed (or
            any other failure at once).
    """
    import redis.exceptions

    deadline = time.monotonic() + within
    delay = 0.05
    while True:
        try:
            return await command()
        except redis.exceptions.ResponseError as exc:
            if not is_failover_error(exc) or time.monotonic() > deadline:
                raise
        except errors:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


def cluster_client(url: str, **options: Any) -> redis.asyncio.cluster.RedisCluster:
    """redis-py's asyncio cluster client, started from the node at ``url``.

    A database number in the URL must be 0 (a cluster has no other). The
    ``max_connections`` of ``options`` bound each node's pool.
    """
    from redis.asyncio.cluster import RedisCluster

    return RedisCluster.from_url(without_db(url), **options)


def without_db(url: str) -> str:
    """``url`` without a ``/0`` path (the cluster client refuses a database but 0)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.path in ("/0", "/"):
        return parts._replace(path="").geturl()
    return url


_Queued = tuple[tuple[Any, ...], "asyncio.Future[Any] | None"]


class ClusterAutoPipeline:
    """Sends the commands queued in one loop iteration as one cluster pipeline.

    The same face as :class:`~._autopipeline.AutoPipeline` (``__call__``,
    :meth:`fire`, :meth:`fire_last`, :meth:`aclose`). Commands sent to one
    node keep their order; commands sent to different nodes do not: a caller
    that needs one write done before another on another slot awaits it first.

    Args:
        client: The cluster client.
        wait_replicas: After the writes of an iteration, ``WAIT`` for this many
            replicas of each node written to (0: no ``WAIT``).
        wait_timeout: Milliseconds a ``WAIT`` may take; a write that no replica
            acknowledged by then stands (it is on the primary), with a warning.
    """

    def __init__(
        self,
        client: redis.asyncio.cluster.RedisCluster,
        *,
        wait_replicas: int = 0,
        wait_timeout: int = 1000,
    ) -> None:
        self._client = client
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._queue: list[_Queued] = []
        self._last: dict[tuple[Any, ...], list[Any]] = {}
        self._scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()
        self._last_wait_warning = -_WAIT_LOG_SECONDS
        #: Writes that ``WAIT`` could not confirm on ``wait_replicas`` replicas.
        self.unconfirmed = 0

    def __call__(self, *args: Any) -> asyncio.Future[Any]:
        """Queue a command; a future of its reply (an error reply is its exception)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        self._schedule()
        return future

    def fire(self, *args: Any) -> None:
        """Queue a command whose reply nobody waits for (a failure is logged at DEBUG)."""
        self._queue.append((args, None))
        self._schedule()

    def fire_last(self, head: tuple[Any, ...], items: Iterable[Any]) -> None:
        """Queue ``*head, *items`` after this iteration's other commands, merged by ``head``."""
        self._last.setdefault(head, []).extend(items)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        last, self._last = self._last, {}
        batch.extend(((*head, *items), None) for head, items in last.items())
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
        """Run ``commands`` in one cluster pipeline (plus a ``WAIT`` per node written to)."""
        client = self._client
        pipe = client.pipeline(transaction=False)
        written: dict[str, Any] = {}  # node name -> node
        published: dict[int, asyncio.Future[Any]] = {}
        for index, args in enumerate(commands):
            if _name(args[0]) == b"PUBLISH":  # a cluster pipeline refuses it: sent on its own
                published[index] = asyncio.ensure_future(_reply(client.execute_command(*args)))
                continue
            pipe.execute_command(*args)
            if self.wait_replicas and _name(args[0]) not in _READS:
                node = self._node_of(args[1])
                if node is not None:
                    written[node.name] = node
        for node in written.values():
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout, target_nodes=node)
        piped = len(commands) - len(published)
        replies = await pipe.execute(raise_on_error=False) if piped else []
        for reply in replies[piped:]:
            self._check_wait(reply)
        if not published:
            return list(replies[:piped])
        results = iter(replies[:piped])
        return [
            await published[index] if index in published else next(results)
            for index in range(len(commands))
        ]

    def _node_of(self, key: Any) -> Any:
        client = self._client
        try:
            return client.nodes_manager.get_node_from_slot(client.keyslot(key))
        except Exception:  # no node known for the slot now: the command's own reply says
            return None

    def _check_wait(self, reply: Any) -> None:
        if not isinstance(reply, BaseException) and int(reply) >= self.wait_replicas:
            return
        self.unconfirmed += 1
        now = time.monotonic()
        if now - self._last_wait_warning >= _WAIT_LOG_SECONDS:
            self._last_wait_warning = now
            logger.warning(
                "Redis Cluster: writes not confirmed by %d replica(s) within %d ms (%s); "
                "they stand on the primary, which may lose them if it fails before "
                "replicating them",
                self.wait_replicas,
                self.wait_timeout,
                reply if isinstance(reply, BaseException) else f"{reply} acknowledged",
            )

    async def aclose(self) -> None:
        """Wait for the pipelines already sent."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


async def _reply(command: Any) -> Any:
    """The reply of ``command``, or the error it failed with."""
    try:
        return await command
    except Exception as exc:
        return exc


def _name(command: Any) -> bytes:
    return (command.encode() if isinstance(command, str) else bytes(command)).upper()
