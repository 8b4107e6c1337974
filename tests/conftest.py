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
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session (never the user's Redis).

    Without the binary the Redis tests are skipped locally, but fail under CI
    (``CI=true``), where ``.ci/run`` installs it.
    """
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private Redis's URL, running and emptied for this test."""
    if not redis_server.ping():
        redis_server.start()
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url
