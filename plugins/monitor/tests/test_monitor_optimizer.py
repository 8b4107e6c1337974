"""The auto-optimizer in a real agent, with and without the batching plugin.

It switches ``connection.state["batching"].enabled`` (the batching plugin's
per-connection switch). With a batching plugin that has no such switch, it must
leave batching alone and say so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from localagent_batching import MessageBatcher
from monitor_testing import http_get, plugin_of, until

import localagent
from localagent import hookimpl

SWITCHABLE = hasattr(MessageBatcher, "enabled")

CONFIG = (
    'types = ["echo"]\ntick = 0.05\nauto_optimize = true\n'
    "batch_above = 50\nunbatch_below = 5\nmin_switch_interval = 0\n"
)


@pytest.fixture
def monitor_config() -> str:
    return CONFIG


class SwitchablePassThrough:
    """A stand-in for a batching plugin with the per-connection switch: a real plugin that
    keeps, in ``connection.state["batching"]``, an object with ``enabled`` and ``pending``."""

    __name__ = "switch"

    class Switch:
        def __init__(self) -> None:
            self.enabled = True
            self.pending = 0

    @hookimpl
    def on_connect(self, connection: localagent.Connection) -> None:
        connection.state["batching"] = self.Switch()


async def optimizer_state(agent: localagent.Server) -> Any:
    assert plugin_of(agent).monitor is not None
    reply = await http_get(agent.port, "/performance.json", token=agent.token_file.get())
    return reply.json()["optimizer"]


async def test_without_batching_it_does_nothing(localagent_agent: localagent.Server) -> None:
    agent = localagent_agent
    async with localagent.Client(agent.url, agent.token_file.get()) as client:
        for n in range(300):
            await client.request("echo", n)
        state = await optimizer_state(agent)
    assert state["enabled"] is True
    assert [c["batching"] for c in state["connections"]] == [None]
    assert state["decisions"] == []


class NoSwitch:
    """A batching plugin without the per-connection switch (an older localagent-batching)."""

    __name__ = "noswitch"

    class Batcher:
        pending = 0

    @hookimpl
    def on_connect(self, connection: localagent.Connection) -> None:
        connection.state["batching"] = self.Batcher()


@pytest.mark.parametrize("localagent_plugins", [["monitor", NoSwitch()]])
async def test_a_batcher_without_a_switch_is_left_alone(
    localagent_agent: localagent.Server,
    localagent_plugins: Sequence[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = localagent_agent
    with caplog.at_level(logging.WARNING, logger="localagent.monitor"):
        async with localagent.Client(agent.url, agent.token_file.get()) as client:
            for n in range(300):
                await client.request("echo", n)
            state = await optimizer_state(agent)
    assert state["decisions"] == []
    assert "cannot switch batching per connection" in caplog.text


async def follows_the_rate(agent: localagent.Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="localagent.monitor"):
        async with localagent.Client(agent.url, agent.token_file.get()) as client:
            (connection,) = agent.runtime.connections
            batcher = connection.state["batching"]
            assert batcher.enabled is False  # off until the rate calls for it
            sent = 0

            async def batching_on() -> bool:
                nonlocal sent
                for _ in range(50):
                    sent += 1
                    assert await client.request("echo", sent) == {"data": sent}
                return bool(batcher.enabled)

            await until(batching_on)

            async def batching_off() -> bool:  # the client is idle now
                state = await optimizer_state(agent)
                return not state["connections"][0]["batching"]

            await until(batching_off, attempts=5000)
            assert batcher.enabled is False
            state = await optimizer_state(agent)
    texts = [d["text"] for d in state["decisions"]]
    assert texts[-1].startswith(f"batching on for connection {connection.id}: ")
    assert texts[0].startswith(f"batching off for connection {connection.id}: ")
    assert "> batch_above 50 msg/s" in caplog.text and "< unbatch_below 5 msg/s" in caplog.text


@pytest.mark.parametrize("localagent_plugins", [["monitor", SwitchablePassThrough()]])
async def test_the_switch_follows_the_message_rate(
    localagent_agent: localagent.Server,
    localagent_plugins: Sequence[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await follows_the_rate(localagent_agent, caplog)


@pytest.mark.skipif(not SWITCHABLE, reason="needs MessageBatcher.enabled (localagent-batching)")
@pytest.mark.parametrize("localagent_plugins", [["monitor", "batching"]])
async def test_batching_follows_the_message_rate(
    localagent_agent: localagent.Server,
    localagent_plugins: Sequence[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await follows_the_rate(localagent_agent, caplog)
