"""Pooling toggled on a running agent: its teardown closes the pools and uninstalls them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from localagent_pooling import Plugin

import localagent
from localagent import Client
from localagent._config import set_plugin_enabled

PLUGIN = Plugin()


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return [("pooling", PLUGIN)]


async def test_disabling_pooling_closes_its_pools_and_uninstalls_them(
    localagent_agent: localagent.Server, localagent_config_dir: Path
) -> None:
    server = localagent_agent
    registry = PLUGIN.registry
    assert registry is not None
    async with Client(server.url, server.token_file.get()) as client:
        assert client.pooled  # the plugin's factory lent it a pooled connection
        assert await client.request("ping") == {"pong": True}
    (pool,) = registry.pools.values()
    assert pool.stats().idle >= 1

    set_plugin_enabled(localagent_config_dir, "pooling", False)
    deadline = time.monotonic() + 15
    while registry.pools:
        assert time.monotonic() < deadline, "the pools were not closed"
        await asyncio.sleep(0.02)
    assert pool.stats().idle == 0
    async with Client(server.url, server.token_file.get()) as client:
        assert not client.pooled  # no factory any more: a connection of its own
        assert await client.request("ping") == {"pong": True}
