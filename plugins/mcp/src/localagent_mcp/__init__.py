"""``localagent mcp``: a running LocalAgent's message types as MCP tools, over stdio.

The command comes through the ``localagent.commands`` entry point; this package's
modules: ``_tools`` (types to tools, replies to results: pure), ``_bridge`` (the
one connection to the agent and the catalog), ``_server`` (the MCP SDK's low-level
server, progress, list changes), ``_framing`` (JSON-RPC lines in and out: pure),
``_stdio`` (stdin and stdout as loop pipes, private descriptors), ``_stdio_files``
(stdio that is no pipe), ``_main`` (the loop), ``_cli`` (the click command).

The names below are imported on first use: ``localagent --help`` loads the
command (``_cli``) and must not pay for asyncio, websockets or the MCP SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bridge import AgentLink, AgentUnreachable
    from ._main import serve_stdio
    from ._server import AGENT_UNREACHABLE, BridgeServer
    from ._tools import Catalog, Tool, build_catalog

__all__ = [
    "AGENT_UNREACHABLE",
    "AgentLink",
    "AgentUnreachable",
    "BridgeServer",
    "Catalog",
    "Tool",
    "build_catalog",
    "serve_stdio",
]

_WHERE = {
    "AGENT_UNREACHABLE": "._server",
    "AgentLink": "._bridge",
    "AgentUnreachable": "._bridge",
    "BridgeServer": "._server",
    "Catalog": "._tools",
    "Tool": "._tools",
    "build_catalog": "._tools",
    "serve_stdio": "._main",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name], __name__), name)
