"""Batched inbox reads and writes: nothing lost, nothing doubled, forgeries refused one by one.

Under load an agent reads many entries per ``XREADGROUP`` and writes the
replies, records and acknowledgements of one event-loop turn in one
pipeline. These tests put many entries in one read (a thousand requests in
flight; entries written in one ``MULTI``, which Redis hands to a blocked
reader together) and check what each entry became.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis

from localagent._cluster._entries import Request, encode_requests
from localagent._cluster._forwarding import Forwarder
from localagent._cluster._inbox import CANCEL_TYPE
from localagent._cluster._replay import ReplayGuard
from localagent._cluster._signing import Signer, read_secret_file

from .conftest import CLUSTER, Cluster, until

#: A program that says it started, then waits until the test lets it finish.
WAIT = "touch started.$$; while [ ! -e release ]; do sleep 0.05; done"


def _started(workspace: Path) -> int:
    return len(list(workspace.glob("started.*")))


def _inbox(agent: str) -> str:
    return f"la:{{{CLUSTER}:{agent}}}:inbox"


async def test_a_thousand_routed_requests_in_flight_are_each_answered_once(
    cluster: Cluster,
) -> None:
    cluster.start("a")
    cluster.start("b")
    b = cluster.name("b")
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        echoes = {await peer.send("echo", {"n": n}, to=b): n for n in range(1000)}
        counts = [await peer.send("kv.incr", {"key": "hits"}, to=b) for _ in range(200)]
        for msg_id, n in echoes.items():  # each reply matches its request
            assert (await peer.reply(msg_id))["result"] == {"data": {"n": n}}
        values = [(await peer.reply(msg_id))["result"]["value"] for msg_id in counts]
        assert sorted(values) == list(range(1, 201))  # every kv.incr ran once
        await peer.request("ping", to=b)  # its reply comes after any duplicate of the above
        assert all(len(peer.replies[msg_id]) == 1 for msg_id in [*echoes, *counts])
        assert (await peer.request("kv.get", {"key": "hits"}))["result"]["value"] == 200


async def test_a_forged_entry_in_a_batch_is_refused_and_the_rest_is_handled(
    cluster: Cluster, redis_url: str
) -> None:
    cluster.start("b")
    cluster.start("a")
    a, b = cluster.name("a"), cluster.name("b")
    signer = Signer(CLUSTER, key=read_secret_file(cluster.secret_file))
    wrong = Signer(CLUSTER, key=b"an attacker's guess at the secret")
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        now = time.time()

        def kv_set(uid: str, key: str, by: Signer) -> dict[bytes, bytes]:
            request = Request(uid, f"{a}/c1", b, uid, "kv.set", {"key": key, "value": 1}, now)
            return request.fields(by, b)

        batch = [
            kv_set("ok-1", "legit-1", signer),
            kv_set("bad-1", "forged-1", wrong),
            kv_set("ok-2", "legit-2", signer),
            {b"uid": b"bad-2", b"msg": b'{"id": 1, "type": "kv.set"}'},  # unsigned
            {**kv_set("bad-3", "legit-3", signer), b"msg": kv_set("x", "forged-3", signer)[b"msg"]},
            kv_set("ok-3", "legit-3", signer),
        ]
        writer = redis.Redis.from_url(redis_url)
        try:
            # One transaction: Redis serves the blocked reader once it has run, so
            # the agent reads the six entries in one XREADGROUP.
            with writer.pipeline(transaction=True) as pipe:
                for fields in batch:
                    pipe.xadd(_inbox(b), fields)  # type: ignore[arg-type]
                pipe.execute()

            async def found(key: str) -> bool:
                reply = await peer.request("kv.get", {"key": key}, to=b)
                return bool(reply["result"]["found"])

            deadline = time.monotonic() + 30
            while not await found("legit-3"):
                assert time.monotonic() < deadline, "the batch was not handled"
                await asyncio.sleep(0.05)
            assert await found("legit-1") and await found("legit-2")
            assert not await found("forged-1") and not await found("forged-3")
            pending = lambda: writer.xpending(_inbox(b), CLUSTER)["pending"]  # noqa: E731
            await until(lambda: pending() == 0, "every entry acknowledged")
        finally:
            writer.close()
    assert "ForgedEntry" in cluster.agents["b"].output


async def test_an_agent_killed_mid_batch_handles_the_rest_after_a_restart(
    cluster: Cluster, subprocess_env: dict[str, str]
) -> None:
    workspace = Path(subprocess_env["LOCALAGENT_WORKSPACE"])
    options = ("--set", 'exec.allow=["sh"]', "--set", "exec.max_per_connection=4")
    cluster.start("a")
    cluster.start("b", *options)
    b = cluster.name("b")
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        answered = [await peer.send("kv.incr", {"key": "done"}, to=b) for _ in range(50)]
        for msg_id in answered:
            assert "result" in await peer.reply(msg_id)
        # A batch of work in progress on b (read, not answered, not acknowledged)...
        running = [await peer.send("exec", {"argv": ["sh", "-c", WAIT]}, to=b) for _ in range(4)]
        await until(lambda: _started(workspace) == 4, "started")
        cluster.kill("b")  # ...when b dies without a word
        cluster.start("b", *options)
        # The restarted agent reads its pending entries first and runs them again.
        await until(lambda: _started(workspace) == 8, "started again")
        (workspace / "release").touch()
        for msg_id in running:
            assert (await peer.reply(msg_id))["result"]["exit_code"] == 0
        # What was answered before the kill is not handled again.
        assert (await peer.request("kv.get", {"key": "done"}))["result"]["value"] == 50
        await peer.request("ping", to=b)
        assert all(len(peer.replies[msg_id]) == 1 for msg_id in [*answered, *running])


def test_the_requests_of_one_process_share_a_token_and_count_up() -> None:
    # The replay guard of a receiver keeps one window per token: one token per
    # request would grow it by one window per routed request for ten minutes.
    forwarder = Forwarder(None, timeout=1.0)  # type: ignore[arg-type]
    uids = [forwarder.next_uid() for _ in range(3)]
    tokens = {uid.rpartition("-")[0] for uid in uids}
    assert len(tokens) == 1 and [uid.rpartition("-")[2] for uid in uids] == ["1", "2", "3"]
    assert Forwarder(None, timeout=1.0).next_uid() != uids[0]  # type: ignore[arg-type]
    guard = ReplayGuard()
    for _ in range(1000):
        assert guard.check(forwarder.next_uid(), 0.0) is True
    assert len(guard) == 1


async def test_a_request_cancelled_in_the_entry_that_brings_it_is_settled(
    cluster: Cluster, redis_url: str
) -> None:
    # A sender that goes away right after sending: its request and its
    # cluster.cancel arrive in one read, so the request's handler is cancelled
    # before it ever ran. The entry must still be acknowledged (and the slot
    # the handler held given back), or it stays pending for good.
    cluster.start("b")
    cluster.start("a")
    a, b = cluster.name("a"), cluster.name("b")
    signer = Signer(CLUSTER, key=read_secret_file(cluster.secret_file))
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        now = time.time()
        sender = f"{a}/c99"
        set_key = {"key": "never-set", "value": 1}
        request = Request("gone-1", sender, b, "m1", "kv.set", set_key, now)
        cancel = Request("gone-2", sender, b, None, CANCEL_TYPE, None, now)
        writer = redis.Redis.from_url(redis_url)
        try:
            fields = encode_requests([request, cancel], signer, a, b, now)
            writer.xadd(_inbox(b), fields)  # type: ignore[arg-type]
            pending = lambda: writer.xpending(_inbox(b), CLUSTER)["pending"]  # noqa: E731
            await until(lambda: pending() == 0, "the entry acknowledged")
        finally:
            writer.close()
        reply = await peer.request("kv.get", {"key": "never-set"}, to=b)
        assert reply["result"]["found"] is False  # cancelled before it ran
