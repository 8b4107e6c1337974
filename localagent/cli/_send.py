"""``localagent send``: one message to a running agent, its reply printed."""

from __future__ import annotations

import sys
from typing import Any

import click

from ._shared import pretty

__all__ = ["EXIT_CONNECT_FAILED", "EXIT_REPLY_ERROR", "send"]

EXIT_REPLY_ERROR = 1
EXIT_CONNECT_FAILED = 3


@click.command()
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
    from .. import _codec

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
    click.echo(pretty(result))


async def _send(
    url: str | None, message_type: str, data: Any, timeout: float, to: str | None
) -> Any:
    from .._client import Client
    from ..exceptions import ConnectFailed, ConnectionLost, ReplyError

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
    from .. import _codec

    click.echo(_codec.dumps(message).decode(), err=True)
