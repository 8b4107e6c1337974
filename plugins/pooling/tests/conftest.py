"""Fixtures for the pooling plugin's tests: a private redis-server, an environment for agents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localagent.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server(localagent_redis: RedisServer) -> RedisServer:
    """The session's private redis-server (``localagent.testing``'s ``localagent_redis``)."""
    return localagent_redis


@pytest.fixture
def redis_url(localagent_redis_url: str) -> str:
    """Its URL, running and emptied for this test."""
    return localagent_redis_url


@pytest.fixture
def agent_env(localagent_config_dir: Path) -> dict[str, str]:
    """The environment for ``localagent serve`` subprocesses: isolated like the test."""
    return dict(os.environ)


@pytest.fixture(autouse=True)
def isolated(localagent_config_dir: Path) -> Path:
    """Every test: its own config dir and workspace, no third-party plugin unless named."""
    return localagent_config_dir
