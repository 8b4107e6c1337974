"""``localagent serve``: run the agent until interrupted."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ._shared import load_settings

if TYPE_CHECKING:
    from .._plugins import PluginInfo

__all__ = ["LOG_FORMAT", "serve"]

#: The format of every log record ``localagent serve`` writes.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@click.command()
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
        from .._cluster._signing import read_secret_file

        read_secret_file(settings.cluster_secret_path)
    from .._loop import run

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

    from .._loop import running_loop_name
    from .._server import Server

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
