"""Redis is no way around the token: an attacker who can write the cluster's Redis.

The attacker here holds no token and no cluster secret; it writes Redis directly, with the
entry layout of docs/cluster.md. Nothing it writes is handled or reaches a client, and
every rejection is counted (``localagent cluster status``) and reported to ``on_error``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

import localagent
from localagent import hookimpl
from localagent._cluster._entries import Reply, Request, encode_replies
from localagent._cluster._signing import Signer, create_secret_file, read_secret_file
from localagent.testing import localagent_cmd

from .conftest import CLUSTER, PATIENCE, Cluster, until

#: A key that is not the cluster's secret.
WRONG = Signer(CLUSTER, key=b"an attacker's guess at the secret")


def _inbox(agent: str) -> str:
    return f"la:{{{CLUSTER}:{agent}}}:inbox"


def _replies(agent: str) -> str:
    return f"la:{{{CLUSTER}:{agent}}}:replies"


def _status(env: dict[str, str], redis_url: str) -> dict[str, Any]:
    result = subprocess.run(
        localagent_cmd("cluster", "status", "--redis", redis_url, "--cluster", CLUSTER, "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {agent["name"]: agent for agent in json.loads(result.stdout)["agents"]}


def _made(workspace: Path) -> list[str]:
    """The files in the workspace: what the exec requests that ran made."""
    return sorted(path.name for path in workspace.iterdir())


def _rejected_by(env: dict[str, str], redis_url: str, agent: str) -> Callable[[], int]:
    return lambda: int(_status(env, redis_url)[agent]["rejected"] or 0)


async def test_entries_written_without_the_secret_are_never_handled(
    cluster: Cluster, redis_url: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    cluster.start("b", "--set", 'exec.allow=["touch"]')
    cluster.start("a")
    a, b = cluster.name("a"), cluster.name("b")
    signer = Signer(CLUSTER, key=read_secret_file(cluster.secret_file))
    workspace = Path(subprocess_env["LOCALAGENT_WORKSPACE"])
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        now = time.time()

        def touch(uid: str, name: str) -> Request:
            return Request(uid, f"{a}/c1", b, uid, "exec", {"argv": ["touch", name]}, now)

        legit = touch("legit", "made-by-a-peer").fields(signer, b)
        unsigned = {"id": 1, "type": "exec", "data": {"argv": ["touch", "pwned-1"]}}
        forged = [
            # The layout before entries were signed: no ts, no mac.
            {"uid": "e1", "from": f"{a}/c1", "to": b, "msg": json.dumps(unsigned)},
            touch("e2", "pwned-2").fields(WRONG, b),  # signed with another key
            {**legit, b"msg": touch("e3", "pwned-3").fields(signer, b)[b"msg"]},  # swapped msg
            {**legit, b"from": b"127.0.0.1:1/c1"},  # another sender
            touch("e5", "pwned-5").fields(signer, a),  # signed for another agent's inbox
            touch("e6", "pwned-6").fields(signer, b) | {b"ts": b"1"},  # re-dated
        ]
        writer = redis.Redis.from_url(redis_url)
        try:
            for entry in forged:
                writer.xadd(_inbox(b), entry)  # type: ignore[arg-type]
            rejected = _rejected_by(subprocess_env, redis_url, b)
            await until(lambda: rejected() >= len(forged), "all rejected")
            assert rejected() == len(forged)
            assert writer.xpending(_inbox(b), CLUSTER)["pending"] == 0  # acknowledged
        finally:
            writer.close()
        assert _made(workspace) == []
        # A real routed exec, from a client with the token, still runs.
        reply = await peer.request("exec", {"argv": ["touch", "routed"]}, to=b)
        assert reply["result"]["exit_code"] == 0
        assert _made(workspace) == ["routed"]
    assert "ForgedEntry" in cluster.agents["b"].output
    assert "pwned" not in cluster.agents["b"].output  # logged without its content


async def test_a_copy_of_a_handled_entry_is_not_handled_again(
    cluster: Cluster, redis_url: str, subprocess_env: dict[str, str]
) -> None:
    cluster.start("b")
    cluster.start("a")
    b = cluster.name("b")
    reader = redis.asyncio.Redis.from_url(redis_url)
    writer = redis.Redis.from_url(redis_url)
    try:
        async with cluster.peer("a") as peer:
            await peer.until_routed(b)
            last = await reader.xrevrange(_inbox(b), count=1)
            start = last[0][0] if last else b"0"
            # Record the entry that carries the request, as anyone reading Redis can.
            captured = asyncio.create_task(reader.xread({_inbox(b): start}, count=1, block=0))
            reply = await peer.request("kv.incr", {"key": "counter"}, to=b)
            assert reply["result"] == {"value": 1}
            (_stream, [(_id, fields)]) = (await captured)[0]
            assert [request["type"] for request in json.loads(fields[b"msg"])] == ["kv.incr"]

            writer.xadd(_inbox(b), fields)  # type: ignore[arg-type]  # the same entry again
            rejected = _rejected_by(subprocess_env, redis_url, b)
            await until(lambda: rejected() == 1, "rejected")
            reply = await peer.request("kv.get", {"key": "counter"}, to=b)
            assert reply["result"]["value"] == 1

            # After a restart the uids seen are gone: the "handled" record decides.
            cluster.stop("b")
            cluster.start("b")
            await peer.until_routed(b)
            writer.xadd(_inbox(b), fields)  # type: ignore[arg-type]
            await until(lambda: rejected() == 1, "rejected after the restart")
            reply = await peer.request("kv.get", {"key": "counter"}, to=b)
            assert reply["result"]["value"] == 1
    finally:
        await reader.aclose()
        writer.close()


async def test_a_forged_reply_never_reaches_the_client(
    cluster: Cluster, redis_url: str, subprocess_env: dict[str, str]
) -> None:
    cluster.start("b")
    cluster.start("a")
    a, b = cluster.name("a"), cluster.name("b")
    signer = Signer(CLUSTER, key=read_secret_file(cluster.secret_file))
    writer = redis.Redis.from_url(redis_url)
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        os.kill(cluster.agents["b"].pid, signal.SIGSTOP)  # b reads nothing meanwhile
        try:
            msg_id = await peer.send("echo", "the real one", to=b)
            entries: list[Any] = []

            def queued() -> bool:
                entries[:] = [
                    request
                    for _id, fields in writer.xrange(_inbox(b))
                    for request in json.loads(fields[b"msg"])
                    if request["id"] == msg_id
                ]
                return bool(entries)

            await until(queued, "queued for b")
            uid = entries[0]["uid"]
            answer = {"id": msg_id, "result": {"data": "forged"}}
            for forged in (
                {"uid": uid, "end": "1", "msg": json.dumps(answer)},  # unsigned
                Reply(uid, True, answer, b, 0, time.time()).fields(WRONG, a),
                # Signed by the cluster, but for another agent's replies stream.
                Reply(uid, True, answer, b, 0, time.time()).fields(signer, b),
            ):
                writer.xadd(_replies(a), forged)  # type: ignore[arg-type]
            rejected = _rejected_by(subprocess_env, redis_url, a)
            await until(lambda: rejected() >= 3, "all rejected")
            assert msg_id not in peer.replies  # nothing reached the client
        finally:
            os.kill(cluster.agents["b"].pid, signal.SIGCONT)
            writer.close()
        reply = await peer.reply(msg_id)
        assert reply["result"] == {"data": "the real one"}
        assert len(peer.replies[msg_id]) == 1


class Recorder:
    def __init__(self) -> None:
        self.errors: list[tuple[BaseException, Any]] = []

    @hookimpl
    def on_error(self, error: BaseException, context: Any) -> None:
        self.errors.append((error, context))


async def test_rejections_are_reported_to_on_error(redis_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    create_secret_file(secret)
    recorder = Recorder()
    server = localagent.Server.create(
        port=0,
        redis=redis_url,
        cluster=CLUSTER,
        cluster_secret_file=secret,
        extra_plugins={"recorder": recorder},
    )
    async with server:
        node = server.runtime.pm.get_plugin("cluster").node
        await asyncio.wait_for(node.joined.wait(), PATIENCE)
        writer = redis.asyncio.Redis.from_url(redis_url)
        try:
            await writer.xadd(_inbox(node.name), {"uid": "x", "msg": "{}"})
        finally:
            await writer.aclose()
        await until(lambda: bool(recorder.errors), "reported")
    error, context = recorder.errors[0]
    assert type(error).__name__ == "ForgedEntry"
    assert (context.stage, context.plugin) == ("transport", "cluster")
    assert node.rejected == {"ForgedEntry": 1}


def test_a_cluster_without_a_secret_is_a_configuration_error(
    subprocess_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "agent"
    serve = localagent_cmd("--config-dir", str(config), "serve", "--port", "0")
    serve += ["--redis", redis_url, "--cluster", CLUSTER]
    result = subprocess.run(serve, env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "localagent cluster secret" in result.stderr and "Traceback" not in result.stderr

    create = localagent_cmd("--config-dir", str(config), "cluster", "secret")
    made = subprocess.run(create, env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    path = config / "cluster-secret"
    assert str(path) in made.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = subprocess.run(create, env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr

    path.chmod(0o644)
    result = subprocess.run(serve, env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"chmod 600 {path}" in result.stderr


@pytest.mark.parametrize("agent", ["a"])
async def test_an_open_redis_is_warned_about(cluster: Cluster, agent: str) -> None:
    cluster.start(agent)
    async with cluster.peer(agent) as peer:
        await peer.until_routed("*", "hello")
    assert "accepts connections without a password" in cluster.agents[agent].output
    assert "cannot forge" in cluster.agents[agent].output


async def test_a_rejected_reply_inside_an_entry_does_not_drop_the_others(
    cluster: Cluster, redis_url: str, subprocess_env: dict[str, str]
) -> None:
    """One reply of an entry out of order (a copy) is rejected; the next one still counts."""
    cluster.start("b")
    cluster.start("a")
    a, b = cluster.name("a"), cluster.name("b")
    signer = Signer(CLUSTER, key=read_secret_file(cluster.secret_file))
    writer = redis.Redis.from_url(redis_url)
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        os.kill(cluster.agents["b"].pid, signal.SIGSTOP)  # b answers nothing meanwhile
        try:
            msg_id = await peer.send("echo", "asked", to=b)
            uids: list[str] = []

            def queued() -> bool:
                uids[:] = [
                    request["uid"]
                    for _id, fields in writer.xrange(_inbox(b))
                    for request in json.loads(fields[b"msg"])
                    if request["id"] == msg_id
                ]
                return bool(uids)

            await until(queued, "queued for b")
            answer = {"id": msg_id, "result": {"data": "second in its entry"}}
            entry = encode_replies(
                [
                    Reply(uids[0], False, {"type": "out.of.order"}, b, 5),  # not seq 0: a copy
                    Reply(uids[0], True, answer, b, 0),
                ],
                signer,
                b,
                a,
                time.time(),
            )
            writer.xadd(_replies(a), entry)  # type: ignore[arg-type]
            assert (await peer.reply(msg_id))["result"] == {"data": "second in its entry"}
            await until(lambda: _rejected_by(subprocess_env, redis_url, a)() >= 1, "rejected")
        finally:
            os.kill(cluster.agents["b"].pid, signal.SIGCONT)
            writer.close()
        assert len(peer.replies[msg_id]) == 1  # the out-of-order message never reached it
