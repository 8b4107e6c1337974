"""What a start imports: the buffer pool waits for the first connection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import asyncio, json, sys

import localagent
from localagent import Client


async def main():
    settings = localagent.load_settings(overrides={"port": 0})
    server = localagent.Server.create(settings, options=["mempool"], strict=True)
    async with server:
        listening = "localagent_mempool._pool" in sys.modules
        async with Client(server.url, server.token_file.get()) as client:
            await client.request("ping")
        connected = "localagent_mempool._pool" in sys.modules
        print(json.dumps({"listening": listening, "connected": connected}))


asyncio.run(main())
"""


@pytest.mark.usefixtures("localagent_config_dir")
def test_the_pool_module_is_imported_at_the_first_connection_not_at_the_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"listening": False, "connected": True}


def test_the_pool_is_sized_by_the_settings_of_the_last_load(localagent_config_dir: Path) -> None:
    from localagent_mempool import BufferPool, Plugin

    localagent_config_dir.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text("[plugins.mempool]\nmax_buffer = 4096\n")
    import localagent

    plugin = Plugin()
    assert plugin.pool.max_buffer != 4096  # the defaults, before on_load
    plugin.on_load(localagent.load_settings())
    assert isinstance(plugin.pool, BufferPool)
    assert plugin.pool.max_buffer == 4096
