"""``localagent plugins``: list, inspect, enable and disable plugins; clear the plugin cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .._bootstrap import config_dir, config_path
from ._shared import pretty

if TYPE_CHECKING:
    from .._bootstrap import Manifest, PluginCache
    from .._plugins import PluginSpec

__all__ = ["plugins"]


@click.group()
def plugins() -> None:
    """List, inspect, enable and disable plugins; clear the plugin cache."""


#: What ``plugins list`` says about the plugin cache, by what it did.
_CACHE_NOTES = {
    "used": "plugin cache: used (hooks and import times as last measured; nothing imported)",
    "saved": "plugin cache: not used (plugins discovered and imported now; cache written)",
    "unsaved": "plugin cache: not used (plugins discovered and imported now; cache not written)",
}


def _plugin_records() -> tuple[list[dict[str, Any]], str | None]:
    """Every plugin's record (the objects of ``plugins list --json``), and what the cache did.

    With a valid manifest that observed the same set of enabled plugins,
    nothing is imported: not ``importlib.metadata``, not attrs or pluggy, not
    a plugin. Otherwise the plugins are discovered (through the manifest when
    only the observation is stale), the enabled ones imported, and the
    manifest rewritten.

    Returns:
        The records, and ``"used"``, ``"saved"``, ``"unsaved"`` or ``None``
        (no cache plugin installed and enabled).
    """
    from .._bootstrap import Selection, config_path, disabled_plugins, open_cache

    selection = Selection.build(disabled_plugins(config_path()))
    cache = open_cache(selection.is_enabled)
    manifest = cache.load() if cache is not None else None
    if manifest is not None:
        records = _observed_records(manifest, selection)
        if records is not None:
            return records, "used"
    return _import_records(selection, cache, manifest)


def _observed_records(manifest: Manifest, selection: Any) -> list[dict[str, Any]] | None:
    """The manifest's records, if they were observed with the plugins enabled now."""
    observed = manifest["observed"]
    if observed is None:
        return None
    records = observed["records"]
    installed = {record["name"] for record in manifest["plugins"]}
    if {r["name"] for r in records if not r.get("builtin")} != installed:
        return None
    enabled = [r["name"] for r in records if selection.is_enabled(r["name"], r.get("builtin"))]
    if sorted(enabled) != sorted(observed["enabled"]):
        return None
    return [{**record, "cached": True} for record in records]


def _import_records(
    selection: Any, cache: PluginCache | None, manifest: Manifest | None
) -> tuple[list[dict[str, Any]], str | None]:
    from .._plugins import PluginSpec, discover, load_plugins

    if manifest is not None:
        specs = [PluginSpec.from_record(record) for record in manifest["plugins"]]
    else:
        specs = discover()
    loaded = load_plugins(disabled_in_config=selection.disabled_in_config, specs=specs)
    records = [info.to_json() for info in loaded.infos]
    if cache is None:
        return records, None
    enabled = [info.name for info in loaded.infos if info.enabled]
    saved = cache.save(
        [spec.to_record() for spec in specs], {"enabled": enabled, "records": records}
    )
    return records, "saved" if saved else "unsaved"


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per plugin.")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any plugin failed to load.")
def plugins_list(as_json: bool, show_all: bool, strict: bool) -> None:
    """List installed plugins: version, hooks, enabled, import time, errors.

    Enabled plugins are imported to find their hooks, unless the plugin cache
    (localagent-cache) recorded them since anything changed; disabled ones
    never are. on_load is not run here (`localagent serve` logs each
    plugin's load time).
    """
    records, cache = _plugin_records()
    agents = _running_agents(records)
    shown = [r for r in records if show_all or not r["builtin"]]
    _print_plugins(shown, as_json)
    if not as_json:
        for line in _agent_lines(agents, {r["name"] for r in shown}):
            click.echo(line)
    if cache is not None and not as_json:
        click.echo(_CACHE_NOTES[cache])
    errors = [record["name"] for record in records if record["error"] is not None]
    if strict and errors:
        names = ", ".join(repr(name) for name in errors)
        raise click.ClickException(f"plugin(s) failed to load: {names}")


def _running_agents(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The status of the agents running on this config dir; adds ``running`` to each record.

    ``running`` lists, per running agent, whether it has the plugin loaded,
    the version it loaded, whether that is stale (not the installed one:
    an upgrade needs a restart), and for a connection-scoped plugin how many
    of its open connections do not have it.
    """
    from .._running import read_statuses

    agents = read_statuses(config_path())
    by_name = {record["name"]: record for record in records}
    for record in records:
        record["running"] = []
    for agent in agents:
        for plugin in agent.get("plugins", []):
            found = by_name.get(plugin.get("name"))
            if found is None:
                continue
            record = found
            loaded = bool(plugin.get("loaded"))
            if loaded and plugin.get("version") != record["version"]:
                plugin["stale"] = True  # installed since it was imported
                plugin["installed_version"] = record["version"]
            record["running"].append(
                {
                    "pid": agent["pid"],
                    "url": agent.get("url"),
                    "loaded": loaded,
                    "version": plugin.get("version"),
                    "stale": bool(plugin.get("stale")),
                    "connection_scoped": bool(plugin.get("connection_scoped")),
                    "enabled_at": plugin.get("enabled_at"),
                    "open_connections_without": plugin.get("open_connections_without", 0),
                }
            )
    return agents


def _agent_lines(agents: list[dict[str, Any]], shown: set[str]) -> list[str]:
    """What the table does not say: per running agent, its plugins and their caveats."""
    lines = []
    for agent in agents:
        plugins = [p for p in agent.get("plugins", []) if p.get("name") in shown]
        loaded = [p["name"] for p in plugins if p.get("loaded")]
        lines.append(
            f"running agent {agent['pid']} at {agent.get('url')}: "
            f"{', '.join(loaded) or 'none of these'} loaded"
        )
        for plugin in plugins:
            name = plugin["name"]
            if plugin.get("loaded") and plugin.get("stale"):
                lines.append(
                    f"  {name!r} is stale: the agent runs {plugin.get('version')}, "
                    f"{plugin.get('installed_version')} is installed; restart the agent to use it"
                )
            if plugin.get("loaded") and plugin.get("connection_scoped") and plugin["enabled_at"]:
                lines.append(
                    f"  {name!r} (connection-scoped) was enabled at {plugin['enabled_at']}: it "
                    "applies to connections opened since; "
                    f"{plugin.get('open_connections_without', 0)} open connection(s) do not have it"
                )
    return lines


def _print_plugins(records: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(pretty(list(records)))
        return
    if not records:
        click.echo("No third-party plugins installed (--all shows the built-in ones).")
        return
    click.echo(_table(records))
    for record in records:
        if record["error"]:
            click.echo(f"error: plugin {record['name']!r}: {record['error']}", err=True)


def _status(record: dict[str, Any]) -> str:
    if record["error"]:
        return "error"
    return "enabled" if record["enabled"] else "disabled"


def _table(records: Sequence[dict[str, Any]]) -> str:
    rows = [("NAME", "VERSION", "STATUS", "IMPORT", "HOOKS", "DISTRIBUTION")]
    for record in records:
        import_ms = record["import_ms"]
        rows.append(
            (
                record["name"],
                record["version"] or ("built-in" if record["builtin"] else "-"),
                _status(record),
                f"{import_ms:.1f} ms" if import_ms else "-",
                ",".join(record["hooks"]) or "-",
                record["distribution"] or "localagent",
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _known_spec(name: str) -> PluginSpec:
    from .._bootstrap import Selection, config_path, disabled_plugins, open_cache
    from .._plugins import BUILTIN_PLUGINS, installed_plugins

    for spec in BUILTIN_PLUGINS:  # a built-in needs no look at the installed distributions
        if spec.name == name:
            return spec
    selection = Selection.build(disabled_plugins(config_path()))
    specs = [*BUILTIN_PLUGINS, *installed_plugins(open_cache(selection.is_enabled))]
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(sorted(spec.name for spec in specs))
    raise click.ClickException(f"no plugin named {name!r} is installed (known: {known})")


def _toggle(name: str, enabled: bool) -> None:
    from .._config import set_plugin_enabled

    spec = _known_spec(name)
    path = set_plugin_enabled(config_dir(), name, enabled)
    state = "enabled" if enabled else "disabled"
    click.echo(f"{state} plugin {name!r} (saved in {path})")
    _tell_running_agents("apply it", spec.name, spec.builtin)


def _overridden(agent: dict[str, Any], name: str, builtin: bool) -> str | None:
    """What decides plugin ``name`` in a running agent instead of config.toml, if anything."""
    if name in agent.get("disable", ()):
        return f"-p no:{name}"
    if name in agent.get("enable", ()):
        return f"-p {name}"
    if agent.get("load_only") is not None and not builtin:
        return "LOCALAGENT_LOAD_PLUGINS"
    return None


def _tell_running_agents(what: str, name: str | None = None, builtin: bool = False) -> None:
    """Say which running agents on this config dir will ``what``, and when."""
    from .._running import read_statuses

    for agent in read_statuses(config_path()):
        where = f"the agent running at {agent.get('url')} (pid {agent['pid']})"
        override = _overridden(agent, name, builtin) if name is not None else None
        if override is not None:
            click.echo(f"{where} keeps it as it is: its {override} decides {name!r} for this run")
            continue
        interval = agent.get("watch_interval") or 0
        when = f"within {interval:g} s" if interval else "at its next start (watching is off)"
        click.echo(f"{where} will {what} {when}")


@plugins.command("rescan")
def plugins_rescan() -> None:
    """Have running agents look for newly installed plugins now.

    Agents notice most installs by themselves (a sys.path directory changes);
    this asks them to look in any case. An upgraded plugin that an agent has
    imported needs a restart of that agent.
    """
    from .._running import request_rescan

    request_rescan(config_path())
    click.echo("asked the agents running on this config dir to look for installed plugins")
    _tell_running_agents("look")


@plugins.command("enable")
@click.argument("name")
def plugins_enable(name: str) -> None:
    """Enable plugin NAME (persisted in config.toml).

    Agents running on this config dir load it within server.watch_interval
    seconds and serve it on their open connections.
    """
    _toggle(name, True)


@plugins.command("disable")
@click.argument("name")
def plugins_disable(name: str) -> None:
    """Disable plugin NAME (persisted in config.toml); it will not be imported.

    Agents running on this config dir unload it within server.watch_interval
    seconds, on their open connections.
    """
    _toggle(name, False)


@plugins.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_info(name: str, as_json: bool) -> None:
    """Show everything known about plugin NAME.

    With --json, also its message types with their JSON Schemas ("messages",
    as `localagent plugins schemas` prints them), for a disabled plugin too.
    """
    records, _cache = _plugin_records()
    data = next((record for record in records if record["name"] == name), None)
    if data is None:
        known = ", ".join(sorted(record["name"] for record in records))
        raise click.ClickException(f"no plugin named {name!r} is installed (known: {known})")
    if as_json:
        click.echo(pretty({**data, "messages": _message_types(name)}))
        return
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key + ':':<14}{'-' if shown in (None, '') else shown}")


def _message_types(plugin: str | None = None) -> list[dict[str, Any]]:
    """The message types the enabled plugins answer, or those of ``plugin`` (enabled or
    not), with their JSON Schemas.

    Imports the plugins it describes (the plugin cache keeps no schemas): for
    ``plugin``, that one (even if disabled) and the built-ins, no other
    third-party plugin. Runs no ``on_load``.
    """
    from .._bootstrap import LOAD_PLUGINS_VARIABLE, config_path, disabled_plugins
    from .._plugins import load_plugins
    from .._schemas import describe_types

    disabled = disabled_plugins(config_path())
    if plugin is None:
        loaded = load_plugins(disabled_in_config=disabled)
    else:
        only = {LOAD_PLUGINS_VARIABLE: plugin}
        loaded = load_plugins(disabled_in_config=disabled, options=[plugin], environ=only)
    return [
        described.to_json()
        for described in describe_types(loaded.manager)
        if plugin is None or described.plugin == plugin
    ]


@plugins.command("schemas")
def plugins_schemas() -> None:
    """Print the message types of the enabled plugins with their JSON Schemas (JSON).

    One object per type: type, plugin, description (the handler's docstring)
    and schema (the JSON Schema of its data, null when the handler declares
    none). A running agent answers the same list to an agent.types message.
    """
    click.echo(pretty(_message_types()))


@plugins.group("cache")
def plugins_cache() -> None:
    """Manage the plugin cache (the localagent-cache plugin's manifest)."""


@plugins_cache.command("clear")
def plugins_cache_clear() -> None:
    """Remove the plugin manifests and the records of installed commands.

    The next start discovers and imports afresh.

    Works whether or not the cache plugin is enabled, as long as it is installed.
    """
    from .._bootstrap import open_cache

    cache = open_cache(lambda name: True)
    if cache is None:
        raise click.ClickException(
            "the plugin cache is not installed (pip install localagent-cache)"
        )
    removed = cache.clear()
    click.echo(
        f"removed {removed} cache file(s) (plugin manifests, command records) "
        f"from {os.path.dirname(cache.path)}"
    )
