"""The agent the bridge's tests talk to: real, on a loopback port, in the test's loop."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localagent import Server

PYTHON = sys.executable


def _prepare(config_dir: Path, workspace: Path) -> None:
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(
        f'[plugins.exec]\nallow = ["{PYTHON}"]\n', encoding="utf-8"
    )
    workspace.mkdir()
    (workspace / "notes.txt").write_text("hello from the workspace\n", encoding="utf-8")


@pytest.fixture
async def agent(localagent_config_dir: Path, tmp_path: Path) -> AsyncIterator[Server]:
    """An agent whose exec allows this Python, with a file in its workspace."""
    _prepare(localagent_config_dir, tmp_path / "workspace")
    async with Server.create(port=0) as server:
        yield server
