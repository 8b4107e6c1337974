"""``ClusterAutoPipeline`` on a real Redis Cluster: by slot, redirections, ``WAIT``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from localagent._cluster._clients import cluster_clients, lone_clients
from localagent._redis_cluster import ClusterAutoPipeline, cluster_client, is_cluster
from localagent.testing import RedisClusterServer, RedisServer


def wait_calls(server: RedisClusterServer) -> int:
    """``WAIT`` commands the cluster's nodes ran so far."""
    total = 0
    for node in server.nodes:
        with server.client(node) as client:
            total += int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
    return total


async def test_commands_of_one_iteration_go_to_their_slots_nodes(
    redis_cluster_server: RedisClusterServer, redis_cluster_url: str
) -> None:
    assert await is_cluster(redis_cluster_url)
    client = cluster_client(redis_cluster_url)
    pipe = ClusterAutoPipeline(client)
    try:
        keys = [f"k{n}" for n in range(30)]  # every shard
        results = await asyncio.gather(*(pipe("SET", key, n) for n, key in enumerate(keys)))
        assert results == [b"OK"] * 30
        pipe.fire("PUBLISH", "news", "x")  # refused by cluster pipelines: sent on its own
        assert await pipe("GET", "k7") == b"7"
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await pipe("LPUSH", "k7", "x")  # an error reply fails its own command only
        assert await pipe("GET", "k8") == b"8"
        assert wait_calls(redis_cluster_server) == 0  # not asked for
    finally:
        await pipe.aclose()
        await client.aclose()


async def test_writes_wait_for_a_replica_and_follow_a_failover(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = tmp_path_factory.mktemp("redis-cluster-pipe")
    with RedisClusterServer(directory, replicas=1, node_timeout=1000) as server:
        client = cluster_client(server.url)
        pipe = ClusterAutoPipeline(client, wait_replicas=1, wait_timeout=5000)
        try:
            keys = [f"k{n}" for n in range(30)]
            await asyncio.gather(*(pipe("SET", key, n) for n, key in enumerate(keys)))
            assert pipe.unconfirmed == 0
            assert 1 <= wait_calls(server) <= 3  # one per primary written to, per flush
            for key in keys:  # every write is on the replica too
                primary = server.primary_of(key)
                with server.client(server.replica_of(primary)) as replica:
                    replica.execute_command("READONLY")
                    assert replica.get(key) is not None
            # The slot map the client holds goes stale: MOVED, followed.
            old = server.primary_of("k1")
            await asyncio.to_thread(server.failover, old)
            assert await pipe("INCR", "k1") == 2
            assert await pipe("GET", "k1") == b"2"
        finally:
            await pipe.aclose()
            await client.aclose()


async def test_a_lone_redis_is_not_a_cluster(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, durable=False)
    server.start()
    try:
        assert not await is_cluster(server.url)
    finally:
        server.stop()


async def test_a_store_that_missed_the_start_switches_when_a_node_redirects_it(
    redis_cluster_url: str,
) -> None:
    from localagent._stores import RedisStore

    store = RedisStore(redis_cluster_url)  # no ping(): as if Redis was away at the start
    try:
        assert not store.cluster
        for n in range(10):  # some keys live on another node: MOVED, then the cluster client
            await store.set(f"moved{n}", n)
        assert store.cluster
        assert await store.get_many([f"moved{n}" for n in range(10)]) == list(range(10))
        assert await store.delete([f"moved{n}" for n in range(10)]) == 10
    finally:
        await store.aclose()


async def test_a_renewed_reader_is_a_new_client_seeded_with_every_known_node(
    redis_cluster_server: RedisClusterServer, redis_cluster_url: str
) -> None:
    clients = cluster_clients(redis_cluster_url, block_seconds=1.0, wait=(0, 0))
    try:
        old = clients.inbox_reader
        await old.set("{r}k", 1)  # the old client learns the cluster's nodes
        renewed = await clients.renew("inbox_reader", "inbox")
        assert renewed.inbox_reader is not old
        assert renewed.reply_reader is clients.reply_reader  # only the one asked for
        startup = renewed.inbox_reader.nodes_manager.startup_nodes.values()
        seeds = {(node.host, node.port) for node in startup}  # not only the URL's node
        assert {("127.0.0.1", node.port) for node in redis_cluster_server.nodes} <= seeds
        assert await renewed.inbox_reader.get("{r}k") == b"1"
        clients = renewed
    finally:
        await clients.aclose()


async def test_a_lone_redis_keeps_its_readers(redis_url: str) -> None:
    clients = lone_clients(redis_url, block_seconds=1.0)
    try:
        assert await clients.renew("inbox_reader", "inbox") is clients
    finally:
        await clients.aclose()
