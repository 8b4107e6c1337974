"""Built-in plugin ``agent``: the agent describes itself (``agent.types``) and cancels
requests (``agent.cancel``).

``agent.types`` answers with every message type the agent handles, each with
its handler's description and the JSON Schema of its data: what ``localagent
mcp`` turns into MCP tools. The reply carries a ``digest`` of the whole list;
a client that sends it back as ``if_changed`` gets ``"unchanged": true`` and
no list while nothing changed, so polling for plugins enabled or disabled at
runtime costs one small round trip.

``agent.cancel`` stops a request of the same connection whose asynchronous
handler still runs (an ``exec`` kills its program): that request is answered
with the error ``cancelled``, and the cancel itself with ``{"cancelled": true}``
(``false`` when nothing of that id was running).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from localagent_hookspecs import Agent, Connection, Message, handles, hookimpl
from pluggy import PluginManager

__all__ = ["CANCELLED", "CancelData", "Plugin", "TypesData"]

#: The error code of a request stopped by ``agent.cancel``.
CANCELLED = "cancelled"


class TypesData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``agent.types`` data."""

    if_changed: (
        Annotated[str, msgspec.Meta(description="The digest of a list you already have.")] | None
    ) = None


class CancelData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``agent.cancel`` data."""

    id: Annotated[str | int, msgspec.Meta(description="The id of the request to cancel.")]


class Plugin:
    """Answers ``agent.types`` from the plugin manager it was loaded into."""

    def __init__(self) -> None:
        self._pm: PluginManager | None = None
        self._described: tuple[int, str, list[dict[str, Any]]] | None = None

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        from .._runtime import AgentRuntime

        if isinstance(agent, AgentRuntime):
            self._pm = agent.pm

    def _describe(self) -> tuple[str, list[dict[str, Any]]]:
        from .._schemas import describe_types, digest

        pm = self._pm
        if pm is None:
            return "", []
        generation: int = getattr(pm, "generation", -1)
        if self._described is None or self._described[0] != generation or generation < 0:
            types = describe_types(pm)
            self._described = (generation, digest(types), [t.to_json() for t in types])
        return self._described[1], self._described[2]

    @hookimpl(specname="on_message")
    @handles("agent.types", schema=TypesData)
    def types(self, message: Message) -> dict[str, Any]:
        """List the message types this agent answers, with their descriptions and JSON Schemas.

        Replies ``{"digest", "unchanged", "types": [{"type", "plugin", "description",
        "schema"}]}``; ``types`` is left out when ``if_changed`` is the current digest.
        """
        current, types = self._describe()
        if message.data.if_changed == current:
            return {"digest": current, "unchanged": True}
        return {"digest": current, "unchanged": False, "types": types}

    @hookimpl(specname="on_message")
    @handles("agent.cancel", schema=CancelData)
    async def cancel(self, connection: Connection, message: Message) -> dict[str, Any]:
        """Cancel a request of this connection that is still running (e.g. an ``exec``).

        That request is answered with the error ``cancelled``; this one with
        ``{"cancelled": true}``, or ``false`` when no such request was running.
        """
        target = message.data.id
        requests = getattr(connection, "requests", None)  # a WebSocketConnection's
        if requests is None or not requests.cancel(target):
            return {"cancelled": False}
        reply = {"code": CANCELLED, "message": "cancelled by agent.cancel"}
        await connection.send({"id": target, "error": reply})
        return {"cancelled": True}
