"""The baselines of bench/roundtrip.py: a plain MCP SDK server over stdio with one echo tool.

Built like the bridge (the SDK's low-level Server with its defaults, a structured and a text
result), with nothing of the bridge's own:

    plain_echo_server.py               answers in-process (asyncio's default loop)
    plain_echo_server.py --uvloop      the same on uvloop, the loop the bridge runs on
    plain_echo_server.py --forward     sends each call to the agent's echo over one WebSocket
                                       (LOCALAGENT_URL, LOCALAGENT_TOKEN): the least any
                                       bridge to the agent can cost, on uvloop
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

from localagent import Client

ECHO = types.Tool(
    name="echo",
    description="Reply with the arguments.",
    input_schema={"type": "object", "additionalProperties": True},
)
FORWARD = "--forward" in sys.argv
_agent: list[Client] = []


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ECHO])


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if FORWARD:
        if not _agent:
            _agent.append(await Client.connect(coalesce=False))
        result = await _agent[0].request("echo", params.arguments)
    else:
        result = {"data": params.arguments}
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(result, ensure_ascii=False))],
        structured_content=result,
    )


async def main() -> None:
    server: Server[Any] = Server("plain-echo", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    uvloop = "--uvloop" in sys.argv or FORWARD
    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": uvloop})
