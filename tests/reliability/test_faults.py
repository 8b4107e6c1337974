"""Faults under load: Redis killed mid-load, hostile plugins, vanishing clients, shutdown.

Related tests elsewhere (not repeated here): ``tests/test_kv.py`` stops Redis
between sequential requests; ``tests/test_server.py`` covers a handler that
raises, a broken send wrapper, a failing ``on_error``, the in-flight limit,
and a shutdown whose handlers finish within the grace period;
``tests/test_exec.py`` kills a program's process group when its client goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

import localagent
from localagent import Client, MessageError, Server, handles, hookimpl
from localagent.testing import RedisServer, running_agent

from .conftest import agent_env

#: The bound on any single wait: longer means the agent hung.
HANG = 60.0


async def _until(condition: Any, what: str, timeout: float = HANG) -> None:
    """Wait for ``condition()`` to become true, polling (no I/O stand-in)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls a condition
            await asyncio.sleep(0.02)
    assert condition(), what


# -- a flood past the in-flight limit ----------------------------------------------------


async def test_a_flood_past_the_in_flight_limit_waits_without_growing_memory() -> None:
    """50 MB of requests at a gated handler: the agent stops reading, memory stays flat.

    If the agent buffered or spawned per message past ``max_in_flight``, the
    sender would get all 50 MB through and traced memory would grow by about
    that much; the bound below is a fifth of it.
    """
    release = asyncio.Event()
    started = 0

    class Gate:
        @hookimpl(specname="on_message")
        @handles("gate")
        async def gate(self, message: localagent.Message) -> Any:
            nonlocal started
            started += 1
            await release.wait()
            return {"n": message.data["n"]}

    total, payload = 5000, "x" * 10_000
    sent = 0
    tracemalloc.start()
    try:
        async with Server.create(port=0, extra_plugins={"gate": Gate()}, max_in_flight=4) as server:
            headers = {"Authorization": f"Bearer {server.token_file.get()}"}
            async with connect(server.url, additional_headers=headers, compression=None) as ws:

                async def flood() -> None:
                    nonlocal sent
                    for n in range(total):
                        frame = {"id": n, "type": "gate", "data": {"n": n, "pad": payload}}
                        await ws.send(orjson.dumps(frame), text=True)
                        sent += 1

                await _until(lambda: True, "")
                baseline, _ = tracemalloc.get_traced_memory()
                sender = asyncio.create_task(flood())
                await _until(lambda: started == 4, "the first four handlers start")
                # Wait until the sender is pushed back: no progress for a second.
                last = -1
                while not sender.done() and sent != last:
                    last = sent
                    await asyncio.sleep(1.0)
                grown = tracemalloc.get_traced_memory()[0] - baseline
                assert not sender.done(), "50 MB went through a gated handler"
                assert started == 4
                assert grown < 10 << 20, f"traced memory grew {grown / 2**20:.1f} MB"

                release.set()
                await asyncio.wait_for(sender, HANG)
                replies = [
                    orjson.loads(await asyncio.wait_for(ws.recv(), HANG)) for _ in range(total)
                ]
                assert sorted(r["id"] for r in replies) == list(range(total))
                assert all(r["result"]["n"] == r["id"] for r in replies)
    finally:
        tracemalloc.stop()


# -- Redis killed during a kv load ------------------------------------------------------


async def test_redis_killed_during_a_kv_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """SIGKILL the private Redis under four writers, start it again, check every ack.

    The agent is a real ``localagent serve --redis`` subprocess; Redis runs with
    ``appendfsync always``, so an acknowledged write is on disk before the
    reply. A failed request must get an ``unavailable`` error reply: none may
    go unanswered.
    """
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    acked: dict[str, int] = {}
    failed: list[str] = []
    stop = asyncio.Event()
    try:
        with running_agent(
            agent_env(tmp_path), "--redis", redis_server.url, config_dir=tmp_path / "config"
        ) as agent:

            async def writer(name: str) -> None:
                async with Client(agent.url, agent.token) as client:
                    n = 0
                    while not stop.is_set():
                        key = f"{name}:{n}"
                        try:
                            await asyncio.wait_for(
                                client.request("kv.set", {"key": key, "value": n}), HANG
                            )
                        except localagent.ReplyError as error:
                            failed.append(error.code)
                        else:
                            acked[key] = n
                        n += 1

            writers = [asyncio.create_task(writer(f"w{i}")) for i in range(4)]
            await _until(lambda: len(acked) >= 300, "writes before the kill")
            assert redis_server.process is not None
            redis_server.process.kill()  # SIGKILL: no clean shutdown, no final fsync
            redis_server.process.wait()
            redis_server.process = None
            await _until(lambda: len(failed) >= 8, "errors while Redis is down")
            before_restart = len(acked)
            redis_server.start()
            await _until(lambda: len(acked) >= before_restart + 300, "writes after the restart")
            stop.set()
            await asyncio.wait_for(asyncio.gather(*writers), HANG)

            async with Client(agent.url, agent.token) as client:
                keys = list(acked)
                found: dict[str, Any] = {}
                for start in range(0, len(keys), 500):
                    chunk = await client.request("kv.mget", {"keys": keys[start : start + 500]})
                    found.update(chunk["values"])
            assert found == acked, "acknowledged writes missing after the restart"
            assert set(failed) == {"unavailable"}
            assert "Traceback" not in agent.output
    finally:
        stop.set()
        redis_server.stop()


# -- a plugin that raises in every hook --------------------------------------------------


class RaisesEverywhere:
    """Raises in on_connect, in its handlers (sync and async), close callbacks and on_error."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_connect(self, connection: localagent.Connection) -> None:
        self.calls.append("on_connect")

        def close_callback() -> None:
            self.calls.append("close")
            raise RuntimeError("close callback fails")

        connection.on_close(close_callback)
        raise RuntimeError("on_connect fails")

    @hookimpl(specname="on_message")
    @handles("hostile.sync")
    def sync_handler(self) -> None:
        self.calls.append("sync")
        raise RuntimeError("sync handler fails")

    @hookimpl(specname="on_message")
    @handles("hostile.async")
    async def async_handler(self) -> None:
        self.calls.append("async")
        raise MessageError("hostile", "async handler refuses")

    @hookimpl
    def on_error(self, error: BaseException) -> None:
        self.calls.append("on_error")
        raise RuntimeError("on_error fails")


class RaisesOnLoad:
    @hookimpl
    async def on_load(self) -> None:
        raise RuntimeError("on_load fails")

    @hookimpl(specname="on_message")
    @handles("hostile.unloaded")
    def never(self) -> str:
        return "never"


async def test_a_plugin_raising_in_every_hook_leaves_the_other_types_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile = RaisesEverywhere()
    plugins = {"hostile": hostile, "hostile_load": RaisesOnLoad()}
    async with Server.create(port=0, extra_plugins=plugins) as server:
        assert server.runtime.plugins.info("hostile_load") is not None
        token = server.token_file.get()
        for _ in range(3):  # several connections, each through every failing hook
            async with Client(server.url, token) as client:
                for _ in range(20):
                    assert await client.request("ping") == {"pong": True}
                    assert await client.request("echo", [1]) == {"data": [1]}
                    await client.request("kv.set", {"key": "k", "value": 1})
                    with pytest.raises(localagent.ReplyError) as sync_error:
                        await client.request("hostile.sync")
                    assert sync_error.value.code == "internal_error"
                    with pytest.raises(localagent.ReplyError) as async_error:
                        await client.request("hostile.async")
                    assert async_error.value.code == "hostile"
                    with pytest.raises(localagent.ReplyError) as unloaded:
                        await client.request("hostile.unloaded")
                    assert unloaded.value.code == "unknown_type"
        await _until(lambda: hostile.calls.count("close") == 3, "close callbacks ran")
        assert not server.runtime.connections
    assert hostile.calls.count("on_connect") == 3
    assert hostile.calls.count("sync") == hostile.calls.count("async") == 60
    assert "on_error of plugin 'hostile' failed" in caplog.text


# -- clients that vanish mid-request -----------------------------------------------------


async def test_clients_that_vanish_mid_request_leave_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    started = 0
    cancelled = 0
    release = asyncio.Event()

    class Slow:
        @hookimpl(specname="on_message")
        @handles("slow")
        async def slow(self) -> Any:
            nonlocal started, cancelled
            started += 1
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled += 1
                raise
            return {"done": True}

    async with Server.create(port=0, extra_plugins={"slow": Slow()}) as server:
        headers = {"Authorization": f"Bearer {server.token_file.get()}"}
        for n in range(20):
            ws = await connect(server.url, additional_headers=headers, compression=None)
            for i in range(3):
                await ws.send(orjson.dumps({"id": i, "type": "slow"}), text=True)
            await ws.send(orjson.dumps({"id": 9, "type": "ping"}), text=True)
            assert orjson.loads(await ws.recv()) == {"id": 9, "result": {"pong": True}}
            if n % 2:
                ws.transport.abort()  # a reset, no close frame
            else:
                await ws.close()
        await _until(lambda: cancelled == 60, "every orphaned handler is cancelled")
        await _until(lambda: not server.runtime.connections, "every connection is gone")
        await _until(lambda: not server.runtime.in_flight, "nothing is in flight")
        assert started == 60
        async with Client(server.url, server.token_file.get()) as client:
            release.set()
            assert await client.request("slow") == {"done": True}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- shutdown with requests in flight ----------------------------------------------------


async def test_shutdown_past_the_grace_period_closes_stuck_connections_with_1001() -> None:
    release_fast = asyncio.Event()

    class Handlers:
        @hookimpl(specname="on_message")
        @handles("stuck")
        async def stuck(self) -> None:
            await asyncio.Event().wait()  # never finishes

        @hookimpl(specname="on_message")
        @handles("fast")
        async def fast(self) -> Any:
            await release_fast.wait()
            return {"fast": True}

    server = Server.create(port=0, extra_plugins={"h": Handlers()}, shutdown_grace=1.0)
    await server.start()
    clients = [await Client.connect(server.url, server.token_file.get()) for _ in range(5)]
    stuck = [asyncio.create_task(c.request("stuck")) for c in clients]
    fast = [asyncio.create_task(c.request("fast")) for c in clients]
    await _until(lambda: len(server.runtime.in_flight) == 10, "all ten requests are running")
    closing = asyncio.create_task(server.aclose())
    release_fast.set()  # these finish within the grace period and are answered
    assert await asyncio.wait_for(asyncio.gather(*fast), HANG) == [{"fast": True}] * 5
    await asyncio.wait_for(closing, HANG)
    for request, client in zip(stuck, clients, strict=True):
        with pytest.raises(localagent.ConnectionLost):
            await asyncio.wait_for(request, HANG)
        assert client.close_code == 1001
        await client.aclose()
    assert not server.runtime.in_flight


async def test_sigterm_stops_a_busy_agent_cleanly(tmp_path: Path) -> None:
    """A real ``localagent serve``: SIGTERM with a running program and an idle client."""
    env = agent_env(tmp_path)
    with running_agent(
        env, "--set", 'exec.allow=["sleep"]', config_dir=tmp_path / "config"
    ) as agent:
        async with Client(agent.url, agent.token) as idle, Client(agent.url, agent.token) as busy:
            assert await idle.request("ping") == {"pong": True}
            request = asyncio.create_task(busy.request("exec", {"argv": ["sleep", "300"]}))
            await asyncio.sleep(0.5)  # let the program start; the outcome does not depend on it
            os.kill(agent.pid, signal.SIGTERM)
            try:
                outcome: Any = await asyncio.wait_for(request, HANG)
            except localagent.ConnectionLost as lost:
                outcome = lost
            with pytest.raises(localagent.ConnectionLost):
                await asyncio.wait_for(idle.request("ping"), HANG)
        assert await asyncio.to_thread(agent.process.wait, HANG) == 0
    assert idle.close_code == 1001
    # The program outlives the grace period: the agent closes with 1001 and kills it
    # (had it ended first, the reply would have been sent). Answered or 1001, never cut.
    assert busy.close_code == 1001 or isinstance(outcome, dict)
    assert "Traceback" not in agent.output
    leftover = await asyncio.to_thread(
        subprocess.run, ["pgrep", "-f", "sleep 300"], capture_output=True, text=True
    )
    own = [pid for pid in leftover.stdout.split() if _parent_of(int(pid)) == agent.pid]
    assert not own, "the agent left its program running"


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])
