"""Fixtures for the pooling plugin's tests (the private Redis comes from localagent.testing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def agent_env(localagent_config_dir: Path) -> dict[str, str]:
    """The environment for ``localagent serve`` subprocesses: isolated like the test."""
    return dict(os.environ)


@pytest.fixture(autouse=True)
def isolated(localagent_config_dir: Path) -> Path:
    """Every test: its own config dir and workspace, no third-party plugin unless named."""
    return localagent_config_dir
