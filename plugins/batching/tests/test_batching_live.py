"""Batching toggled on a running agent: its teardown, and connections opened before and after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from localagent_batching import Plugin
from websockets.asyncio.client import ClientConnection, connect

import localagent
from localagent._config import set_plugin_enabled


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return [("batching", Plugin())]


async def _open(server: localagent.Server) -> ClientConnection:
    return await connect(
        server.url,
        additional_headers={"Authorization": f"Bearer {server.token_file.get()}"},
        compression=None,
    )


async def _frames_for_a_batch(ws: ClientConnection) -> list[Any]:
    """Send a batch of 50 echos; return the frames the replies came in."""
    await ws.send(
        orjson.dumps(
            {"type": "batch", "messages": [{"id": n, "type": "echo", "data": n} for n in range(50)]}
        ),
        text=True,
    )
    frames: list[Any] = []
    count = 0
    async with asyncio.timeout(10):
        while count < 50:
            frame = orjson.loads(await ws.recv(decode=False))
            frames.append(frame)
            count += len(frame["messages"]) if frame.get("type") == "batch" else 1
    return frames


async def _until(done: Any) -> None:
    deadline = time.monotonic() + 15
    while not done():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_disabled_live_it_flushes_and_stops_and_enabled_it_takes_new_connections(
    localagent_agent: localagent.Server, localagent_config_dir: Path
) -> None:
    server = localagent_agent
    info = server.runtime.plugins.info("batching")
    assert info is not None
    old = await _open(server)
    try:
        assert any(f.get("type") == "batch" for f in await _frames_for_a_batch(old))
        (connection,) = server.runtime.connections
        batcher = connection.state["batching"]

        set_plugin_enabled(localagent_config_dir, "batching", False)
        await _until(lambda: not info.registered and not batcher.enabled)
        # Its teardown flushed and switched off the batcher of the open connection.
        assert not any(f.get("type") == "batch" for f in await _frames_for_a_batch(old))

        set_plugin_enabled(localagent_config_dir, "batching", True)
        await _until(lambda: info.registered)
        # Connection-scoped: the connection opened before it was enabled goes on without it.
        assert not any(f.get("type") == "batch" for f in await _frames_for_a_batch(old))
        assert server.live is not None
        status = {p["name"]: p for p in server.live.status()["plugins"]}
        assert status["batching"]["connection_scoped"] is True
        assert status["batching"]["open_connections_without"] == 1
        new = await _open(server)
        try:
            assert any(f.get("type") == "batch" for f in await _frames_for_a_batch(new))
        finally:
            await new.close()
    finally:
        await old.close()
