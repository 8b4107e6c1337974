"""``localagent token``: print or rotate the agent's token."""

from __future__ import annotations

import click

from .._bootstrap import config_dir

__all__ = ["token"]


@click.command()
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
    from .._security import TokenFile

    if rotate and show_path:
        raise click.UsageError("--rotate and --path cannot be used together")
    token_file = TokenFile(config_dir())
    if show_path:
        token_file.get()
        click.echo(str(token_file.path))
        return
    click.echo(token_file.rotate() if rotate else token_file.get())
