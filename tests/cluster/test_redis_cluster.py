"""Agents given one node of a real 3-shard Redis Cluster: they join, route, keep ``kv`` there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis

from localagent._cluster import Keys
from localagent.testing import RedisClusterServer, localagent_cmd, running_agent

from .conftest import CLUSTER, Cluster


def test_the_keys_of_one_agent_share_a_slot_and_agents_spread() -> None:
    keys = Keys(CLUSTER)
    slots = {
        agent: {
            redis.crc.key_slot(key.encode())
            for key in (
                keys.alive(agent),
                keys.peers(agent),
                keys.inbox(agent),
                keys.replies(agent),
                keys.done(agent, "u1"),
            )
        }
        for agent in (f"127.0.0.1:{port}" for port in range(8000, 8010))
    }
    assert all(len(agent_slots) == 1 for agent_slots in slots.values())
    assert len({next(iter(s)) for s in slots.values()}) > 1  # not all on one shard
    assert redis.crc.key_slot(keys.agents.encode()) == redis.crc.key_slot(keys.broadcast.encode())


async def test_agents_on_a_redis_cluster_route_and_keep_kv(
    cluster: Cluster, redis_cluster_url: str, redis_cluster_server: RedisClusterServer
) -> None:
    cluster.redis_url = redis_cluster_url
    cluster.start("a")
    cluster.start("b")
    async with cluster.peer("a") as a, cluster.peer("b") as b:
        reply = await a.until_routed(cluster.name("b"))
        assert reply.get("result") == {"pong": True}, (reply, "".join(cluster.agents["a"].lines))
        reply = await b.until_routed(cluster.name("a"))
        assert reply["result"] == {"pong": True}, reply
        # Routed work that streams, and a peer message, on the cluster.
        reply = await a.request("kv.set", {"key": "k", "value": 1}, to=cluster.name("b"))
        assert "error" not in reply, reply

        items = {f"key{n}": n for n in range(20)}  # spread over the three shards
        reply = await a.request("kv.mset", {"items": items})
        assert "error" not in reply, reply
        reply = await b.request("kv.mget", {"keys": [*items, "absent"]})
        assert reply["result"]["values"] == items, reply
        reply = await b.request("kv.incr", {"key": "key3", "by": 2})
        assert reply["result"] == {"value": 5}, reply
        reply = await a.request("kv.keys", {"prefix": "key1"})
        assert reply["result"]["keys"] == sorted(k for k in items if k.startswith("key1"))
        shards = set()
        for node in redis_cluster_server.nodes:
            with redis_cluster_server.client(node) as client:
                if client.keys("localagent:kv:key*"):
                    shards.add(node.port)
        assert len(shards) == 3  # the values live on every shard
        reply = await a.request("kv.delete", {"keys": list(items)})
        assert reply["result"] == {"deleted": 20}, reply
    for key in ("a", "b"):
        log = "".join(cluster.agents[key].lines)
        assert "is a Redis Cluster node: using the cluster client" in log
        assert "Traceback" not in log


def test_status_reads_a_redis_cluster(
    cluster: Cluster, subprocess_env: dict[str, str], redis_cluster_url: str
) -> None:
    cluster.redis_url = redis_cluster_url
    cluster.start("a")
    cluster.start("b")
    names = {cluster.name("a"), cluster.name("b")}
    for _ in range(200):
        status = subprocess.run(
            localagent_cmd("cluster", "status", "--redis", redis_cluster_url,
                           "--cluster", CLUSTER, "--json"),
            env=subprocess_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status
        agents = {agent["name"]: agent for agent in json.loads(status.stdout)["agents"]}
        if set(agents) == names and all(a["state"] == "up" for a in agents.values()):
            break
    assert set(agents) == names
    assert all(agent["state"] == "up" for agent in agents.values())


async def test_pooling_stands_aside_on_a_redis_cluster(
    subprocess_env: dict[str, str], redis_cluster_url: str, tmp_path: Path
) -> None:
    from localagent import Client

    with running_agent(
        subprocess_env, "--redis", redis_cluster_url, "-p", "pooling", config_dir=tmp_path
    ) as agent:
        async with Client(agent.url, agent.token) as client:
            await client.request("kv.set", {"key": "pooled", "value": [1, 2]})
            found = await client.request("kv.get", {"key": "pooled"})
            assert found == {"found": True, "value": [1, 2]}
        log = "".join(agent.lines)
    assert "Redis pool not tuned: the store's Redis is a Redis Cluster" in log
    assert "Traceback" not in log
