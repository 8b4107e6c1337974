"""Shared fixtures: an isolated config dir, a real agent on a free loopback port, a client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import localagent

#: Variables a developer's shell may set that must not leak into tests.
_ISOLATED = ("LOCALAGENT_URL", "LOCALAGENT_TOKEN", "LOCALAGENT_HOST", "LOCALAGENT_PORT")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Give every test its own config dir, and keep installed third-party plugins out.

    Core tests never see plugins installed in the environment: they run with
    ``LOCALAGENT_LOAD_PLUGINS=""``. Tests about discovery set it themselves.
    """
    config = tmp_path / "config"
    monkeypatch.setenv("LOCALAGENT_CONFIG_DIR", str(config))
    monkeypatch.setenv("LOCALAGENT_LOAD_PLUGINS", "")
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    yield config


@pytest.fixture
async def agent() -> AsyncIterator[localagent.Server]:
    """A real agent (built-in plugins only) listening on a free 127.0.0.1 port."""
    async with localagent.Server.create(port=0) as server:
        yield server


@pytest.fixture
async def client(agent: localagent.Server) -> AsyncIterator[localagent.Client]:
    """A client connected to :func:`agent` with the right token."""
    async with localagent.Client(agent.url, agent.token_file.get()) as connected:
        yield connected


@pytest.fixture
def subprocess_env(isolated_env: Path) -> dict[str, str]:
    """The environment for ``localagent`` subprocesses: same isolation as the test."""
    return dict(os.environ)
