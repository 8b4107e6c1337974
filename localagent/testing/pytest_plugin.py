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
from ._redis import RedisServer

__all__ = [
    "localagent_agent",
    "localagent_chromium",
    "localagent_client",
    "localagent_config_dir",
    "localagent_load",
    "localagent_plugins",
    "localagent_redis",
    "localagent_redis_url",
    "localagent_settings",
]


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    """The plugins under test: entry-point names (``"hello"``), plugin objects, or
    ``(name, object)`` pairs.

    An object alone is registered under its class's name, lowercased; give a
    pair when two objects' classes share a name (every ``Plugin`` class, say).
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
    objects: dict[str, object] = {}
    for plugin in plugins:
        if isinstance(plugin, str):
            continue
        if isinstance(plugin, tuple):
            name, plugin = plugin
        else:
            name = getattr(plugin, "__name__", type(plugin).__name__).lower()
        if name in objects:
            raise ValueError(
                f"two plugin objects are both named {name!r}: "
                "give them as (name, object) pairs in localagent_plugins"
            )
        objects[name] = plugin
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


@pytest.fixture(scope="session")
def localagent_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private ``redis-server`` for the whole session, on a free port (never the user's Redis).

    Without the binary the test is skipped, but under CI (``CI`` set), where
    ``.ci/run`` installs it, the test fails instead.
    """
    import os

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
def localagent_redis_url(localagent_redis: RedisServer) -> str:
    """The private Redis's URL, running (restarted if a test stopped it) and emptied."""
    if not localagent_redis.ping():
        localagent_redis.start()
    import redis

    client = redis.Redis.from_url(localagent_redis.url)
    client.flushall()
    client.close()
    return localagent_redis.url


@pytest.fixture
def localagent_chromium() -> str:
    """The path of the system's Chromium (Debian's ``chromium``) for browser tests.

    Without it the test is skipped, but under CI (``CI`` set), where
    ``.ci/run`` installs it, the test fails instead.
    """
    import os

    from ._browser import find_chromium

    found = find_chromium()
    if found is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest_asyncio.fixture
async def localagent_client(localagent_agent: Server) -> AsyncIterator[Client]:
    """A :class:`localagent.Client` connected to ``localagent_agent`` with its token."""
    async with Client(localagent_agent.url, localagent_agent.token_file.get()) as client:
        yield client
