"""Redis Cluster mode: telling a cluster node from a lone Redis, its client, its auto-pipeline.

Users give the URL of one Redis (``redis://host:port``, ``rediss://...``),
whether it is a lone server or any node of a Redis Cluster: :func:`is_cluster`
asks it (``INFO cluster``: ``cluster_enabled:1``), and then the agent uses
redis-py's cluster client (:func:`cluster_client`), which learns the other
nodes and the slot map from that one and follows them (``MOVED``, failovers).

:class:`ClusterAutoPipeline` is :class:`~._autopipeline.AutoPipeline` for a
cluster: the commands queued in one event-loop iteration go to the nodes that
hold their keys' slots, one write per node, the nodes concurrently; what a
node redirects (a failover) goes again through redis-py's cluster pipeline,
which follows it. With ``wait_replicas``, a ``WAIT`` follows the writes sent
to each node, so a write is acknowledged once that many replicas have it
(see docs/cluster.md, "Failover").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._autopipeline import CommandQueue

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
    from redis import exceptions

    classes = (exceptions.AskError, exceptions.ClusterCrossSlotError, exceptions.ClusterDownError)
    text = str(error)  # redis-py drops the code from the text of those classes
    return isinstance(error, classes) or text.startswith(("MOVED ", "ASK ", "CROSSSLOT"))


#: Reply errors of a node being failed over (or of a replica, until the client follows).
_FAILOVER_ERRORS: Final = ("UNBLOCKED", "READONLY", "MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN",
                           "LOADING", "MASTERDOWN")  # fmt: skip


def is_failover_error(error: BaseException) -> bool:
    """Whether a reply error is one a failover causes for a while (a blocked read ended...).

    redis-py turns some into classes of their own and drops the code from the text.
    """
    from redis import exceptions

    classes = (
        exceptions.AskError,  # and MovedError
        exceptions.TryAgainError,
        exceptions.ClusterDownError,  # and MasterDownError
        exceptions.ReadOnlyError,
        exceptions.BusyLoadingError,
    )
    return isinstance(error, classes) or str(error).startswith(_FAILOVER_ERRORS)


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


class ClusterAutoPipeline(CommandQueue):
    """Sends the commands queued in one loop iteration as one cluster pipeline.

    The same face as :class:`~._autopipeline.AutoPipeline` (its
    :class:`~._autopipeline.CommandQueue`). Commands sent to one
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
        super().__init__()
        import redis.exceptions

        self._client = client
        self._response_error = redis.exceptions.ResponseError
        self._pack_command: Callable[[tuple[Any, ...]], bytes] | None = None
        try:  # hiredis packs commands in C
            from hiredis import pack_command

            self._pack_command = pack_command
        except ImportError:  # redis-py's own packer then
            pass
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._last_wait_warning = -_WAIT_LOG_SECONDS
        #: Writes that ``WAIT`` could not confirm on ``wait_replicas`` replicas.
        self.unconfirmed = 0

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands``, each on its slot's node; their raw replies, in order.

        The fast way: the commands of each node packed into one write on one of
        its connections, the nodes concurrently, replies read raw (as
        :class:`~._autopipeline.AutoPipeline` does), a ``WAIT`` after a node's
        writes if asked. What that cannot settle (a node that moved its slot or
        is failing over, a dropped connection, ``PUBLISH``) goes through
        redis-py's cluster pipeline, which follows redirections and refreshes
        the slot map. Every command here is safe to send twice (``XADD`` of an
        entry whose copies the reader drops, ``XACK``, ``SET NX``, reads).
        """
        if not self._client.nodes_manager.slots_cache:  # the first use: learn the slot map
            await self._client.initialize()
        results: list[Any] = [_UNSENT] * len(commands)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, args in enumerate(commands):
            if _name(args[0]) == b"PUBLISH":
                continue
            node = self._route(args[1])
            if node is not None:
                by_node.setdefault(node.name, (node, []))[1].append(index)
        if by_node:
            await asyncio.gather(
                *(
                    self._node_exchange(node, indices, commands, results)
                    for node, indices in by_node.values()
                )
            )
        rest = [index for index, result in enumerate(results) if _unsettled(result)]
        if rest:
            replies = await self._slow([commands[index] for index in rest])
            for index, reply in zip(rest, replies, strict=True):
                results[index] = reply
        return results

    def _route(self, key: Any) -> Any:
        """The node serving ``key``'s slot, as the client knows it (``None`` if unknown)."""
        client = self._client
        try:
            nodes = client.nodes_manager.slots_cache.get(client.keyslot(key))
        except Exception:  # not a key: the slow way says
            return None
        return nodes[0] if nodes else None

    async def _node_exchange(
        self,
        node: Any,
        indices: list[int],
        commands: list[tuple[Any, ...]],
        results: list[Any],
    ) -> None:
        """Send one node's commands in one write; file the replies read in ``results``."""
        batch = [commands[index] for index in indices]
        wait = self.wait_replicas
        if wait and any(_name(args[0]) not in _READS for args in batch):
            batch.append(("WAIT", wait, self.wait_timeout))
        else:
            wait = 0
        try:
            connection = node.acquire_connection()
        except Exception:  # every connection of the node busy: the slow way waits for one
            return
        try:
            pack = self._pack_command
            packed = b"".join(map(pack, batch)) if pack else connection.pack_commands(batch)
            await connection.send_packed_command(packed)
            for index in indices:
                try:
                    results[index] = await connection.read_response()
                except self._response_error as exc:
                    results[index] = exc
            if wait:
                try:
                    self._check_wait(await connection.read_response(), wait)
                except self._response_error as exc:
                    self._check_wait(exc, wait)
        except Exception as exc:  # the connection dropped: what was not read goes the slow way
            logger.debug("Redis Cluster: node %s: %r", node.name, exc)
            await connection.disconnect()
        finally:
            node.release(connection)

    async def _slow(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in a redis-py cluster pipeline (plus a ``WAIT`` per node written to)."""
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
                node = self._route(args[1])
                if node is not None:
                    written[node.name] = node
        for node in written.values():
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout, target_nodes=node)
        piped = len(commands) - len(published)
        replies = await pipe.execute(raise_on_error=False) if piped else []
        for reply in replies[piped:]:
            self._check_wait(reply, self.wait_replicas)
        results = iter(replies[:piped])
        return [
            await published[index] if index in published else next(results)
            for index in range(len(commands))
        ]

    def _check_wait(self, reply: Any, wanted: int) -> None:
        if not isinstance(reply, BaseException) and int(reply) >= wanted:
            return
        self.unconfirmed += 1
        now = time.monotonic()
        if now - self._last_wait_warning >= _WAIT_LOG_SECONDS:
            self._last_wait_warning = now
            logger.warning(
                "Redis Cluster: writes not confirmed by %d replica(s) within %d ms (%s); "
                "they stand on the primary, which may lose them if it fails before "
                "replicating them",
                wanted,
                self.wait_timeout,
                reply if isinstance(reply, BaseException) else f"{reply} acknowledged",
            )


#: A command not sent yet, or whose reply was not read.
_UNSENT: Final = object()


def _unsettled(result: Any) -> bool:
    """Whether a fast-way result needs the slow way: not read, or a redirection."""
    return result is _UNSENT or (isinstance(result, Exception) and is_failover_error(result))


async def _reply(command: Any) -> Any:
    """The reply of ``command``, or the error it failed with."""
    try:
        return await command
    except Exception as exc:
        return exc


def _name(command: Any) -> bytes:
    return (command.encode() if isinstance(command, str) else bytes(command)).upper()
