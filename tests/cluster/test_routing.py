"""Messages addressed with ``to`` across ``serve --cluster`` processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localagent import Client, ReplyError
from localagent._cluster._signing import create_secret_file
from localagent.testing import localagent_cmd

from .conftest import Cluster


async def test_a_request_to_another_agent_is_handled_there_and_answered_here(
    cluster: Cluster,
) -> None:
    cluster.start("a")
    cluster.start("b", "-p", "no:echo")  # b cannot echo: a's own echo must not answer
    async with cluster.peer("a") as a:
        assert (await a.until_routed(cluster.name("b")))["result"] == {"pong": True}
        reply = await a.request("echo", {"x": 1}, to=cluster.name("b"))
        assert reply["error"]["code"] == "unknown_type"  # answered by b, which has no echo
        reply = await a.request("echo", {"x": 1}, to=cluster.name("a"))  # itself: local
        assert reply["result"] == {"data": {"x": 1}}
        reply = await a.request("echo", {"x": 2})  # no "to": local as always
        assert reply["result"] == {"data": {"x": 2}}


async def test_kv_through_another_agent_and_concurrent_requests(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b")
    async with cluster.peer("a") as a:
        await a.until_routed(cluster.name("b"))
        b = cluster.name("b")
        reply = await a.request("kv.set", {"key": "k", "value": 7}, to=b)
        assert reply["result"] == {"ok": True}
        assert (await a.request("kv.get", {"key": "k"}, to=b))["result"] == {
            "found": True,
            "value": 7,
        }
        ids = [await a.send("echo", n, to=b) for n in range(50)]
        replies = await asyncio.gather(*(a.reply(msg_id) for msg_id in ids))
        assert [reply["result"] for reply in replies] == [{"data": n} for n in range(50)]
        assert all(len(a.replies[msg_id]) == 1 for msg_id in ids)


async def test_three_agents_route_to_each_other(cluster: Cluster) -> None:
    for key in "abc":
        cluster.start(key)
    async with cluster.peer("c") as c, cluster.peer("b") as b:
        for peer, target in ((c, "a"), (c, "b"), (b, "c"), (b, "a")):
            reply = await peer.until_routed(cluster.name(target), "echo")
            assert reply["result"] == {"data": None}


async def test_a_message_to_a_peer_of_another_agent_is_delivered_to_it(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b")
    async with cluster.peer("a") as a, cluster.peer("b") as b:
        await a.until_routed(cluster.name("b"))
        whoami = await b.request("ping")  # b's client is b's only connection: c1
        assert whoami["result"] == {"pong": True}
        target = f"{cluster.name('b')}/c1"
        reply = await a.request("chat", {"text": "hi"}, to=target, id="x1")
        assert reply["result"] == {"delivered": True}
        delivered = await b.next_received()
        assert delivered == {
            "type": "chat",
            "data": {"text": "hi"},
            "from": f"{cluster.name('a')}/c1",
            "id": "x1",
        }
        # b answers a's client by the address it came from.
        reply = await b.request("chat", "hello back", to=delivered["from"])
        assert reply["result"] == {"delivered": True}
        back = await a.next_received()
        assert back["data"] == "hello back"
        assert back["from"] == f"{cluster.name('b')}/c1"
        # A peer that is not connected is unreachable.
        reply = await a.request("chat", None, to=f"{cluster.name('b')}/c99")
        assert reply["error"]["code"] == "unreachable"


#: Prints "ready", waits (60 s at most) until the file argv[1] exists, prints "done".
WAITER = """
import pathlib, sys, time
go = pathlib.Path(sys.argv[1])
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("done" if go.exists() else "gave up", flush=True)
"""


async def test_a_peer_cannot_inject_into_another_clients_running_request(
    cluster: Cluster, tmp_path: Path
) -> None:
    # a's client sends to b's client, with the id of b's streaming exec (ids are
    # guessable): output chunks and a forged reply. b's request keeps its own.
    cluster.start("a")
    victim_agent = cluster.start("b", "--set", f"exec.allow={json.dumps([sys.executable])}")
    go = tmp_path / "go"
    async with cluster.peer("a") as a, Client(victim_agent.url, victim_agent.token) as victim:
        await a.until_routed(cluster.name("b"))
        ready = asyncio.Event()
        streamed: list[Any] = []

        def on_event(event: Any) -> None:
            streamed.append(event)
            ready.set()

        running = asyncio.create_task(
            victim.request(
                "exec",
                {"argv": [sys.executable, "-c", WAITER, str(go)], "stream": True},
                on_event=on_event,
            )
        )
        async with asyncio.timeout(60):
            await ready.wait()
        victim_address = f"{cluster.name('b')}/c1"  # the only client of b
        forged = [
            {"type": "exec.output", "data": {"stream": "stdout", "chunk": "injected\n"}},
            {"type": "exec", "data": None, "result": {"exit_code": 99}},
        ]
        for fields in forged:
            sent = {"id": 1, "to": victim_address, **fields}  # 1: the victim's first request
            await a.client.send_raw(_dumps(sent))
            reply = await a.reply(1)  # type: ignore[arg-type]
            assert reply["result"] == {"delivered": True}
            a.replies.clear()
        go.touch()
        async with asyncio.timeout(60):
            result = await running
        assert result["exit_code"] == 0
        assert [event for event in streamed if "from" in event] == []
        assert "".join(event["data"]["chunk"] for event in streamed) == "ready\ndone\n"
        sender = f"{cluster.name('a')}/c1"
        async with asyncio.timeout(60):
            delivered = [await victim.events.get() for _ in forged]
        assert delivered == [
            {"type": "exec.output", "data": forged[0]["data"], "from": sender, "id": 1},
            {"type": "exec", "data": None, "from": sender, "id": 1},
        ]


async def test_a_broadcast_reaches_every_peer_of_every_agent(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b")
    async with cluster.peer("a") as a, cluster.peer("a") as a2, cluster.peer("b") as b:
        await a.until_routed(cluster.name("b"))
        await b.until_routed(cluster.name("a"))
        reply = await a.request("news", {"n": 1}, to="*")
        assert reply["result"] == {"published": 2}  # two agents subscribed
        expected = {"type": "news", "data": {"n": 1}, "from": f"{cluster.name('a')}/c1"}
        assert await b.next_received() == expected
        assert await a2.next_received() == expected
        # The sender does not get its own broadcast: a ping answered later proves nothing came.
        await a.request("ping")
        assert a.received == []


async def test_unknown_agents_and_bad_addresses(cluster: Cluster) -> None:
    cluster.start("a")
    async with cluster.peer("a") as a:
        assert (await a.until_routed("*", "hello"))["result"] == {"published": 1}  # joined
        reply = await a.request("ping", to="127.0.0.1:1")
        assert reply["error"]["code"] == "unreachable"
        assert "127.0.0.1:1" in reply["error"]["message"]
        for bad in ("/c1", "agent/", "a{b}"):
            reply = await a.request("ping", to=bad)
            assert reply["error"]["code"] == "invalid_message", bad
        for bad in ("", 5, ["x"]):
            reply = await a.request("ping", to=bad)
            assert reply["error"] == {
                "code": "invalid_message",
                "message": "'to' must be a non-empty string or absent",
            }


async def test_a_notification_to_another_agent_is_handled_without_a_reply(
    cluster: Cluster,
) -> None:
    cluster.start("a")
    cluster.start("b")
    async with cluster.peer("a") as a, cluster.peer("b") as b:
        b_name = cluster.name("b")
        await a.until_routed(b_name)
        await a.client.send_raw(
            _dumps({"type": "kv.set", "data": {"key": "n", "value": 1}, "to": b_name})
        )
        await a.client.send_raw(_dumps({"type": "no.such.type", "to": b_name}))
        error = await a.reply(None)  # type: ignore[arg-type]
        assert error["error"]["code"] == "unknown_type"
        assert (await b.request("kv.get", {"key": "n"}))["result"] == {"found": True, "value": 1}


def _dumps(message: object) -> bytes:
    from localagent import _codec

    return _codec.dumps(message)


async def test_the_router_is_registered_only_for_a_cluster(redis_url: str, tmp_path: Path) -> None:
    from localagent import Server
    from localagent.builtin.cluster import ROUTER_NAME

    async with Server.create(port=0) as alone:
        assert alone.runtime.pm.get_plugin(ROUTER_NAME) is None
        # No on_message sees every type: unknown types still find no handler at all.
        assert alone.runtime.dispatcher.route("no.such.type").handlers == ()
    secret = tmp_path / "secret"
    create_secret_file(secret)
    member = Server.create(port=0, redis=redis_url, cluster="solo", cluster_secret_file=secret)
    async with member:
        assert member.runtime.pm.get_plugin(ROUTER_NAME) is not None
        route = member.runtime.dispatcher.route("ping")
        assert route.plugins[0] == ROUTER_NAME  # tryfirst: it sees every message first


async def test_output_streamed_by_the_target_comes_before_the_reply(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b", "--set", 'exec.allow=["echo"]')
    async with cluster.peer("a") as a:
        await a.until_routed(cluster.name("b"))
        reply = await a.request(
            "exec", {"argv": ["echo", "streamed"], "stream": True}, to=cluster.name("b")
        )
        assert reply["result"]["exit_code"] == 0
        chunks = [item for item in a.received if item.get("id") == reply["id"]]
        assert chunks, a.received  # relayed before the reply, on the sender's connection
        assert "".join(item["data"]["chunk"] for item in chunks) == "streamed\n"


async def test_the_client_and_send_address_messages_with_to(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b", "-p", "no:echo")
    a = cluster.agents["a"]
    async with cluster.peer("a") as peer:
        await peer.until_routed(cluster.name("b"))
    async with Client(a.url, a.token) as client:
        assert await client.request("ping", to=cluster.name("b")) == {"pong": True}
        with pytest.raises(ReplyError) as caught:  # b has no echo: b answered
            await client.request("echo", 1, to=cluster.name("b"))
        assert caught.value.code == "unknown_type"
        assert await client.request("echo", 1) == {"data": 1}
    env = {**cluster.env, "LOCALAGENT_URL": a.url, "LOCALAGENT_TOKEN": a.token}
    command = localagent_cmd(
        "send", "--to", cluster.name("b"), "kv.set", '{"key": "k", "value": 1}'
    )
    sent = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    async with Client(a.url, a.token) as client:
        assert await client.request("kv.get", {"key": "k"}, to=cluster.name("b")) == {
            "found": True,
            "value": 1,
        }
