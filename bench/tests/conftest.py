"""Fixtures for the bench's tests: each test isolated as the core's are, and a private Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Variables a developer's shell may set that must not reach the agents a test starts.
_ISOLATED = ("LOCALAGENT_HOST", "LOCALAGENT_PORT")


@pytest.fixture(autouse=True)
def isolated_env(
    localagent_config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The testing plugin's config dir and workspace, no third-party plugin, a private cache."""
    monkeypatch.setenv("LOCALAGENT_CACHE_DIR", str(tmp_path / "cache"))
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    return localagent_config_dir


@pytest.fixture
def redis_url(localagent_redis_url: str) -> str:
    """A private, emptied ``redis-server`` (never the machine's own)."""
    return localagent_redis_url
