"""``localagent mcp``: the MCP server over stdio that MCP hosts launch."""

from __future__ import annotations

import click

__all__ = ["mcp"]


@click.command()
@click.option(
    "--url",
    envvar="LOCALAGENT_URL",
    metavar="URL",
    help="Agent URL (default: $LOCALAGENT_URL or the configured one).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to check the agent's message types for changes (0: never).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Seconds a tool call waits for the agent's reply, then is cancelled (default: no limit).",
)
@click.option(
    "--max-line-bytes",
    "max_line",
    type=click.IntRange(min=1),
    default=16 << 20,  # _framing.MAX_LINE, not imported here: --help stays light (a test checks)
    show_default=True,
    metavar="BYTES",
    help="Longest input line kept; a longer one is answered with an error (-32600) and dropped.",
)
def mcp(url: str | None, poll: float, timeout: float | None, max_line: int) -> None:
    """Serve the running agent's message types as MCP tools over stdio.

    An MCP host (Claude Desktop, an IDE) launches this command and speaks MCP
    on its stdin and stdout. Each message type of the agent at --url is a
    tool whose input schema is the type's data schema; every call goes over
    one connection, with the agent's token (the token file, or
    $LOCALAGENT_TOKEN), and stays behind the agent's own checks (exec's
    allow-list, fs's workspace). The agent must be running (localagent
    serve); until it is, listing tools fails with a clear error and this
    command keeps serving. See docs/mcp.md.
    """
    from ._main import run

    run(url=url, poll=poll, timeout=timeout, max_line=max_line)
