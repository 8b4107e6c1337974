"""Each plugin's ``on_load``, and undoing it: at start, when toggled live, at shutdown.

``on_load`` may return what undoes it: a callable, or an async callable
(``async def on_load`` returns it from its coroutine). :class:`PluginLifecycle`
keeps it by plugin name and runs it when the plugin is disabled on the running
agent, or when the agent shuts down (last loaded first). The tasks a plugin
spawned from its ``on_load`` are cancelled after its teardown ran.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pluggy import HookImpl

from ._failures import ErrorContext
from ._routes import LOADING_PLUGIN
from .exceptions import PluginError

if TYPE_CHECKING:
    from ._runtime import AgentRuntime

__all__ = ["PluginLifecycle"]

logger = logging.getLogger("localagent")


class PluginLifecycle:
    """Runs ``on_load`` implementations and keeps what undoes them.

    Args:
        runtime: The agent whose plugins these are (what ``on_load`` receives).

    Attributes:
        teardowns: What each plugin's ``on_load`` returned to undo it, in load order.
    """

    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime
        self.teardowns: dict[str, Callable[[], Any]] = {}
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}

    def owns(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` as its plugin's, if it was spawned from an ``on_load``."""
        plugin = LOADING_PLUGIN.get()
        if plugin is not None:
            owned = self._tasks.setdefault(plugin, set())
            owned.add(task)
            task.add_done_callback(owned.discard)

    async def load(self, impls: list[HookImpl]) -> None:
        """Run ``impls`` concurrently, each in a task of its own; unregister those that fail.

        Raises:
            PluginError: If the runtime is strict and one failed.
        """
        outcomes = await asyncio.gather(*(self._load_one(impl) for impl in impls))
        for impl, error in zip(impls, outcomes, strict=True):
            if error is not None:
                self.failed(impl.plugin, error)

    def failed(self, plugin: object, error: BaseException) -> None:
        """Unregister ``plugin``, whose ``on_load`` raised ``error``; report and record it.

        Raises:
            PluginError: If the runtime is strict.
        """
        runtime = self._runtime
        name = runtime.pm.get_name(plugin) or repr(plugin)
        info = runtime.plugins.info(name)
        if info is not None:
            info.error = f"on_load failed: {type(error).__name__}: {error}"
            info.registered = False
            info.hooks = info.handles = ()
        runtime.report(error, ErrorContext("load", plugin=name))
        runtime.routes.remove_plugin(name)
        runtime.pm.unregister(plugin)
        if runtime.strict:
            raise PluginError(name, f"on_load failed: {error}") from error
        logger.error("plugin %r disabled: on_load failed: %s", name, error)

    def warn_unread(self, tables_read: set[str]) -> None:
        """Warn about settings in the tables of loaded plugins that read no settings.

        A plugin with settings refuses unknown keys itself (``plugin_settings``);
        one without (``ping``, ``kv``, ...) never looks, so a key there is a typo
        or a misplaced table that would otherwise go unnoticed.
        """
        runtime = self._runtime
        for name, table in runtime.settings.plugins.items():
            keys = [key for key in table if key != "enabled"]
            info = runtime.plugins.info(name)
            if keys and info is not None and info.registered and name not in tables_read:
                logger.warning(
                    "%s: %s: plugin %r has no settings; ignored",
                    runtime.settings.config_file,
                    ", ".join(f"plugins.{name}.{key}" for key in keys),
                    name,
                )

    async def _load_one(self, impl: HookImpl) -> BaseException | None:
        runtime = self._runtime
        name = runtime.pm.get_name(impl.plugin)
        LOADING_PLUGIN.set(name)  # this task's own context: its routes are the plugin's
        started = time.perf_counter()
        try:
            result = impl.function(*([runtime] if impl.argnames else []))
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return exc
        else:
            if callable(result) and name is not None:
                self.teardowns[name] = result
        finally:
            info = runtime.plugins.info(name) if name else None
            if info is not None:
                info.load_seconds = time.perf_counter() - started
        return None

    async def tear_down(self, name: str) -> None:
        """Run what plugin ``name``'s ``on_load`` returned to undo it, then cancel its tasks.

        A teardown that raises is reported to ``on_error`` (stage ``"unload"``)
        and logged; the plugin is gone all the same.
        """
        teardown = self.teardowns.pop(name, None)
        if teardown is not None:
            try:
                result = teardown()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._runtime.report(exc, ErrorContext("unload", plugin=name))
                logger.error("plugin %r: its teardown failed: %r", name, exc)
        tasks = self._tasks.pop(name, set())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def tear_down_all(self) -> None:
        """Undo every plugin, last loaded first (at shutdown)."""
        for name in reversed(list(self.teardowns)):
            await self.tear_down(name)
