"""The MCP side: a low-level ``mcp`` SDK server whose tools are the agent's message types.

``tools/list`` answers the catalog (:mod:`._tools`), fetched from the agent.
``tools/call`` sends the tool's message type with the arguments as ``data``
over the bridge's one connection (:mod:`._bridge`) and answers the result as
structured content and text; an error reply becomes a tool result with
``isError`` and the agent's code. Messages the agent sends for a call before
its reply (``exec`` output with ``"stream": true``) become progress
notifications, when the host asked for progress. A host's
``notifications/cancelled`` cancels the call, and the bridge sends
``agent.cancel``. A watcher asks the agent for its types every ``poll``
seconds (one small round trip while nothing changed) and sends
``notifications/tools/list_changed`` when they changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError

from localagent.exceptions import ReplyError

from ._bridge import AgentLink, AgentUnreachable
from ._tools import error_result, success_result

__all__ = ["AGENT_UNREACHABLE", "BridgeServer"]

logger = logging.getLogger("localagent.mcp")

#: The code of a tool result when the agent cannot be reached.
AGENT_UNREACHABLE = "agent_unreachable"


def _result(text: str, structured: dict[str, Any], *, error: bool) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=error
    )


class BridgeServer:
    """The MCP server of ``localagent mcp``.

    Args:
        link: The connection to the agent.
        poll: Seconds between two checks for a changed set of types (0: never).
        timeout: Seconds a tool call may wait for the agent's reply (``None``: no limit).
        version: This distribution's version, for the MCP handshake.
    """

    def __init__(
        self, link: AgentLink, *, poll: float = 2.0, timeout: float | None = None, version: str = ""
    ) -> None:
        self.link = link
        self.poll = poll
        self.timeout = timeout
        #: The session of the host, once it sent a request (list_changed goes there).
        self._session: ServerSession | None = None
        self.server: Server[Any] = Server(
            "localagent",
            version=version,
            instructions=(
                "Tools of a LocalAgent running on this machine: each is one of its message "
                "types. exec runs only allow-listed programs; fs stays inside its workspace."
            ),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        # The SDK wraps every message in an OpenTelemetry span, a no-op without an exporter
        # that still costs each call; the bridge opts out, as the SDK documents.
        self.server.middleware = []

    def initialization_options(self) -> Any:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    async def _unreachable(self, exc: AgentUnreachable) -> MCPError:
        return MCPError(types.INTERNAL_ERROR, f"LocalAgent is not reachable: {exc}")

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._session = ctx.session
        try:
            catalog = await self.link.current()
        except AgentUnreachable as exc:
            raise await self._unreachable(exc) from None
        except ReplyError as exc:
            raise MCPError(
                types.INTERNAL_ERROR,
                f"the agent does not list its types (agent.types: {exc.code}: {exc.message}); "
                "is its built-in 'agent' plugin disabled?",
            ) from None
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name, description=tool.description, input_schema=tool.input_schema
                )
                for tool in catalog.tools
            ]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._session = ctx.session
        tool = self.link.catalog.find(params.name) if self.link.catalog is not None else None
        if tool is None:  # not listed yet, or new since: ask the agent once
            try:
                tool = (await self.link.current()).find(params.name)
            except (AgentUnreachable, ReplyError) as exc:
                return _result(*error_result(AGENT_UNREACHABLE, str(exc)), error=True)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        progress = _Progress(ctx.session)
        try:
            result = await self.link.request(
                tool.message_type, params.arguments, on_event=progress.put, timeout=self.timeout
            )
        except ReplyError as exc:
            return _result(*error_result(exc.code, exc.message, exc.details), error=True)
        except AgentUnreachable as exc:
            return _result(*error_result(AGENT_UNREACHABLE, str(exc)), error=True)
        except TimeoutError:
            message = f"{tool.message_type}: no reply within {self.timeout:g} s (cancelled)"
            return _result(*error_result("timeout", message), error=True)
        finally:
            await progress.close()
        return _result(*success_result(result), error=False)

    async def watch(self) -> None:
        """Every ``poll`` seconds, send ``tools/list_changed`` if the agent's types changed."""
        while self.poll > 0:
            await asyncio.sleep(self.poll)
            if self._session is None or self.link.catalog is None:
                continue  # the host has not listed the tools yet: nothing to tell it
            try:
                changed = await self.link.refresh()
            except (AgentUnreachable, ReplyError) as exc:
                logger.debug("localagent mcp: cannot check the agent's types: %s", exc)
                continue
            if changed:
                logger.info("localagent mcp: the agent's types changed; telling the host")
                try:
                    await self._session.send_tool_list_changed()
                except Exception as exc:  # the host went away: the server loop ends on its own
                    logger.debug("localagent mcp: list_changed not sent: %s", exc)


class _Progress:
    """Forwards a call's streamed messages as progress notifications, in order."""

    def __init__(self, session: ServerSession) -> None:
        self._session = session
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sent = 0
        self._task: asyncio.Task[None] | None = None

    def put(self, message: Any) -> None:
        """``on_event`` of the request: called by the client's reader, never blocks."""
        self._queue.put_nowait(message)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._forward())

    async def _forward(self) -> None:
        while (message := await self._queue.get()) is not None:
            data = message.get("data") if isinstance(message, dict) else None
            if isinstance(data, dict) and isinstance(data.get("chunk"), str):
                text = data["chunk"]  # exec output
                if data.get("stream") == "stderr":
                    text = f"[stderr] {text}"
            else:
                text = json.dumps(message, ensure_ascii=False)
            self._sent += 1
            try:  # a no-op unless the host gave the call a progress token
                await self._session.report_progress(self._sent, None, text)
            except Exception as exc:
                logger.debug("localagent mcp: progress not sent: %s", exc)

    async def close(self) -> None:
        """Send what is queued, then stop (on cancellation: stop at once)."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            self._task.cancel()
            raise
