"""Plugin discovery and loading: the one explicit :func:`load_plugins` function.

Built-in plugins and third-party plugins (entry-point group ``localagent``)
are registered the same way. Which ones are enabled is decided *before* any
import (:mod:`localagent._bootstrap`), so a disabled plugin's module is never
imported. Discovery asks the cache plugin's manifest first
(:func:`installed_plugins`), and scans the installed distributions only when
there is no valid manifest.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import pluggy
from localagent_hookspecs import PROJECT_NAME, handled_types, hookspecs

from ._bootstrap import (
    LOAD_PLUGINS_VARIABLE,
    PluginCache,
    Selection,
    SpecRecord,
    open_cache,
    parse_plugin_options,
)
from .exceptions import PluginError

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_VARIABLE",
    "LoadedPlugins",
    "PluginInfo",
    "PluginManager",
    "PluginSpec",
    "discover",
    "installed_plugins",
    "load_plugins",
    "parse_plugin_options",
    "register_object",
    "register_spec",
]

ENTRY_POINT_GROUP = "localagent"


class PluginSpec(msgspec.Struct, frozen=True):
    """A plugin known before import.

    Attributes:
        name: The plugin's name (the entry point's name).
        value: What to import: ``"module"`` or ``"module:attribute"``.
        distribution: The distribution that provides it (``None`` for built-ins).
        version: That distribution's version.
        builtin: Whether it ships inside ``localagent``.
    """

    name: str
    value: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False

    def to_record(self) -> SpecRecord:
        """The manifest's form of a discovered plugin."""
        return {
            "name": self.name,
            "value": self.value,
            "distribution": self.distribution,
            "version": self.version,
        }

    @classmethod
    def from_record(cls, record: SpecRecord) -> PluginSpec:
        return cls(record["name"], record["value"], record["distribution"], record["version"])


#: The built-in plugins, registered first, in this order.
BUILTIN_PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec("ping", "localagent.builtin.ping", builtin=True),
    PluginSpec("echo", "localagent.builtin.echo", builtin=True),
    PluginSpec("kv", "localagent.builtin.kv:Plugin", builtin=True),
    PluginSpec("fs", "localagent.builtin.fs:Plugin", builtin=True),
    PluginSpec("exec", "localagent.builtin.exec:Plugin", builtin=True),
    PluginSpec("cluster", "localagent.builtin.cluster:Plugin", builtin=True),
    PluginSpec("agent", "localagent.builtin.agent:Plugin", builtin=True),
)


class PluginInfo(msgspec.Struct, kw_only=True):
    """What is known about one plugin after loading.

    Attributes:
        spec: Where it comes from.
        enabled: Whether the configuration enables it.
        registered: Whether it is registered with the plugin manager now.
        hooks: The hooks it implements.
        handles: Message types its ``on_message`` implementations declare.
        import_seconds: Time to import and register it.
        load_seconds: Time its ``on_load`` took (``None`` if not run).
        error: Why it failed to import, register or load.
    """

    spec: PluginSpec
    enabled: bool
    registered: bool = False
    hooks: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    import_seconds: float | None = None
    load_seconds: float | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``localagent plugins list --json``."""
        return {
            "name": self.spec.name,
            "distribution": self.spec.distribution,
            "version": self.spec.version,
            "module": self.spec.value,
            "builtin": self.spec.builtin,
            "enabled": self.enabled,
            "registered": self.registered,
            "hooks": list(self.hooks),
            "handles": list(self.handles),
            "import_ms": _ms(self.import_seconds),
            "load_ms": _ms(self.load_seconds),
            "error": self.error,
            "cached": False,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for project ``localagent``, with the four hook specs added.

    ``generation`` changes whenever a plugin is registered or unregistered, so
    the runtime knows when to rebuild its message dispatch table.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.generation = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        self.generation += 1
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self.generation += 1
        return removed


def discover() -> list[PluginSpec]:
    """Return the third-party plugins installed under the ``localagent`` entry-point group.

    Sorted by name, so registration (and so pluggy's call order) does not
    depend on the order of directory listings.
    """
    from importlib.metadata import entry_points  # costs ~100 ms: only when discovering

    specs = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        specs.append(
            PluginSpec(
                name=entry_point.name,
                value=entry_point.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
        )
    return sorted(specs, key=lambda spec: spec.name)


def installed_plugins(cache: PluginCache | None) -> list[PluginSpec]:
    """The installed third-party plugins: the cache's manifest, or :func:`discover`.

    Args:
        cache: The cache plugin's manifest cache (:func:`localagent._bootstrap.open_cache`),
            or ``None`` to always discover. A stale, missing or corrupt manifest
            is replaced with what :func:`discover` finds.
    """
    manifest = cache.load() if cache is not None else None
    if manifest is not None:
        return [PluginSpec.from_record(record) for record in manifest["plugins"]]
    specs = discover()
    if cache is not None:
        cache.save([spec.to_record() for spec in specs])
    return specs


def _import(value: str) -> object:
    """Import a plugin: a module, an object in one, or a class.

    A class is instantiated (without arguments) once per load, so every agent
    in a process gets a plugin object, and state, of its own.
    """
    module_name, _, attribute = value.partition(":")
    obj: object = importlib.import_module(module_name.strip())
    for part in attribute.strip().split(".") if attribute.strip() else ():
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


#: Hooks the runtime calls one implementation at a time (to isolate failures),
#: so pluggy wrappers around them would silently never run.
_NO_WRAPPERS = ("on_load", "on_connect", "on_error")


def _validate(pm: PluginManager, plugin: object, name: str) -> None:
    """Reject what pluggy accepts but the runtime would silently ignore."""
    for caller in pm.get_hookcallers(plugin) or ():
        if not caller.has_spec():
            raise PluginError(name, f"unknown hook {caller.name!r}")
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if impl.hookwrapper and caller.name == "on_message":
                raise PluginError(
                    name, "on_message does not support hookwrapper=True; use wrapper=True"
                )
            if (impl.hookwrapper or impl.wrapper) and caller.name in _NO_WRAPPERS:
                raise PluginError(name, f"{caller.name} implementations cannot be wrappers")
            if caller.name == "on_error" and inspect.iscoroutinefunction(impl.function):
                raise PluginError(name, "on_error must be a plain function, not async")


def _describe(pm: PluginManager, plugin: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hooks = sorted({caller.name for caller in pm.get_hookcallers(plugin) or ()})
    types: set[str] = set()
    for impl in pm.hook.on_message.get_hookimpls():
        if impl.plugin is plugin:
            types |= handled_types(impl.function) or set()
    return tuple(hooks), tuple(sorted(types))


class LoadedPlugins(msgspec.Struct):
    """The result of :func:`load_plugins`.

    Attributes:
        manager: The plugin manager with every successfully loaded plugin.
        infos: One entry per known plugin (enabled or not), built-ins first.
        selection: The rules that decided which were enabled (``None``: not known).
        extra: The plugin objects registered directly by name.
    """

    manager: PluginManager
    infos: list[PluginInfo]
    selection: Selection | None = None
    extra: Mapping[str, object] = msgspec.field(default_factory=dict)

    def info(self, name: str) -> PluginInfo | None:
        return next((info for info in self.infos if info.name == name), None)

    @property
    def errors(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.error is not None]


def load_plugins(
    *,
    disabled_in_config: Iterable[str] = (),
    options: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    specs: Sequence[PluginSpec] | None = None,
    extra: Mapping[str, object] | None = None,
    strict: bool = False,
) -> LoadedPlugins:
    """Decide which plugins are enabled, import and register those, and validate them.

    This is the one place plugins are loaded; nothing is imported as a side
    effect of importing ``localagent``. ``on_load`` is not run here: the
    runtime runs it, concurrently, when it starts.

    Args:
        disabled_in_config: Names with ``enabled = false`` in the config file.
        options: ``-p NAME`` / ``-p no:NAME`` values, which win over everything.
        environ: Read for ``LOCALAGENT_LOAD_PLUGINS`` (default ``os.environ``): a
            comma list of the only third-party plugins to load; empty loads none.
        specs: Third-party plugins to consider (default: :func:`installed_plugins`,
            through the plugin cache when it is installed and enabled).
        extra: Plugin objects to register directly by name (tests, embedding).
        strict: Raise :class:`PluginError` on the first failure instead of
            recording it and going on.

    Returns:
        The manager and an info record per plugin.
    """
    selection = Selection.build(disabled_in_config, options, environ)
    if specs is None:
        specs = installed_plugins(open_cache(selection.is_enabled)) if selection.discovers else []
    pm = PluginManager()
    infos: list[PluginInfo] = []
    seen: set[str] = set()
    for spec in (*BUILTIN_PLUGINS, *specs):
        enabled = selection.is_enabled(spec.name, spec.builtin)
        info = PluginInfo(spec=spec, enabled=enabled)
        infos.append(info)
        if spec.name in seen:
            info.error = f"another plugin is already named {spec.name!r}"
            if strict and enabled:
                raise PluginError(spec.name, info.error)
        seen.add(spec.name)
        if not enabled or info.error:
            continue
        error = register_spec(pm, info)
        if error is not None and strict:
            raise PluginError(spec.name, error)
    for name, plugin in (extra or {}).items():
        info = PluginInfo(spec=PluginSpec(name, repr(plugin)), enabled=True)
        infos.append(info)
        info.error = _register(pm, plugin, info)
        if info.error and strict:
            raise PluginError(name, info.error)
    return LoadedPlugins(manager=pm, infos=infos, selection=selection, extra=dict(extra or {}))


def register_spec(pm: PluginManager, info: PluginInfo) -> str | None:
    """Import the plugin of ``info.spec`` and register it; record time and error in ``info``.

    Returns:
        The error (``info.error``), or ``None`` when it is registered.
    """
    started = time.perf_counter()
    try:
        plugin = _import(info.spec.value)
    except Exception as exc:
        info.error = f"import failed: {type(exc).__name__}: {exc}"
    else:
        info.error = _register(pm, plugin, info)
    info.import_seconds = time.perf_counter() - started
    return info.error


def register_object(pm: PluginManager, plugin: object, info: PluginInfo) -> str | None:
    """Register a plugin object directly (``extra``); return and record any error."""
    info.error = _register(pm, plugin, info)
    return info.error


def _register(pm: PluginManager, plugin: object, info: PluginInfo) -> str | None:
    try:
        pm.register(plugin, name=info.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        # Nothing was registered (ValueError: this object or name is already
        # registered, e.g. two entry points naming one module): leave the
        # earlier registration alone.
        return str(exc)
    try:
        _validate(pm, plugin, info.name)
    except PluginError as exc:
        pm.unregister(plugin)
        return str(exc).removeprefix(f"plugin {info.name!r}: ")
    info.registered = True
    info.hooks, info.handles = _describe(pm, plugin)
    return None
