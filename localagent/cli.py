"""The ``localagent`` command line (click).

Heavy imports (websockets, the runtime) happen inside the commands that need
them, so ``localagent --help`` and ``localagent plugins list`` start fast.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from ._bootstrap import config_dir
from .exceptions import LocalAgentError

if TYPE_CHECKING:  # the bench's modules are imported by the bench command only
    from ._bench import BenchReport
    from ._bootstrap import Manifest, PluginCache
    from ._config import Settings
    from ._plugins import PluginInfo, PluginSpec

__all__ = ["LOG_FORMAT", "main"]

#: The format of every log record ``localagent serve`` writes.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

EXIT_REPLY_ERROR = 1
EXIT_CONNECT_FAILED = 3


def load_settings(**kwargs: Any) -> Settings:
    """:func:`localagent.load_settings`, imported on first use.

    attrs, which the settings are made of, costs more at start-up than click:
    ``--help`` and a warm ``plugins list`` never pay for it.
    """
    from ._config import load_settings

    return load_settings(**kwargs)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn LocalAgent's own errors into one-line messages instead of tracebacks."""
    try:
        yield
    except LocalAgentError as exc:
        raise click.ClickException(str(exc)) from None


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        with _clean_errors():
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="localagent")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False),
    envvar="LOCALAGENT_CONFIG_DIR",
    help="Directory of config.toml and the token (default: the platform's user config dir).",
)
def main(config_dir: str | None) -> None:
    """LocalAgent: a local agent runtime that serves plugins over a WebSocket.

    Start the agent with `localagent serve`, talk to it with `localagent send`,
    and manage plugins with `localagent plugins`. Settings come from
    config.toml, then LOCALAGENT_* variables, then flags.
    """
    if config_dir:
        os.environ["LOCALAGENT_CONFIG_DIR"] = config_dir


# -- serve -----------------------------------------------------------------


@main.command()
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8765; 0 picks a free one).")
@click.option(
    "--allow-remote",
    is_flag=True,
    default=None,
    help="Allow binding a non-loopback address (exposes the agent to the network).",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    help="Allow this browser Origin (repeatable), e.g. http://localhost:3000.",
)
@click.option(
    "-p",
    "plugin_options",
    multiple=True,
    metavar="NAME|no:NAME",
    help="Enable (NAME) or disable (no:NAME) a plugin for this run only (repeatable).",
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    help="Directory fs is confined to and exec runs in (created if missing).",
)
@click.option(
    "--redis",
    metavar="URL",
    help="Keep kv state in Redis at URL (redis://host:port/db) instead of memory.",
)
@click.option(
    "--cluster",
    metavar="NAME",
    help="Join the cluster NAME of agents sharing the Redis of --redis (docs/cluster.md).",
)
@click.option(
    "--cluster-agent",
    metavar="NAME",
    help="This agent's name in the cluster (default: the host:port it listens on).",
)
@click.option(
    "--cluster-secret-file",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="The secret the cluster's agents share, mode 0600 (default: cluster-secret "
    "in the config dir; create one with `localagent cluster secret`).",
)
@click.option(
    "--set",
    "plugin_settings",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="Set a key of a plugin's [plugins.NAME] table for this run (repeatable); "
    'VALUE is TOML: 100, 0.002, true, "text".',
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    metavar="N",
    help="batching plugin: most messages per batch frame (default 50).",
)
@click.option(
    "--batch-interval",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="batching plugin: longest wait, in seconds, for a batch to fill under load "
    "(default 0.005; 0 never waits).",
)
@click.option(
    "--batch-queue",
    type=click.IntRange(min=1),
    metavar="N",
    help="batching plugin: messages queued before senders wait (default 20 x batch size).",
)
@click.option(
    "--monitor-port",
    type=click.IntRange(min=0, max=65535),
    metavar="PORT",
    help="monitor plugin: a port of its own for its HTTP endpoints "
    "(default: none, they answer on the agent's port; 0 picks a free one).",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    help="Event loop: uvloop if installed (auto, the default), or asyncio's own.",
)
@click.option("--strict", is_flag=True, help="Exit if any plugin fails to import or load.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Logging verbosity (the token is never logged).",
)
def serve(
    host: str | None,
    port: int | None,
    allow_remote: bool | None,
    origins: tuple[str, ...],
    plugin_options: tuple[str, ...],
    workspace: str | None,
    redis: str | None,
    cluster: str | None,
    cluster_agent: str | None,
    cluster_secret_file: str | None,
    plugin_settings: tuple[str, ...],
    batch_size: int | None,
    batch_interval: float | None,
    batch_queue: int | None,
    monitor_port: int | None,
    loop: str | None,
    strict: bool,
    log_level: str,
) -> None:
    """Run the agent until interrupted (Ctrl-C or SIGTERM)."""
    _setup_logging(log_level)
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "allow_remote": allow_remote,
        "workspace": workspace,
        "redis": redis,
        "cluster": cluster,
        "cluster_agent": cluster_agent,
        "cluster_secret_file": cluster_secret_file,
        "loop": loop,
    }
    if origins:
        overrides["origins"] = origins
    plugin_overrides = dict(_parse_plugin_setting(item) for item in plugin_settings)
    plugin_overrides.update(
        (key, value)
        for key, value in {
            "batching.max_batch": batch_size,
            "batching.interval": batch_interval,
            "batching.max_queue": batch_queue,
            "monitor.port": monitor_port,
        }.items()
        if value is not None
    )
    settings = load_settings(overrides={**overrides, **plugin_overrides})
    if settings.agent.cluster is not None:  # fail now, not in the cluster plugin's on_load
        from ._cluster._signing import read_secret_file

        read_secret_file(settings.cluster_secret_path)
    from ._loop import run

    wanted = {key.partition(".")[0] for key in plugin_overrides}
    with suppress(KeyboardInterrupt):
        run(_serve(settings, plugin_options, strict, wanted), settings.server.loop)


def _parse_plugin_setting(item: str) -> tuple[str, Any]:
    """``NAME.KEY=VALUE`` (VALUE in TOML syntax) -> ``("NAME.KEY", value)``."""
    import tomllib

    key, sep, raw = item.partition("=")
    name, dot, field = key.strip().partition(".")
    if not sep or not dot or not name or not field:
        raise click.BadParameter(f"{item!r}: expected NAME.KEY=VALUE", param_hint="--set")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: take it as a string
    return f"{name}.{field}", value


def _setup_logging(level: str) -> None:
    import logging  # serve's alone: ~5 ms that --help and plugins list do not need

    logging.basicConfig(
        level=level.upper(),
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    # websockets logs every handshake at INFO; keep its warnings only.
    logging.getLogger("localagent.websockets").setLevel(
        max(logging.WARNING, logging.getLogger().level)
    )


async def _serve(
    settings: Any, plugin_options: Sequence[str], strict: bool, configured: set[str]
) -> None:
    import asyncio

    from ._loop import running_loop_name
    from ._server import Server

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = Server.create(settings, options=plugin_options, strict=strict)
    missing = sorted(
        name
        for name in configured
        if (info := server.runtime.plugins.info(name)) is None or not info.registered
    )
    if missing:
        raise click.UsageError(
            f"flags set options of plugin(s) {', '.join(missing)}, which are not installed "
            "or are disabled (see `localagent plugins list --all`)"
        )
    await server.start()
    loaded = [_load_summary(i) for i in server.runtime.plugins.infos if i.registered]
    click.echo(
        f"LocalAgent {__version__} listening on {server.url}\n"
        f"  token file: {server.token_file.path}\n"
        f"  workspace: {settings.agent.workspace}\n"
        f"  store: {server.runtime.store.kind}, loop: {running_loop_name()}\n"
        f"  plugins: {', '.join(loaded) or '(none)'}",
        err=True,
    )
    cluster = settings.agent.cluster
    info = server.runtime.plugins.info("cluster")
    if cluster is not None and info is not None and info.registered:
        name = settings.agent.cluster_agent or server.url.removeprefix("ws://")
        click.echo(f"  cluster: {cluster} (agent {name})", err=True)
    try:
        await stop.wait()
    finally:
        click.echo("LocalAgent shutting down", err=True)
        await server.aclose()


def _load_summary(info: PluginInfo) -> str:
    """``name (import 1.2 ms, load 0.3 ms)`` for the startup banner."""
    parts = [f"import {info.import_seconds * 1000:.1f} ms"] if info.import_seconds else []
    if info.load_seconds is not None:
        parts.append(f"load {info.load_seconds * 1000:.1f} ms")
    return f"{info.name} ({', '.join(parts)})" if parts else info.name


# -- send ------------------------------------------------------------------


@main.command()
@click.argument("type")
@click.argument("data", required=False)
@click.option(
    "--url",
    envvar="LOCALAGENT_URL",
    help="Agent URL (default: $LOCALAGENT_URL or the configured one).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    default=30.0,
    show_default=True,
    help="Seconds to wait for the reply.",
)
@click.option(
    "--to",
    metavar="ADDRESS",
    help="Address the message to another agent or client of the cluster (docs/cluster.md).",
)
def send(type: str, data: str | None, url: str | None, timeout: float, to: str | None) -> None:
    """Send one message of TYPE with optional JSON DATA and print the reply.

    Messages the agent sends for this request before the reply (streamed
    exec output) are printed to stderr as JSON lines. Exit status: 0 with a
    result, 1 for an error reply, 3 when the agent cannot be reached.
    Example: localagent send echo '{"hello": "world"}'
    """
    from . import _codec

    payload = None
    if data is not None:
        try:
            payload = _codec.loads(data)
        except _codec.DecodeError:
            raise click.BadParameter(
                "must be JSON, e.g. '\"text\"' or '{\"a\": 1}'", param_hint="DATA"
            ) from None
    import asyncio

    result = asyncio.run(_send(url, type, payload, timeout, to))
    click.echo(_pretty(result))


async def _send(
    url: str | None, message_type: str, data: Any, timeout: float, to: str | None
) -> Any:
    from ._client import Client
    from .exceptions import ConnectFailed, ConnectionLost, ReplyError

    try:
        async with Client(url) as client:
            return await client.request(
                message_type, data, timeout=timeout, on_event=_print_event, to=to
            )
    except ReplyError as exc:
        click.echo(f"Error: {exc.code}: {exc.message}", err=True)
        sys.exit(EXIT_REPLY_ERROR)
    except (ConnectFailed, ConnectionLost) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONNECT_FAILED)
    except TimeoutError:
        click.echo(f"Error: no reply within {timeout:g} s", err=True)
        sys.exit(EXIT_CONNECT_FAILED)


def _print_event(message: Any) -> None:
    """Messages the agent sends for this request before its reply (e.g. streamed output)."""
    from . import _codec

    click.echo(_codec.dumps(message).decode(), err=True)


def _pretty(value: Any) -> str:
    from . import _codec

    return _codec.pretty(value)


# -- plugins ---------------------------------------------------------------


@main.group()
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
    from ._bootstrap import Selection, config_path, disabled_plugins, open_cache

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
    from ._plugins import PluginSpec, discover, load_plugins

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
    _print_plugins([r for r in records if show_all or not r["builtin"]], as_json)
    if cache is not None and not as_json:
        click.echo(_CACHE_NOTES[cache])
    errors = [record["name"] for record in records if record["error"] is not None]
    if strict and errors:
        names = ", ".join(repr(name) for name in errors)
        raise click.ClickException(f"plugin(s) failed to load: {names}")


def _print_plugins(records: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(_pretty(list(records)))
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
    from ._bootstrap import Selection, config_path, disabled_plugins, open_cache
    from ._plugins import BUILTIN_PLUGINS, installed_plugins

    selection = Selection.build(disabled_plugins(config_path()))
    specs = [*BUILTIN_PLUGINS, *installed_plugins(open_cache(selection.is_enabled))]
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(sorted(spec.name for spec in specs))
    raise click.ClickException(f"no plugin named {name!r} is installed (known: {known})")


def _toggle(name: str, enabled: bool) -> None:
    from ._config import set_plugin_enabled

    _known_spec(name)
    path = set_plugin_enabled(config_dir(), name, enabled)
    state = "enabled" if enabled else "disabled"
    click.echo(f"{state} plugin {name!r} (saved in {path})")


@plugins.command("enable")
@click.argument("name")
def plugins_enable(name: str) -> None:
    """Enable plugin NAME (persisted in config.toml)."""
    _toggle(name, True)


@plugins.command("disable")
@click.argument("name")
def plugins_disable(name: str) -> None:
    """Disable plugin NAME (persisted in config.toml); it will not be imported."""
    _toggle(name, False)


@plugins.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_info(name: str, as_json: bool) -> None:
    """Show everything known about plugin NAME."""
    records, _cache = _plugin_records()
    data = next((record for record in records if record["name"] == name), None)
    if data is None:
        known = ", ".join(sorted(record["name"] for record in records))
        raise click.ClickException(f"no plugin named {name!r} is installed (known: {known})")
    if as_json:
        click.echo(_pretty(data))
        return
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key + ':':<14}{'-' if shown in (None, '') else shown}")


@plugins.group("cache")
def plugins_cache() -> None:
    """Manage the plugin cache (the localagent-cache plugin's manifest)."""


@plugins_cache.command("clear")
def plugins_cache_clear() -> None:
    """Remove the plugin manifests; the next start discovers and imports afresh.

    Works whether or not the cache plugin is enabled, as long as it is installed.
    """
    from ._bootstrap import open_cache

    cache = open_cache(lambda name: True)
    if cache is None:
        raise click.ClickException(
            "the plugin cache is not installed (pip install localagent-cache)"
        )
    removed = cache.clear()
    click.echo(f"removed {removed} manifest file(s) from {os.path.dirname(cache.path)}")


# -- cluster ---------------------------------------------------------------


@main.group()
def cluster() -> None:
    """Inspect the cluster of agents sharing Redis (serve --cluster NAME)."""


@cluster.command("secret")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def cluster_secret(path: str | None) -> None:
    """Create the secret the agents of a cluster share, in a new file (mode 0600).

    PATH defaults to where serve looks for it: [agent] cluster_secret_file, or
    cluster-secret in the config dir. Give every agent of the cluster a copy
    (--cluster-secret-file PATH). The secret never goes through Redis; a file
    that exists is never replaced.
    """
    from pathlib import Path

    from ._cluster._signing import create_secret_file

    target = Path(path).expanduser().absolute() if path else load_settings().cluster_secret_path
    create_secret_file(target)
    click.echo(f"wrote a new cluster secret to {target} (mode 0600)")


@cluster.command("status")
@click.option("--redis", metavar="URL", help="The cluster's Redis (default: the configured one).")
@click.option(
    "--cluster", "name", metavar="NAME", help="The cluster (default: the configured one)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per agent.")
def cluster_status(redis: str | None, name: str | None, as_json: bool) -> None:
    """List the cluster's agents: state, URL, pid, last heartbeat, inbox backlog, peers.

    An agent is "up" while its heartbeat is recent, "down" when it stopped
    without leaving (its queued messages wait for it to come back). INBOX is
    the length of its stream, PENDING the entries it read and has not
    answered yet, LAG those it has not read yet.
    """
    settings = load_settings(overrides={"redis": redis})
    url = settings.agent.redis
    if name is None:
        name = settings.agent.cluster
    if name is None:
        raise click.UsageError("no cluster is configured: pass --cluster NAME")
    if url is None:
        raise click.UsageError("no Redis is configured: pass --redis URL")
    from ._cluster import check_cluster_name, safe_url
    from ._cluster._status import read_status, render_table

    try:
        check_cluster_name(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--cluster'") from None
    try:
        import redis as redis_py
    except ImportError:
        raise click.ClickException(
            "redis-py is not installed; install the extra: pip install 'localagent[redis]'"
        ) from None
    try:
        agents = read_status(url, name)
    except redis_py.exceptions.RedisError as exc:
        raise click.ClickException(
            f"cannot read the cluster from Redis at {safe_url(url)}: {exc}"
        ) from None
    if as_json:
        click.echo(_pretty({"cluster": name, "agents": [agent.to_json() for agent in agents]}))
        return
    if not agents:
        click.echo(f"No agents are registered in cluster {name!r}.")
        return
    click.echo(render_table(agents))


# -- token -----------------------------------------------------------------


@main.command()
@click.option(
    "--rotate",
    is_flag=True,
    help="Replace the token; running agents use the new one for new connections.",
)
@click.option(
    "--path", "show_path", is_flag=True, help="Print the token file's path instead of the token."
)
def token(rotate: bool, show_path: bool) -> None:
    """Print the agent's token (created on first use, stored with mode 0600)."""
    from ._security import TokenFile

    if rotate and show_path:
        raise click.UsageError("--rotate and --path cannot be used together")
    token_file = TokenFile(config_dir())
    if show_path:
        token_file.get()
        click.echo(str(token_file.path))
        return
    click.echo(token_file.rotate() if rotate else token_file.get())


# -- bench -----------------------------------------------------------------


class _BenchCommand(click.Command):
    """``bench``, whose help lists the areas (imported only when the help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from ._bench.areas import AREAS

        with formatter.section("Areas, in the order they run"):
            formatter.write_text(", ".join(name for name, _module in AREAS))
        super().format_epilog(ctx, formatter)


@main.command(
    cls=_BenchCommand, short_help="Measure the agent against bare baselines, area by area."
)
@click.argument("area", nargs=-1)
@click.option("--quick", is_flag=True, help="Smaller workloads and 3 repetitions.")
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Write every figure, sample and the environment as JSON to FILE ('-': stdout).",
)
@click.option("--markdown", is_flag=True, help="Print a Markdown table instead of the table.")
@click.option(
    "-r",
    "--repetitions",
    type=click.IntRange(min=1),
    metavar="N",
    help="Samples per figure (default 5, or 3 with --quick).",
)
@click.option(
    "--redis",
    metavar="URL",
    help="Measure the redis area against the Redis at URL (default: a private redis-server).",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="auto",
    show_default=True,
    help="Event loop of the agents and bare servers it starts (serve --loop).",
)
def bench(
    area: tuple[str, ...],
    quick: bool,
    json_file: str | None,
    markdown: bool,
    repetitions: int | None,
    redis: str | None,
    loop: str,
) -> None:
    """Measure the agent against bare baselines, area by area, in one run.

    Runs real agents (subprocesses on free loopback ports, each with its own
    token) and the bare libraries beside them, and prints each figure's
    median with min-max, the same-run ratio and its grade. Without AREA, every
    area runs. An area whose component is missing is skipped with the reason.
    Exit status: 0 (also with skipped areas), 1 if an area failed, 2 for a
    usage error.
    """
    from ._bench.areas import load_areas

    try:
        load_areas(list(area))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="AREA") from None
    if json_file == "-" and markdown:
        raise click.UsageError("--json - and --markdown both write to stdout; choose one")
    if json_file not in (None, "-"):
        _check_writable(json_file)
    from ._loop import loop_factory
    from .exceptions import ConfigError

    try:
        loop_factory(loop)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--loop'") from None
    report = _run_bench(area, quick, repetitions, redis, loop)
    _print_bench(report, json_file, markdown)
    failed = [result.area for result in report.results if result.error is not None]
    if failed:
        raise click.ClickException(f"area(s) failed: {', '.join(failed)}")


def _check_writable(path: str) -> None:
    """Refuse an unwritable ``--json`` path before the run, not after it."""
    target = os.path.abspath(path)
    exists = os.path.exists(target)
    directory = os.path.dirname(target)
    if (exists and not os.access(target, os.W_OK)) or (
        not exists and not (os.path.isdir(directory) and os.access(directory, os.W_OK))
    ):
        raise click.BadParameter(f"cannot write {path!r}", param_hint="'--json'")


def _run_bench(
    areas: Sequence[str], quick: bool, repetitions: int | None, redis: str | None, loop: str
) -> BenchReport:
    """Run the areas, with a live status on stderr when both outputs are terminals."""
    from ._bench import run_bench

    def run(progress: Callable[[str], None]) -> BenchReport:
        return run_bench(
            areas,
            quick=quick,
            repetitions=repetitions,
            redis_url=redis,
            progress=progress,
            loop=loop,
        )

    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        return run(lambda text: None)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("localagent bench: starting", total=None)
        return run(lambda text: bar.update(task, description=f"localagent bench: {text}"))


def _print_bench(report: BenchReport, json_file: str | None, markdown: bool) -> None:
    """The table or the Markdown on stdout, and the JSON where ``--json`` says."""
    from ._bench._render import print_table, render_json, render_markdown

    if markdown:
        click.echo(render_markdown(report), nl=False)
    elif json_file != "-":
        print_table(report, sys.stdout)
    if json_file == "-":
        click.echo(render_json(report), nl=False)
    elif json_file is not None:
        try:
            with open(json_file, "w", encoding="utf-8") as file:
                file.write(render_json(report))
        except OSError as exc:
            raise click.ClickException(f"cannot write {json_file}: {exc.strerror}") from None
