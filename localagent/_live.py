"""Plugins enabled, disabled and installed while the agent runs.

:class:`LivePlugins` watches what decides the agent's plugin set, every
``server.watch_interval`` seconds (0.5 by default), with a few ``stat`` calls
and nothing else:

- ``config.toml``: when it changes (``localagent plugins enable/disable``
  rewrites it), the ``[plugins.*]`` tables are read again and each plugin
  whose enabled state changed is loaded (import, register, ``on_load``) or
  unloaded (unregistered at once, so its types answer ``unknown_type``; its
  routes removed; handlers already running get ``server.shutdown_grace``
  seconds to finish; then its teardown runs and the tasks its ``on_load``
  spawned are cancelled). ``-p`` options and ``LOCALAGENT_LOAD_PLUGINS`` keep
  winning over the file, as at start.
- the directories of ``sys.path`` and ``agents/rescan``: when one changes (a
  distribution was installed, or ``localagent plugins rescan`` ran), new
  ``.pth`` files are read and the installed plugins discovered again; a new
  plugin that is enabled is loaded. An upgraded plugin whose module is already
  imported keeps running its old code: Python cannot safely replace an
  imported module, so the agent logs that it needs a restart and its status
  file marks it stale.

Connection-scoped plugins (those with ``on_connect``, such as batching and
mempool) apply to connections opened after they were enabled; connections
open at that moment go on without them, and a disabled one's wrappers stay on
the connections that have them until those close. The status file
(:mod:`localagent._running`) says how many open connections each applies to.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import site
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from ._bootstrap import Selection, open_cache
from ._config import Settings, load_settings
from ._plugins import PluginInfo, PluginSpec, installed_plugins, register_object, register_spec
from ._running import RESCAN_FILE, agents_dir, remove_status, write_status
from .exceptions import ConfigError, PluginError

if TYPE_CHECKING:
    from ._runtime import AgentRuntime

__all__ = ["LivePlugins"]

logger = logging.getLogger("localagent")

Signature = tuple[int, int, int] | None


def _signature(path: str | os.PathLike[str]) -> Signature:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size, found.st_ino)


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return dirs


def _pth_files(dirs: Iterable[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found.update((directory, name) for name in names if name.endswith(".pth"))
    return found


def _reread(settings: Settings) -> Settings:
    """``settings`` with the ``[plugins.*]`` tables read again; ``--set`` overrides kept.

    Raises:
        ConfigError: The file is invalid now.
    """
    fresh = load_settings(directory=settings.config_dir)
    tables = {name: dict(table) for name, table in fresh.plugins.items()}
    for key in settings.plugin_overrides:
        name, _, field = key.partition(".")
        tables.setdefault(name, {})[field] = settings.plugins[name][field]
    return msgspec.structs.replace(settings, plugins=tables)


def _wall(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


class LivePlugins:
    """Keeps a running agent's plugins in step with its config file and installed plugins.

    Args:
        runtime: The running agent.
        url: Where it listens (for the status file).
        interval: Seconds between two looks.
    """

    def __init__(self, runtime: AgentRuntime, url: str, interval: float) -> None:
        self.runtime = runtime
        self.url = url
        self.interval = interval
        plugins = runtime.plugins
        self.selection = plugins.selection or Selection.build(runtime.settings.disabled_plugins)
        self._config_dir = runtime.settings.config_dir
        self._seen_config = _signature(runtime.settings.config_file)
        self._seen_paths = self._path_signatures()
        self._seen_pth = _pth_files(_site_dirs())
        #: When each plugin was enabled on the running agent (wall time), by name.
        self.enabled_at: dict[str, float] = {}
        #: Open connections that a connection-scoped plugin does not apply to
        #: (opened before it was enabled), or still has (opened before it was disabled).
        self._without: dict[str, set[str]] = {}
        self._kept: dict[str, set[str]] = {}
        #: Installed versions that differ from the loaded ones, by name.
        self.stale: dict[str, str | None] = {}
        self._written: dict[str, Any] | None = None
        self.started = time.time()

    def _path_signatures(self) -> tuple[Signature, ...]:
        paths = [*sys.path, *_site_dirs(), os.path.join(agents_dir(self._config_dir), RESCAN_FILE)]
        return tuple(_signature(path or ".") for path in paths)

    # -- the watcher ---------------------------------------------------------

    def start(self) -> None:
        """Write the status file and start watching (a task of the agent's own)."""
        self.write_status()
        self._task = self.runtime.spawn(self._watch(), name="localagent plugin watcher")

    async def stop(self) -> None:
        """Stop watching and remove the status file (before the plugins are torn down)."""
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        remove_status(self._config_dir)

    async def _watch(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.check()
                except Exception:
                    logger.exception("plugin watcher: a check failed; the next one runs")
        finally:
            remove_status(self._config_dir)

    async def check(self) -> None:
        """Act on what changed since the last look; rewrite the status file if it changed."""
        config = _signature(self.runtime.settings.config_file)
        if config != self._seen_config:
            self._seen_config = config
            await self.reload_config()
        paths = self._path_signatures()
        if paths != self._seen_paths:
            self._seen_paths = paths
            await self.rescan()
            self._seen_paths = self._path_signatures()  # a rescan may add sys.path entries
        self.write_status()

    # -- config.toml -----------------------------------------------------------

    async def reload_config(self) -> None:
        """Read the ``[plugins.*]`` tables again and apply the enabled states."""
        runtime = self.runtime
        try:
            settings = _reread(runtime.settings)
        except ConfigError as exc:
            logger.error("%s; the running plugins are left as they are", exc)
            return
        runtime.settings = settings
        await self.apply(self.selection._replace(disabled_in_config=settings.disabled_plugins))

    def _is_builtin(self, info: PluginInfo) -> bool:
        return info.spec.builtin or info.name in self.runtime.plugins.extra

    async def apply(self, selection: Selection) -> None:
        """Enable or disable each plugin whose state differs under ``selection``."""
        before, self.selection = self.selection, selection
        for info in list(self.runtime.plugins.infos):
            builtin = self._is_builtin(info)
            wanted = selection.is_enabled(info.name, builtin)
            if wanted == before.is_enabled(info.name, builtin) and wanted == info.enabled:
                continue
            if wanted:
                await self.enable(info)
            else:
                await self.disable(info)

    async def enable(self, info: PluginInfo) -> None:
        """Import, register and load one plugin on the running agent."""
        runtime = self.runtime
        info.enabled = True
        if info.registered:
            return
        info.error = None
        extra = runtime.plugins.extra
        if info.name in extra:
            error = register_object(runtime.pm, extra[info.name], info)
        else:
            error = register_spec(runtime.pm, info)
        if error is not None:
            logger.error("plugin %r not enabled: %s", info.name, error)
            return
        plugin = runtime.pm.get_plugin(info.name)
        impls = [i for i in runtime.pm.hook.on_load.get_hookimpls() if i.plugin is plugin]
        with contextlib.suppress(PluginError):  # strict: reported, unregistered; serve on
            await runtime.lifecycle.load(impls)
        if not runtime.pm.has_plugin(info.name):  # its on_load failed
            return
        self.enabled_at[info.name] = time.time()
        self._kept.pop(info.name, None)
        if "on_connect" in info.hooks:
            self._without[info.name] = {c.id for c in runtime.connections}
        runtime.plugins_changed()
        logger.info(
            "plugin %r enabled on the running agent (import %.1f ms, on_load %.1f ms)%s",
            info.name,
            (info.import_seconds or 0) * 1000,
            (info.load_seconds or 0) * 1000,
            "; it applies to connections opened from now on" if "on_connect" in info.hooks else "",
        )

    async def disable(self, info: PluginInfo) -> None:
        """Unregister one plugin now, let its running handlers finish, then tear it down."""
        runtime = self.runtime
        info.enabled = False
        if not info.registered:
            return
        runtime.pm.unregister(name=info.name)
        info.registered = False
        runtime.routes.remove_plugin(info.name)
        self.enabled_at.pop(info.name, None)
        self._without.pop(info.name, None)
        if "on_connect" in info.hooks:
            self._kept[info.name] = {c.id for c in runtime.connections}
        runtime.plugins_changed()
        running = list(runtime.in_flight)
        grace = runtime.settings.server.shutdown_grace
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        await runtime.lifecycle.tear_down(info.name)
        logger.info("plugin %r disabled on the running agent", info.name)

    # -- installed distributions ---------------------------------------------

    async def rescan(self) -> None:
        """Discover the installed plugins again; load new enabled ones, note upgraded ones."""
        self._read_new_pth_files()
        importlib.invalidate_caches()
        selection = self.selection
        if not selection.discovers:
            return
        specs = await asyncio.to_thread(installed_plugins, open_cache(selection.is_enabled))
        infos = self.runtime.plugins.infos
        known = {info.name: info for info in infos}
        for spec in specs:
            info = known.get(spec.name)
            if info is None:
                info = PluginInfo(spec=spec, enabled=False)
                infos.append(info)
                logger.info(
                    "plugin %r installed (%s %s)", spec.name, spec.distribution, spec.version
                )
                if selection.is_enabled(spec.name):
                    await self.enable(info)
            elif spec != info.spec and not info.spec.builtin:
                self._upgraded(info, spec)

    def _upgraded(self, info: PluginInfo, spec: PluginSpec) -> None:
        module = info.spec.value.partition(":")[0].strip()
        if module not in sys.modules:
            info.spec = spec  # never imported here: the new version is what will load
            self.stale.pop(info.name, None)
            return
        if self.stale.get(info.name, "") != spec.version:
            logger.warning(
                "plugin %r was upgraded from %s to %s, but this agent has imported %s and "
                "keeps running it: restart the agent to use %s",
                info.name,
                info.spec.version,
                spec.version,
                info.spec.version,
                spec.version,
            )
        self.stale[info.name] = spec.version

    def _read_new_pth_files(self) -> None:
        """Add the paths of ``.pth`` files written since the start (editable installs)."""
        found = _pth_files(_site_dirs())
        for directory, name in sorted(found - self._seen_pth):
            # As at interpreter start: path lines are added, "import" lines run.
            site.addpackage(directory, name, None)
        self._seen_pth = found

    # -- the status file -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``plugins list`` shows about this agent."""
        runtime = self.runtime
        open_ids = {c.id for c in runtime.connections}
        plugins = []
        for info in runtime.plugins.infos:
            scoped = "on_connect" in info.hooks
            plugins.append(
                {
                    "name": info.name,
                    "version": info.spec.version,
                    "builtin": info.spec.builtin,
                    "loaded": info.registered,
                    "error": info.error,
                    "connection_scoped": scoped,
                    "enabled_at": _wall(self.enabled_at.get(info.name)),
                    "installed_version": self.stale.get(info.name, info.spec.version),
                    "stale": info.name in self.stale and info.registered,
                    "open_connections_without": len(self._without.get(info.name, set()) & open_ids),
                    "open_connections_still_with": len(self._kept.get(info.name, set()) & open_ids),
                }
            )
        selection = self.selection
        return {
            "pid": os.getpid(),
            "url": self.url,
            # What overrides config.toml in this agent (-p, LOCALAGENT_LOAD_PLUGINS).
            "load_only": None if selection.load_only is None else sorted(selection.load_only),
            "enable": sorted(selection.enable),
            "disable": sorted(selection.disable),
            "started": _wall(self.started),
            "watch_interval": self.interval,
            "connections": len(open_ids),
            "plugins": plugins,
        }

    def write_status(self) -> None:
        """Write the status file when what it says changed."""
        status = self.status()
        if status == self._written:
            return
        try:
            write_status(self._config_dir, status)
        except OSError as exc:
            logger.warning("cannot write the agent's status file: %s", exc)
        self._written = status
