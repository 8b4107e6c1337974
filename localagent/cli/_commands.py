"""Commands that installed distributions add, through the entry-point group ``localagent.commands``.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."localagent.commands"]
    bench = "localagent_bench._cli:bench"

and ``localagent bench`` runs that click command (or group). The entry
point's name is the command's name. This module is imported only when a
command name is not built in, or when ``--help`` lists the commands: the
built-in commands never pay for the scan of installed distributions. With the
cache plugin enabled, :mod:`._listing` records what the scan found, and later
starts neither scan nor import what they do not run.

A command that cannot be loaded (its module fails to import, the object is
not a click command, two distributions add the same name) stands in as an
:class:`UnloadableCommand`: running it prints why, naming the distribution,
and every other command keeps working.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

import click

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["COMMANDS_GROUP", "CommandSource", "UnloadableCommand", "find_commands", "load_command"]

#: The entry-point group through which distributions add ``localagent`` subcommands.
COMMANDS_GROUP = "localagent.commands"


class CommandSource(NamedTuple):
    """One entry point of :data:`COMMANDS_GROUP` (found now, or recorded by :mod:`._listing`).

    Attributes:
        value: The entry point's ``module:attribute``.
        distribution: The distribution that declares it, as ``name version``.
    """

    value: str
    distribution: str


def _distribution(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        return "an unknown distribution"
    return f"{dist.name} {dist.version}"


def find_commands() -> dict[str, list[CommandSource]]:
    """The installed distributions' commands, by name (more than one source is a conflict)."""
    from importlib.metadata import entry_points  # the scan; not needed to load a command

    found: dict[str, list[CommandSource]] = {}
    for entry_point in entry_points(group=COMMANDS_GROUP):
        source = CommandSource(entry_point.value, _distribution(entry_point))
        found.setdefault(entry_point.name, []).append(source)
    return found


class UnloadableCommand(click.Command):
    """Stands in for a command that cannot be loaded: it exits with status 1 and the reason.

    It takes any arguments (``--help`` included) without parsing them, so
    the reason is what the user sees, whatever they typed.
    """

    def __init__(self, name: str, reason: str, distribution: str) -> None:
        super().__init__(
            name,
            help=reason,
            short_help=f"(cannot be loaded; from {distribution})",
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )
        self.reason = reason

    def invoke(self, ctx: click.Context) -> Any:
        raise click.ClickException(self.reason)


def _load(value: str) -> Any:
    """The object at ``module:attribute.path``, as ``EntryPoint.load`` finds it."""
    module, _, attributes = value.partition(":")
    found: Any = importlib.import_module(module.strip())
    for attribute in filter(None, attributes.strip().split(".")):
        found = getattr(found, attribute)
    return found


def load_command(name: str, sources: list[CommandSource]) -> click.Command:
    """Import the command ``name`` from its one source, or an :class:`UnloadableCommand`."""
    if len(sources) > 1:
        names = " and ".join(source.distribution for source in sources)
        return UnloadableCommand(
            name,
            f"the command {name!r} is added by {names}: uninstall all but one",
            names,
        )
    ((value, distribution),) = sources
    where = f"the command {name!r} of {distribution} (entry point {value})"
    try:
        command = _load(value)
    except Exception as exc:  # whatever the module raises, the other commands keep working
        reason = f"{where} cannot be loaded: {type(exc).__name__}: {exc}"
        return UnloadableCommand(name, reason, distribution)
    if not isinstance(command, click.Command):
        reason = f"{where} is a {type(command).__name__}, not a click command"
        return UnloadableCommand(name, reason, distribution)
    return command
