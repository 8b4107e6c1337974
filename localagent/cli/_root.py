"""The root ``localagent`` group: its options, and its commands, each imported when used.

The built-in commands are named in :data:`BUILTIN_COMMANDS`; installed
distributions add more through the entry-point group ``localagent.commands``
(:mod:`._commands`). A command's module is imported only when that command
runs (or ``--help`` lists it), and the installed distributions are scanned
only for a name that is not built in, or for ``--help``: ``localagent
plugins list`` pays for no other command. With the cache plugin enabled, the
scan and the installed commands' help lines are recorded (:mod:`._listing`),
and a later ``--help`` or installed command reads the record instead of
scanning. A built-in name always means the built-in command.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import click

from .. import __version__
from ..exceptions import LocalAgentError

if TYPE_CHECKING:
    from ._listing import CommandRecord

__all__ = ["BUILTIN_COMMANDS", "main"]

#: The built-in commands: name -> ``module:attribute`` of its click command.
BUILTIN_COMMANDS: dict[str, str] = {
    "serve": "localagent.cli._serve:serve",
    "send": "localagent.cli._send:send",
    "plugins": "localagent.cli._plugins:plugins",
    "cluster": "localagent.cli._cluster:cluster",
    "token": "localagent.cli._token:token",
}

#: Where the root context's ``meta`` keeps the scan of installed distributions.
_SCAN = "localagent.commands"
#: Set in ``meta`` while ``--help`` lists the commands (recorded help lines will do).
_LISTING = "localagent.commands.listing"
#: The installed commands loaded in this invocation, by name (what a record is made of).
_LOADED = "localagent.commands.loaded"


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn LocalAgent's own errors into one-line messages instead of tracebacks."""
    try:
        yield
    except LocalAgentError as exc:
        raise click.ClickException(str(exc)) from None


def _import_command(target: str) -> click.Command:
    """The click command at ``module:attribute``."""
    module, _, attribute = target.partition(":")
    return cast(click.Command, getattr(importlib.import_module(module), attribute))


class _Installed:
    """The commands installed distributions add, as one invocation knows them.

    From the record (:mod:`._listing`) when the cache plugin is enabled and the
    record is current, else from a scan of the installed distributions.

    Attributes:
        sources: Each command name's sources (more than one is a conflict).
        recorded: The recorded commands, or ``None`` when they were scanned now.
        directory: Where the record is kept (the cache plugin's directory), or ``None``.
        key: The installed distributions' checksum (:func:`._listing.commands_key`).
    """

    def __init__(self) -> None:
        from ._commands import CommandSource

        self.directory = _cache_directory()
        self.recorded: dict[str, list[CommandRecord]] | None = None
        self.key = ""
        if self.directory is not None:
            from ._listing import commands_key, load_commands

            self.key = commands_key()[0]
            self.recorded = load_commands(self.directory, self.key)
        if self.recorded is not None:
            self.sources = {
                name: [CommandSource(r.value, r.distribution) for r in records]
                for name, records in self.recorded.items()
            }
        else:
            from ._commands import find_commands

            self.sources = find_commands()

    def stand_in(self, name: str) -> click.Command | None:
        """A command carrying only the recorded help of ``name``, for the listing."""
        records = self.recorded and self.recorded.get(name)
        if not records or len(records) > 1:
            return None
        return click.Command(name, **records[0].help)

    def record(self, commands: dict[str, click.Command]) -> None:
        """Record the commands just scanned and loaded (all of them, every one loadable)."""
        from ._commands import UnloadableCommand

        if self.directory is None or self.recorded is not None:
            return
        if set(commands) != set(self.sources):
            return
        if any(isinstance(command, UnloadableCommand) for command in commands.values()):
            return  # a broken command is looked at again next time
        import sys

        from ._listing import CommandRecord, save_commands

        records, files = {}, []
        for name, ((value, distribution),) in self.sources.items():
            command = commands[name]
            help = {
                "help": command.help,
                "short_help": command.short_help,
                "hidden": command.hidden,
                "deprecated": command.deprecated,
            }
            records[name] = [CommandRecord(value, distribution, help)]
            module = sys.modules.get(value.partition(":")[0].strip())
            source = getattr(module, "__file__", None)
            if source:
                files.append(source)
        save_commands(self.directory, self.key, records, files)


def _cache_directory() -> str | None:
    """The cache plugin's directory, if the plugin is installed and enabled."""
    from .._bootstrap import Selection, config_path, disabled_plugins, open_cache

    try:
        cache = open_cache(Selection.build(disabled_plugins(config_path())).is_enabled)
    except Exception:  # an invalid config.toml: the command that runs reports it
        return None
    return None if cache is None else os.path.dirname(cache.path)


def _installed_commands(ctx: click.Context) -> _Installed:
    """The commands installed distributions add, found once per invocation."""
    meta = ctx.find_root().meta
    if _SCAN not in meta:
        meta[_SCAN] = _Installed()
    installed: _Installed = meta[_SCAN]
    return installed


class _Root(click.Group):
    """The root group: commands are imported on first use, errors shown as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *_installed_commands(ctx).sources})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is not None:
            return _import_command(target)
        installed = _installed_commands(ctx)
        sources = installed.sources.get(cmd_name)
        if sources is None:
            return None
        if ctx.meta.get(_LISTING):
            stand_in = installed.stand_in(cmd_name)
            if stand_in is not None:
                return stand_in
        from ._commands import load_command

        command = load_command(cmd_name, sources)
        ctx.meta.setdefault(_LOADED, {})[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The installed commands' help lines come from the record when it is current;
        # else each command is imported, and what was found is recorded.
        ctx.meta[_LISTING] = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            ctx.meta[_LISTING] = False
        _installed_commands(ctx).record(ctx.meta.get(_LOADED, {}))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        command = self.get_command(ctx, name)
        if command is not None:
            return name, command, args[1:]
        # click suggests close names from self.commands, which stays empty here.
        if not ctx.resilient_parsing and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx))
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _clean_errors():
            return super().invoke(ctx)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
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
