"""LocalAgent plugin ``cache``: a JSON manifest of the installed plugins, for a fast start.

The work happens before any plugin is loaded: the core's bootstrap
(``localagent._bootstrap.open_cache``) imports this module when a plugin named
``cache`` is enabled and calls :func:`open_cache`. The manifest then stands in
for the scan of installed distributions (``importlib.metadata``, the slowest
part of a start), and ``localagent plugins list`` shows each plugin's hooks
and import time as last measured instead of importing it.

This module imports only the standard library: it runs on every start.
"""

from __future__ import annotations

from typing import ClassVar, Final

from ._manifest import CACHE_DIR_VARIABLE, FORMAT, ManifestCache, cache_dir

__all__ = [
    "CACHE_DIR_VARIABLE",
    "FORMAT",
    "NAME",
    "ManifestCache",
    "Plugin",
    "cache_dir",
    "open_cache",
]

#: The plugin's name: its entry point, and what the bootstrap checks is enabled.
NAME: Final = "cache"


def open_cache() -> ManifestCache:
    """The manifest cache of this interpreter, in :func:`cache_dir` (the bootstrap's entry)."""
    return ManifestCache(cache_dir())


class Plugin:
    """The plugin as the plugin manager sees it: it implements no hook.

    Registering it makes ``cache`` show in ``localagent plugins list`` and
    lets ``plugins disable cache`` / ``-p no:cache`` turn the cache off; the
    bootstrap reads the manifest before any plugin is registered.

    Attributes:
        bench_areas: ``localagent bench`` runs these areas with the plugin off and on.
    """

    bench_areas: ClassVar[tuple[str, ...]] = ("plugins",)
