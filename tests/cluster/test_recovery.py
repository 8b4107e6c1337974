"""Durability: a target killed and restarted, Redis restarted, no duplicate replies."""

from __future__ import annotations

import asyncio
import json
import time

import redis

from localagent._cluster._entries import Request, encode_requests
from localagent._cluster._signing import Signer, read_secret_file
from localagent.testing import RedisServer

from .conftest import CLUSTER, Cluster


async def test_messages_sent_while_the_target_is_down_are_answered_after_its_restart(
    cluster: Cluster,
) -> None:
    cluster.start("a")
    cluster.start("b")
    b = cluster.name("b")
    async with cluster.peer("a") as a:
        await a.until_routed(b)
        cluster.kill("b")  # SIGKILL: its registration lives on for a few seconds
        ids = [await a.send("kv.incr", {"key": "queued"}, to=b) for _ in range(20)]
        cluster.start("b")  # same port, same name: it resumes from its stream
        replies = await asyncio.gather(*(a.reply(msg_id) for msg_id in ids))
        assert sorted(reply["result"]["value"] for reply in replies) == list(range(1, 21))
        # Every request was handled once and answered once.
        assert (await a.request("kv.get", {"key": "queued"}))["result"]["value"] == 20
        await a.request("ping", to=b)  # its reply comes after any duplicate of the above
        assert all(len(a.replies[msg_id]) == 1 for msg_id in ids)


async def test_a_reply_that_does_not_come_in_time_is_a_timeout_and_the_message_stays_queued(
    cluster: Cluster, subprocess_env: dict[str, str]
) -> None:
    cluster.env = {**subprocess_env, "LOCALAGENT_CLUSTER_TIMEOUT": "0.5"}
    cluster.start("a")
    cluster.start("b")
    b = cluster.name("b")
    async with cluster.peer("a") as a:
        await a.until_routed(b)
        cluster.kill("b")
        reply = await a.request("kv.set", {"key": "late", "value": 1}, to=b)
        assert reply["error"]["code"] == "timeout"
        assert "stays queued" in reply["error"]["message"]
        cluster.start("b")
        assert (await a.until_routed(b))["result"] == {"pong": True}
        # The queued message was handled by b after its restart (its reply was dropped).
        assert (await a.request("kv.get", {"key": "late"}))["result"] == {
            "found": True,
            "value": 1,
        }


async def test_the_agents_recover_when_redis_restarts(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    cluster.start("a")
    cluster.start("b")
    b = cluster.name("b")
    async with cluster.peer("a") as a:
        await a.until_routed(b)
        redis_server.stop()
        reply = await a.request("echo", "while down", to=b)
        assert reply["error"]["code"] == "unavailable"
        assert (await a.request("echo", "local"))["result"] == {"data": "local"}  # still serving
        redis_server.start()
        reply = await a.until_routed(b, "echo")
        assert reply["result"] == {"data": None}
        reply = await a.request("kv.set", {"key": "after", "value": 2}, to=b)
        assert reply["result"] == {"ok": True}


async def test_a_redelivered_entry_that_was_answered_is_not_handled_again(
    cluster: Cluster, redis_url: str
) -> None:
    """The target crashed after replying and before acknowledging: no second reply."""
    cluster.start("b")
    b = cluster.name("b")
    async with cluster.peer("b") as peer:
        await peer.until_routed("*", "hello")  # joined: its inbox and group exist
    cluster.kill("b")
    client = redis.Redis.from_url(redis_url)
    inbox, replies = f"la:{{{CLUSTER}:{b}}}:inbox", f"la:{{{CLUSTER}:ghost}}:replies"

    signer = Signer(CLUSTER, key=read_secret_file(cluster.secret_file))

    def request(uid: str, key: str) -> Request:
        """What agent "ghost", of the cluster, would have sent."""
        return Request(uid, "ghost/c1", b, uid, "kv.incr", {"key": key}, time.time())

    client.xadd(inbox, request("answered", "twice").fields(signer, b))  # type: ignore[arg-type]
    client.xadd(inbox, request("fresh", "once").fields(signer, b))  # type: ignore[arg-type]
    # One entry, two requests: the first answered before the crash, the second not.
    both = [request("answered-2", "twice"), request("fresh-2", "once-2")]
    client.xadd(inbox, encode_requests(both, signer, "ghost", b, time.time()))  # type: ignore[arg-type]
    # Read them as b would have before it died (now pending for consumer b) ...
    client.xreadgroup(CLUSTER, b, {inbox: ">"})
    # ... and say the answered ones were.
    client.set(f"la:{{{CLUSTER}:{b}}}:done:answered", 1)
    client.set(f"la:{{{CLUSTER}:{b}}}:done:answered-2", 1)
    cluster.start("b")
    async with cluster.peer("b") as peer:
        await peer.until_routed("*", "hello")
        for _ in range(300):
            if client.xpending(inbox, CLUSTER)["pending"] == 0:
                break
            await asyncio.sleep(0.1)
        assert client.xpending(inbox, CLUSTER)["pending"] == 0
        found = [
            reply["msg"]
            for _id, fields in client.xrange(replies)
            for reply in json.loads(fields[b"msg"])
        ]
        assert sorted(found, key=lambda reply: reply["id"]) == [
            {"id": "fresh", "result": {"value": 1}},
            {"id": "fresh-2", "result": {"value": 1}},
        ]
        assert (await peer.request("kv.get", {"key": "twice"}))["result"]["found"] is False
    client.close()


async def test_a_duplicate_reply_reaches_the_client_once(cluster: Cluster, redis_url: str) -> None:
    cluster.start("a")
    cluster.start("b")
    a_name, b = cluster.name("a"), cluster.name("b")
    async with cluster.peer("a") as a, cluster.peer("b") as peer_b:
        await a.until_routed("*", "hello")
        await peer_b.until_routed("*", "hello")
        first = await a.send("echo", "once", to=b)  # the only request b handles
        assert (await a.reply(first))["result"] == {"data": "once"}
        client = redis.Redis.from_url(redis_url)
        (done,) = client.keys(f"la:{{{CLUSTER}:{b}}}:done:*")
        uid = done.rpartition(b":")[2]
        duplicate = {"uid": uid, "end": b"1", "msg": json.dumps({"id": first, "result": "again"})}
        client.xadd(f"la:{{{CLUSTER}:{a_name}}}:replies", duplicate)  # type: ignore[arg-type]
        client.close()
        await a.request("ping", to=b)  # answered through the same stream, after the duplicate
        assert a.replies[first] == [{"id": first, "result": {"data": "once"}}]
