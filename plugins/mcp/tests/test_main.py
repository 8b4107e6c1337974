"""How ``localagent mcp`` runs: the event loop it asks anyio for."""

from __future__ import annotations

import asyncio

import pytest
from localagent_mcp._main import run_on_loop


def test_the_bridge_runs_on_uvloop_where_it_is_installed() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def running() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    # anyio.run(..., backend="asyncio") without a loop factory gives asyncio's own loop.
    assert issubclass(run_on_loop(running), uvloop.Loop)
