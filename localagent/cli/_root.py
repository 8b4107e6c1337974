"""The root ``localagent`` group: its options, and its commands, each imported when used.

The built-in commands are named in :data:`BUILTIN_COMMANDS`; installed
distributions add more through the entry-point group ``localagent.commands``
(:mod:`._commands`). A command's module is imported only when that command
runs (or ``--help`` lists it), and the installed distributions are scanned
only for a name that is not built in, or for ``--help``: ``localagent
plugins list`` pays for no other command. A built-in name always means the
built-in command.
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
    from ._commands import CommandSource

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


def _installed_commands(ctx: click.Context) -> dict[str, list[CommandSource]]:
    """The commands installed distributions add, scanned once per invocation."""
    meta = ctx.find_root().meta
    if _SCAN not in meta:
        from ._commands import find_commands

        meta[_SCAN] = find_commands()
    found: dict[str, list[CommandSource]] = meta[_SCAN]
    return found


class _Root(click.Group):
    """The root group: commands are imported on first use, errors shown as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *_installed_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is not None:
            return _import_command(target)
        sources = _installed_commands(ctx).get(cmd_name)
        if sources is None:
            return None
        from ._commands import load_command

        return load_command(cmd_name, sources)

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
