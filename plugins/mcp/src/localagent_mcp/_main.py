"""Running the bridge: stdio transport, the MCP server loop and the type watcher together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import anyio

from ._bridge import AgentLink
from ._framing import MAX_LINE
from ._server import BridgeServer
from ._stdio import Wire, claimed_stdio, server_streams

__all__ = ["run", "run_on_loop", "serve_stdio"]

T = TypeVar("T")


def _version() -> str:
    try:
        return version("localagent-mcp")
    except PackageNotFoundError:
        return ""


async def serve_stdio(
    *,
    url: str | None = None,
    poll: float = 2.0,
    timeout: float | None = None,
    wire: Wire | None = None,
    max_line: int = MAX_LINE,
) -> None:
    """Serve MCP on this process's stdin and stdout until the host closes them.

    Args:
        wire: The descriptors claimed by :func:`~._stdio.claimed_stdio` (``None``:
            claimed here, for the time of the call).
        max_line: The longest input line kept, in bytes; a longer one is answered
            with an error and dropped.
    """
    link = AgentLink(url)
    bridge = BridgeServer(link, poll=poll, timeout=timeout, version=_version())
    try:
        async with (
            server_streams(wire, max_line) as (read_stream, write_stream),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(bridge.watch)
            await bridge.server.run(read_stream, write_stream, bridge.initialization_options())
            tg.cancel_scope.cancel()  # the host closed stdin: stop watching
    finally:
        await link.aclose()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (a tool call's loop turns cost less), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_on_loop(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` with anyio on asyncio, on uvloop where it is installed.

    ``anyio.run(..., backend="asyncio")`` alone runs asyncio's default loop
    whatever is installed: the loop must be asked for.
    """
    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": _loop_factory()})


def run(
    *,
    url: str | None = None,
    poll: float = 2.0,
    timeout: float | None = None,
    max_line: int = MAX_LINE,
) -> None:
    """Run :func:`serve_stdio`; log to stderr (stdout carries MCP)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="localagent mcp: %(levelname)s: %(message)s",
    )
    # Claimed before the loop exists: it also opens fds 0-2 if closed, which libuv requires.
    with claimed_stdio() as wire, contextlib.suppress(KeyboardInterrupt):
        run_on_loop(
            lambda: serve_stdio(url=url, poll=poll, timeout=timeout, wire=wire, max_line=max_line)
        )
