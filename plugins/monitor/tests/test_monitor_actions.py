"""The optimization cycle, driven for real: error traffic past low thresholds, then calm.

The agent is a real server with the monitor (and mempool) plugins; the load is
real requests of an unknown type, each answered with an error reply, at a rate
that crosses the configured thresholds; nothing is faked in the readings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from localagent_monitor._actions import REFUSAL_REASON, ActionPlan
from monitor_testing import http_get, plugin_of
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import localagent

CONFIG = (
    "tick = 0.05\nwindow = 0.5\nwarn_errors_per_s = 20\ncritical_errors_per_s = 400\n"
    "actions = true\nactions_cooldown = 0.3\nwarning_budget = 0.5\ncritical_budget = 0.25\n"
    "pressure_pooled_bytes = 4096\n"
)


@pytest.fixture
def monitor_config() -> str:
    return CONFIG


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return ["monitor", "mempool"]


def test_the_plan_tightens_at_once_and_relaxes_after_a_calm_period() -> None:
    plan = ActionPlan(cooldown=5)
    assert plan.decide(1, 0.0) == 1
    assert plan.decide(2, 1.0) == 2
    assert plan.decide(0, 2.0) is None  # calm starts
    assert plan.decide(2, 3.0) is None  # not calm after all: the level holds
    assert plan.decide(1, 4.0) is None
    assert plan.decide(1, 8.9) is None
    assert plan.decide(0, 9.5) == 0  # 5 s below critical: down to what the status is now
    assert plan.decide(0, 20.0) is None


@asynccontextmanager
async def errors_at(agent: localagent.Server, per_second: float | None) -> AsyncIterator[None]:
    """Real requests of an unknown type, paced (``None``: as fast as they are answered)."""

    async def send() -> None:
        async with localagent.Client(agent.url, agent.token_file.get()) as client:
            while True:
                with suppress(localagent.ReplyError):
                    await client.request("no.such.type")
                if per_second is not None:
                    await asyncio.sleep(1 / per_second)  # pacing the load, not a stand-in for I/O

    task = asyncio.create_task(send())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the agent did not get there"
        await asyncio.sleep(0.02)


async def close_code_of_a_new_connection(agent: localagent.Server) -> int | None:
    """Open a connection, ping; ``None`` if it is answered, else the close code."""
    async with connect(
        agent.url, additional_headers={"Authorization": f"Bearer {agent.token_file.get()}"}
    ) as ws:
        try:
            await ws.send('{"id": 1, "type": "ping"}')
            await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            assert closed.rcvd.reason == REFUSAL_REASON
            return closed.rcvd.code
    return None


async def test_critical_refuses_new_connections_and_cuts_the_budget_then_it_all_comes_back(
    localagent_agent: localagent.Server,
) -> None:
    agent = localagent_agent
    runtime = agent.runtime
    monitor = plugin_of(agent).monitor
    assert monitor is not None and monitor.actions is not None
    configured = runtime.settings.server.max_pending_bytes
    # An open connection with the mempool plugin's pool, which the warning trims.
    async with localagent.Client(agent.url, agent.token_file.get()) as bystander:
        assert await bystander.request("ping") == {"pong": True}
        (pool,) = monitor.buffer_pools()
        bound = pool.max_pooled

        async with errors_at(agent, None):
            await until(lambda: monitor.health.current.status == "critical")
            await until(lambda: runtime.budget.limit == configured // 4)
            assert await close_code_of_a_new_connection(agent) == 1013
            assert pool.max_pooled == 4096
            data = (
                await http_get(agent.port, "/performance.json", token=agent.token_file.get())
            ).json()
            assert data["actions"]["enabled"] is True
            assert any("1013" in text for text in data["actions"]["active"])
            assert data["actions"]["log"][0]["text"].startswith(
                "critical actions (health critical: errors/s"
            )
            assert await bystander.request("ping") == {"pong": True}  # open ones go on
            ready = await http_get(agent.port, "/readyz")
            assert ready.status == 503  # the probes still answer

        await until(lambda: runtime.budget.limit == configured)  # calm, then relaxed
        assert await close_code_of_a_new_connection(agent) is None
        assert pool.max_pooled == bound
        assert monitor.actions.active == {}
        texts = [event.text for event in monitor.actions.events]
        assert texts[-1].startswith("healthy actions")


async def test_warning_cuts_the_budget_but_accepts_connections(
    localagent_agent: localagent.Server,
) -> None:
    agent = localagent_agent
    runtime = agent.runtime
    monitor = plugin_of(agent).monitor
    assert monitor is not None
    configured = runtime.settings.server.max_pending_bytes
    async with errors_at(agent, 60):  # ~60 errors/s: past warn (20), far from critical (400)
        await until(lambda: runtime.budget.limit == configured // 2)
        assert monitor.health.current.status == "warning"
        assert await close_code_of_a_new_connection(agent) is None
    await until(lambda: runtime.budget.limit == configured)


async def test_the_teardown_undoes_the_actions(localagent_agent: localagent.Server) -> None:
    agent = localagent_agent
    runtime = agent.runtime
    plugin = plugin_of(agent)
    async with errors_at(agent, None):
        await until(lambda: runtime.pressure.refusing is not None)
        await plugin.stop()
    assert runtime.pressure.refusing is None
    assert runtime.budget.limit == runtime.settings.server.max_pending_bytes
