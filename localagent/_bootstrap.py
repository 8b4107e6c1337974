"""Which plugins are enabled, and the bootstrap that asks the plugin cache before discovery.

Everything here runs before any plugin is imported and imports only the
standard library (no attrs, pluggy or ``importlib.metadata``), so a warm
``localagent plugins list`` pays for nothing it does not use.

The bootstrap, in full (:func:`open_cache`):

1. If a plugin named ``cache`` is enabled (by the same rules as every plugin:
   ``config.toml``, ``LOCALAGENT_LOAD_PLUGINS``, ``-p``), import the module
   ``localagent_cache`` (the ``localagent-cache`` distribution) and call its
   ``open_cache()``. Not installed, disabled, or failing to import: no cache.
2. The cache's ``load()`` returns the manifest (the installed plugins, and what
   was observed when they were last imported) if it is still valid, else
   ``None``.
3. Without a valid manifest the core discovers the plugins through
   ``importlib.metadata`` (``localagent._plugins.discover``) and hands the
   result to the cache's ``save()``.

Without the cache plugin, step 3 runs every time: slower, the same result.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypedDict, cast

# Re-exported: the start-up code finds the config directory through this module.
from ._paths import CONFIG_FILE_NAME, config_dir, config_path

__all__ = [
    "CACHE_MODULE",
    "CACHE_PLUGIN",
    "LOAD_PLUGINS_VARIABLE",
    "Manifest",
    "Observation",
    "PluginCache",
    "Selection",
    "SpecRecord",
    "config_dir",
    "config_path",
    "disabled_plugins",
    "open_cache",
    "parse_plugin_options",
    "read_disabled_plugins",
]

LOAD_PLUGINS_VARIABLE = "LOCALAGENT_LOAD_PLUGINS"

#: The cache plugin's entry-point name, and the module the bootstrap imports for it.
CACHE_PLUGIN = "cache"
CACHE_MODULE = "localagent_cache"


class SpecRecord(TypedDict):
    """A discovered plugin as the manifest stores it (see ``PluginSpec``)."""

    name: str
    value: str
    distribution: str | None
    version: str | None


class Observation(TypedDict):
    """What ``plugins list`` saw when it last imported the plugins.

    ``records`` are ``PluginInfo.to_json()`` objects, built-ins included; they
    are valid only for the same set of ``enabled`` plugin names.
    """

    enabled: list[str]
    records: list[dict[str, Any]]


class Manifest(TypedDict):
    """A valid manifest, as :meth:`PluginCache.load` returns it."""

    path: str
    plugins: list[SpecRecord]
    observed: Observation | None


class PluginCache(Protocol):
    """What the bootstrap needs from the cache plugin's ``open_cache()``."""

    @property
    def path(self) -> str:
        """The manifest file."""

    def load(self) -> Manifest | None:
        """The manifest if it exists and nothing it depends on changed, else ``None``."""

    def save(self, plugins: Sequence[SpecRecord], observed: Observation | None = None) -> bool:
        """Write the manifest; ``False`` (never an exception) if it cannot be written."""

    def clear(self) -> int:
        """Remove the manifests; return how many files were removed."""


def parse_plugin_options(options: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """Split ``-p NAME`` / ``-p no:NAME`` options into (enable, disable) name sets."""
    enable, disable = set(), set()
    for option in options:
        if option.startswith("no:"):
            disable.add(option[3:])
        else:
            enable.add(option)
    return frozenset(enable), frozenset(disable)


def _load_only(environ: Mapping[str, str]) -> frozenset[str] | None:
    value = environ.get(LOAD_PLUGINS_VARIABLE)
    if value is None:
        return None
    return frozenset(name.strip() for name in value.split(",") if name.strip())


class Selection(NamedTuple):
    """The rules that decide, before any import, whether a plugin is enabled.

    Attributes:
        disabled_in_config: Names with ``enabled = false`` in ``config.toml``.
        load_only: ``LOCALAGENT_LOAD_PLUGINS`` as a set (``None`` when unset):
            the only third-party plugins to enable.
        enable: ``-p NAME`` names, which win over the above.
        disable: ``-p no:NAME`` names, which win over everything.
    """

    disabled_in_config: frozenset[str]
    load_only: frozenset[str] | None
    enable: frozenset[str]
    disable: frozenset[str]

    @classmethod
    def build(
        cls,
        disabled_in_config: Iterable[str] = (),
        options: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Selection:
        """The selection from the config, ``-p`` options and the environment."""
        enable, disable = parse_plugin_options(options)
        load_only = _load_only(os.environ if environ is None else environ)
        return cls(frozenset(disabled_in_config), load_only, enable, disable)

    def is_enabled(self, name: str, builtin: bool = False) -> bool:
        """Whether plugin ``name`` is enabled (built-ins ignore ``LOCALAGENT_LOAD_PLUGINS``)."""
        if name in self.disable:
            return False
        if name in self.enable:
            return True
        if self.load_only is not None and not builtin:
            return name in self.load_only
        return name not in self.disabled_in_config

    @property
    def discovers(self) -> bool:
        """Whether any third-party plugin can be enabled (else discovery is skipped)."""
        return self.load_only != frozenset() or bool(self.enable)


def read_disabled_plugins(directory: str | os.PathLike[str]) -> frozenset[str] | None:
    """The plugins ``config.toml`` disables, read without validating the rest of the file.

    Returns:
        The names, or ``None`` when the file is not plainly valid (unreadable,
        not TOML, a ``plugins`` entry that is not a table, a non-boolean
        ``enabled``): the caller then loads the settings properly, which
        reports the error with its location.
    """
    try:
        with open(os.path.join(directory, CONFIG_FILE_NAME), "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return frozenset()
    except OSError:
        return None
    import tomllib

    try:
        tables = tomllib.loads(data.decode("utf-8")).get("plugins", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        return None
    if not all(isinstance(table.get("enabled", True), bool) for table in tables.values()):
        return None
    return frozenset(name for name, table in tables.items() if table.get("enabled") is False)


def open_cache(is_enabled: Callable[[str], bool]) -> PluginCache | None:
    """The cache plugin's manifest cache, if it is installed and enabled.

    Args:
        is_enabled: Decides whether the plugin named ``cache`` is enabled
            (e.g. :meth:`Selection.is_enabled`); a disabled plugin is never imported.

    Returns:
        ``localagent_cache.open_cache()``, or ``None`` when the plugin is
        disabled, not installed or broken (discovery then runs uncached, and
        reports a broken plugin like any other).
    """
    if not is_enabled(CACHE_PLUGIN):
        return None
    try:
        module = importlib.import_module(CACHE_MODULE)
        return cast(PluginCache, module.open_cache())
    except Exception:  # never fatal: the uncached path reports a broken plugin
        return None


def disabled_plugins(directory: str | os.PathLike[str]) -> frozenset[str]:
    """:func:`read_disabled_plugins`, or the full settings' answer if the file is not plain.

    Raises:
        ConfigError: The config file is invalid (from the full settings loader).
    """
    disabled = read_disabled_plugins(directory)
    if disabled is not None:
        return disabled
    from pathlib import Path

    from ._config import load_settings

    return load_settings(directory=Path(directory)).disabled_plugins
