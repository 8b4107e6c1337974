"""Shared fixtures: an isolated config dir, a real agent on a free loopback port, a client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import localagent
from localagent.testing import RedisServer

#: Variables a developer's shell may set that must not leak into tests.
_ISOLATED = (
    "LOCALAGENT_URL",
    "LOCALAGENT_TOKEN",
    "LOCALAGENT_HOST",
    "LOCALAGENT_PORT",
    "LOCALAGENT_REDIS",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Give every test its own config dir, and keep installed third-party plugins out.

    Core tests never see plugins installed in the environment: they run with
    ``LOCALAGENT_LOAD_PLUGINS=""``. Tests about discovery set it themselves.
    """
    config = tmp_path / "config"
    monkeypatch.setenv("LOCALAGENT_CONFIG_DIR", str(config))
    monkeypatch.setenv("LOCALAGENT_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("LOCALAGENT_LOAD_PLUGINS", "")
    monkeypatch.setenv("LOCALAGENT_CACHE_DIR", str(tmp_path / "cache"))  # the plugin cache's
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    yield config


@pytest.fixture
def agent(localagent_agent: localagent.Server) -> localagent.Server:
    """A real agent (built-in plugins only) on a free 127.0.0.1 port (localagent.testing)."""
    return localagent_agent


@pytest.fixture
def client(localagent_client: localagent.Client) -> localagent.Client:
    """A client connected to :func:`agent` with the right token (localagent.testing)."""
    return localagent_client


@pytest.fixture
def subprocess_env(isolated_env: Path) -> dict[str, str]:
    """The environment for ``localagent`` subprocesses: same isolation as the test."""
    return dict(os.environ)


@pytest.fixture(scope="session")
def redis_server(localagent_redis: RedisServer) -> RedisServer:
    """The session's private redis-server (``localagent.testing``'s ``localagent_redis``)."""
    return localagent_redis


@pytest.fixture
def redis_url(localagent_redis_url: str) -> str:
    """Its URL, running and emptied for this test."""
    return localagent_redis_url
