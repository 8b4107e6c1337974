"""Fixtures for the monitor's tests: a real agent with the plugin and a raising plugin."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from monitor_testing import write_config

import localagent


@pytest.fixture
def monitor_config() -> str:
    """The ``[plugins.monitor]`` table of the test's agent (override per module or test)."""
    return 'types = ["echo"]\ntick = 0.05\n'


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return ["monitor"]


@pytest.fixture
def localagent_settings(localagent_config_dir: Path, monitor_config: str) -> Any:
    """Settings from a config dir whose ``config.toml`` holds ``monitor_config``."""
    write_config(localagent_config_dir, monitor_config)
    return localagent.load_settings(overrides={"port": 0})
