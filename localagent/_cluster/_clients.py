"""The Redis clients of a cluster node: for a lone Redis, or for a Redis Cluster.

A node starts with clients of a lone Redis; once its Redis answers, it asks
whether that is a node of a Redis Cluster (:func:`.._redis_cluster.is_cluster`)
and, if so, uses :func:`cluster_clients` instead: redis-py's cluster client,
each command sent to the node of its key's slot (an agent's keys share one:
:mod:`._names`), and :class:`~.._redis_cluster.ClusterAutoPipeline`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import attrs

from .._autopipeline import AutoPipeline
from .._redis_cluster import ClusterAutoPipeline, cluster_client

__all__ = ["Clients", "cluster_clients", "lone_clients"]

logger = logging.getLogger("localagent.cluster")


@attrs.frozen
class Clients:
    """One node's clients. Blocking reads hold a connection each: they get clients of their own.

    Attributes:
        redis: Every other command (pipelines, trims, ...).
        inbox_reader: Reads the inbox stream (blocking).
        reply_reader: Reads the replies stream (blocking).
        subscriber: Listens on the broadcast channel.
        pipe: Single commands of all the node's parts, pipelined together.
        errors: The errors that mean "Redis is away for now".
        cluster: Whether these are Redis Cluster clients.
    """

    redis: Any
    inbox_reader: Any
    reply_reader: Any
    subscriber: Any
    pipe: AutoPipeline | ClusterAutoPipeline
    errors: tuple[type[BaseException], ...]
    cluster: bool = False
    #: Makes a new reader client from the old one (Redis Cluster only: :meth:`renew`).
    new_reader: Callable[[Any], Any] | None = None

    async def renew(self, reader: str, what: str) -> Clients:
        """These clients with a new client for ``reader`` (``"inbox_reader"`` ...).

        A Redis Cluster client can stay stuck after a failover followed by the
        death of the new primary: its every command fails with a connection
        error while the cluster serves again (redis-py 8.2). A new client,
        seeded with every node the old one knew, starts afresh; the old one is
        closed. A lone Redis's clients recover by themselves: kept.
        """
        if self.new_reader is None:
            return self
        old = getattr(self, reader)
        renewed = attrs.evolve(self, **{reader: self.new_reader(old)})
        logger.info("cluster %s: Redis still unavailable: reading with a new client", what)
        with contextlib.suppress(Exception):
            await old.aclose()
        return renewed

    async def aclose(self) -> None:
        await self.pipe.aclose()
        for client in (self.redis, self.inbox_reader, self.reply_reader, self.subscriber):
            await client.aclose()


def _errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)


def lone_clients(url: str, *, block_seconds: float) -> Clients:
    """Clients of the lone Redis at ``url``."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    def client(**options: Any) -> redis.asyncio.Redis:
        return redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
            **options,
        )

    main = client(socket_timeout=5.0, max_connections=32)
    return Clients(
        redis=main,
        inbox_reader=client(socket_timeout=block_seconds + 5.0, max_connections=1),
        reply_reader=client(socket_timeout=block_seconds + 5.0, max_connections=1),
        subscriber=client(socket_timeout=None, max_connections=1),
        pipe=AutoPipeline(lambda: main.connection_pool, timeout=5.0),
        errors=_errors(),
    )


def cluster_clients(url: str, *, block_seconds: float, wait: tuple[int, int]) -> Clients:
    """Clients of the Redis Cluster that the node at ``url`` belongs to.

    Args:
        url: Any node of the cluster.
        block_seconds: How long a blocking read blocks.
        wait: The replicas each pipelined write waits for (``WAIT``; 0: none),
            and the milliseconds a ``WAIT`` may take.
    """
    from redis.exceptions import ClusterError, RedisClusterException, TryAgainError

    def client(**options: Any) -> Any:
        return cluster_client(url, socket_connect_timeout=2.0, **options)

    def new_reader(old: Any) -> Any:
        from redis.asyncio.cluster import ClusterNode

        seeds = [ClusterNode(node.host, node.port) for node in old.get_nodes()]
        reader = {"socket_timeout": block_seconds + 5.0, "max_connections": 2}
        return client(startup_nodes=seeds, **reader)

    main = client(socket_timeout=5.0, max_connections=32)  # per node
    return Clients(
        redis=main,
        inbox_reader=client(socket_timeout=block_seconds + 5.0, max_connections=2),
        reply_reader=client(socket_timeout=block_seconds + 5.0, max_connections=2),
        subscriber=client(socket_timeout=None, max_connections=2),
        pipe=ClusterAutoPipeline(main, wait_replicas=wait[0], wait_timeout=wait[1]),
        # A cluster being failed over answers CLUSTERDOWN or TRYAGAIN a while: Redis is away.
        errors=(*_errors(), ClusterError, RedisClusterException, TryAgainError),
        cluster=True,
        new_reader=new_reader,
    )
