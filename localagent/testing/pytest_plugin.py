"""Pytest fixtures for plugin authors (loaded through the ``pytest11`` entry point).

Everything is real: a plugin manager that loaded your plugin the way the agent
does, an agent listening on a free 127.0.0.1 port with its own token, and a
connected :class:`localagent.Client`. Each test gets its own config directory
and workspace, and no other third-party plugin is loaded.

Name the plugins a test needs by overriding ``localagent_plugins``::

    import pytest

    @pytest.fixture
    def localagent_plugins():
        return ["hello"]          # entry-point names, or plugin objects

    async def test_hello(localagent_client):
        assert await localagent_client.request("hello", "you") == {"greeting": "hello, you"}

The async fixtures need ``pytest-asyncio`` (``asyncio_mode = "auto"``, or mark
the tests with ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .._client import Client
from .._config import load_settings
from .._plugins import BUILTIN_PLUGINS, LoadedPlugins, load_plugins
from .._server import Server

__all__ = [
    "localagent_agent",
    "localagent_client",
    "localagent_config_dir",
    "localagent_load",
    "localagent_plugins",
    "localagent_settings",
]


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    """The plugins under test: entry-point names (``"hello"``) or plugin objects.

    Override it in your ``conftest.py`` or test module. The default is none:
    only the built-in plugins.
    """
    return []


@pytest.fixture
def localagent_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh config directory (``tmp_path/"config"``) and workspace (``tmp_path/"workspace"``).

    Both are set in the environment for this test.

    ``LOCALAGENT_LOAD_PLUGINS`` is set to empty, so only the plugins a test
    names are loaded, whatever else is installed.
    """
    config_dir = tmp_path / "config"
    monkeypatch.setenv("LOCALAGENT_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("LOCALAGENT_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("LOCALAGENT_LOAD_PLUGINS", "")
    for name in ("LOCALAGENT_URL", "LOCALAGENT_TOKEN", "LOCALAGENT_REDIS"):
        monkeypatch.delenv(name, raising=False)
    yield config_dir


def _split(plugins: Sequence[Any]) -> tuple[list[str], dict[str, object]]:
    names = [plugin for plugin in plugins if isinstance(plugin, str)]
    objects = {
        getattr(plugin, "__name__", type(plugin).__name__).lower(): plugin
        for plugin in plugins
        if not isinstance(plugin, str)
    }
    return names, objects


@pytest.fixture
def localagent_load(localagent_config_dir: Path) -> Any:
    """Load plugins into a fresh plugin manager, as the agent would; built-ins left out.

    Call it with entry-point names and/or plugin objects; it returns
    :class:`localagent.LoadedPlugins` (``.manager`` is the pluggy manager,
    ``.infos`` says what loaded, with errors). ``builtins=True`` keeps the
    built-in plugins.
    """

    def load(*plugins: Any, builtins: bool = False, strict: bool = True) -> LoadedPlugins:
        names, objects = _split(plugins)
        options = list(names)
        if not builtins:
            options += [f"no:{spec.name}" for spec in BUILTIN_PLUGINS if spec.name not in names]
        return load_plugins(options=options, extra=objects, strict=strict)

    return load


@pytest.fixture
def localagent_settings(localagent_config_dir: Path) -> Any:
    """The settings the agent fixture uses: from the test's config dir, a free port."""
    return load_settings(overrides={"port": 0})


@pytest_asyncio.fixture
async def localagent_agent(
    localagent_settings: Any, localagent_plugins: Sequence[Any]
) -> AsyncIterator[Server]:
    """A started agent on a free 127.0.0.1 port with the built-ins and ``localagent_plugins``.

    Named plugins that fail to load fail the test (``strict``). ``server.url``
    is its address and ``server.token_file.get()`` its token.
    """
    names, objects = _split(localagent_plugins)
    server = Server.create(localagent_settings, options=names, extra_plugins=objects, strict=True)
    async with server:
        yield server


@pytest_asyncio.fixture
async def localagent_client(localagent_agent: Server) -> AsyncIterator[Client]:
    """A :class:`localagent.Client` connected to ``localagent_agent`` with its token."""
    async with Client(localagent_agent.url, localagent_agent.token_file.get()) as client:
        yield client
