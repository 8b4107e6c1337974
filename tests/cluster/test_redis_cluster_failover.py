"""Failover of the Redis Cluster primary holding an agent's inbox, with routed requests in flight.

A real cluster of 3 primaries with a replica each. Client on agent A, requests
routed to agent B: ``kv.incr`` of a key of its own each (so a request handled
twice shows as a 2), the values on a shard that is not failed over. Across a
``CLUSTER FAILOVER`` and then a kill of the new primary, every request whose
send was acknowledged is answered, exactly once, and routing resumes by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from localagent._cluster import Keys
from localagent.testing import RedisClusterServer

from .conftest import CLUSTER, PATIENCE, Cluster, Peer

#: Requests in flight at once.
IN_FLIGHT = 32


@pytest.fixture
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    directory = tmp_path_factory.mktemp("redis-cluster-replicas")
    with RedisClusterServer(directory, replicas=1, node_timeout=1000) as server:
        yield server


def tag_elsewhere(server: RedisClusterServer, *busy_keys: str) -> str:
    """A hash tag whose slot lives on a primary that holds none of ``busy_keys``."""
    busy = {server.primary_of(key).port for key in busy_keys}
    for n in range(1000):
        tag = f"t{n}"
        if server.primary_of("{" + tag + "}").port not in busy:
            return tag
    raise AssertionError("no free shard")


class Load:
    """Sends ``kv.incr`` of a new key to ``to``, :data:`IN_FLIGHT` at once, until stopped."""

    def __init__(self, peer: Peer, to: str, tag: str) -> None:
        self.peer, self.to, self.tag = peer, to, tag
        self.replies: dict[str, dict[str, Any]] = {}
        self.running = True

    def key(self, n: int) -> str:
        return f"{{{self.tag}}}r{n}"

    async def run(self) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        tasks = []
        n = 0
        while self.running:
            await slots.acquire()
            n += 1
            tasks.append(asyncio.create_task(self.one(n, slots)))
        await asyncio.gather(*tasks)

    async def one(self, n: int, slots: asyncio.Semaphore) -> None:
        try:
            reply = await self.peer.request("kv.incr", {"key": self.key(n)}, to=self.to)
            self.replies[self.key(n)] = reply
        finally:
            slots.release()


async def test_routed_requests_survive_a_failover_and_a_killed_primary(
    cluster: Cluster,
    subprocess_env: dict[str, str],
    replicated_cluster: RedisClusterServer,
) -> None:
    server = replicated_cluster
    cluster.redis_url = server.url
    cluster.env = {
        **subprocess_env,
        "LOCALAGENT_CLUSTER_WAIT_REPLICAS": "1",
        "LOCALAGENT_CLUSTER_TIMEOUT": "20",
    }
    cluster.start("a")
    cluster.start("b")
    a_name, b_name = cluster.name("a"), cluster.name("b")
    keys = Keys(CLUSTER)
    inbox = keys.inbox(b_name)
    tag = tag_elsewhere(server, inbox, keys.replies(a_name))
    async with cluster.peer("a") as a:
        assert (await a.until_routed(b_name))["result"] == {"pong": True}
        load = Load(a, b_name, tag)
        sending = asyncio.create_task(load.run())
        try:
            await asyncio.sleep(1.0)
            old = server.primary_of(inbox)
            new = await asyncio.to_thread(server.failover, old)
            assert server.primary_of(inbox).port == new.port != old.port
            await asyncio.sleep(1.5)
            await asyncio.to_thread(server.kill, new)  # old takes over again
            assert server.primary_of(inbox).port == old.port
            await asyncio.sleep(1.5)
        finally:
            load.running = False
            await sending
        # Routing works again by itself, without a restart of either agent.
        deadline = time.monotonic() + PATIENCE
        while (await a.request("kv.incr", {"key": "after"}, to=b_name)).get("error"):
            assert time.monotonic() < deadline, "routing did not resume"
            await asyncio.sleep(0.1)

    codes = [reply["error"]["code"] for reply in load.replies.values() if "error" in reply]
    answered = {key for key, reply in load.replies.items() if "result" in reply}
    assert len(answered) > 100, (len(answered), codes)
    assert all(load.replies[key]["result"] == {"value": 1} for key in answered)
    # Nothing was handled twice: every value is 1 at most, those answered exactly 1.
    client = redis.RedisCluster.from_url(server.url)
    try:
        values = client.mget_nonatomic([f"localagent:kv:{key}" for key in load.replies])
    finally:
        client.close()
    counts = dict(zip(load.replies, values, strict=True))
    # An acknowledged send is never lost (no timeout); only sends Redis refused fail.
    assert set(codes) <= {"unavailable"}, load.replies
    assert all(value in (None, b"1") for value in counts.values()), counts
    assert all(counts[key] == b"1" for key in answered)
    log = "".join(cluster.agents["b"].lines + cluster.agents["a"].lines)
    assert "Traceback" not in log, log
