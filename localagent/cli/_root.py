"""The root ``localagent`` group: its options, and its commands, each imported when used.

A command's module is imported only when that command runs (or ``--help``
lists it), so ``localagent plugins list`` pays for no other command.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .. import __version__
from ..exceptions import LocalAgentError

__all__ = ["BUILTIN_COMMANDS", "main"]

#: The built-in commands: name -> ``module:attribute`` of its click command.
BUILTIN_COMMANDS: dict[str, str] = {
    "serve": "localagent.cli._serve:serve",
    "send": "localagent.cli._send:send",
    "plugins": "localagent.cli._plugins:plugins",
    "cluster": "localagent.cli._cluster:cluster",
    "token": "localagent.cli._token:token",
    "bench": "localagent.cli._bench:bench",
}


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
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command), target
    return command


class _Root(click.Group):
    """The root group: commands are imported on first use, errors shown as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(BUILTIN_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        return None if target is None else _import_command(target)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        # click suggests close names from self.commands, which stays empty here.
        if (
            not ctx.resilient_parsing
            and not name.startswith("-")
            and self.get_command(ctx, name) is None
        ):
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
