"""The agent's message types as MCP tools, and its replies as tool results: pure, no I/O.

Input is what the agent answers to ``agent.types``; output is plain data that
:mod:`._server` wraps in the SDK's types. A type's name becomes the tool's name
(MCP allows ``[A-Za-z0-9._-]``, 1 to 128 characters: other characters become
``_``), its handler's docstring the description, and the JSON Schema of its
data the ``inputSchema``. A type without a schema, or whose data need not be
an object, gets an open object: MCP tool arguments are always one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import msgspec

__all__ = [
    "HIDDEN_TYPES",
    "OPEN_OBJECT",
    "Catalog",
    "Tool",
    "build_catalog",
    "error_result",
    "input_schema",
    "success_result",
    "tool_name",
]

#: The agent's own plumbing (the type list, cancellation): the bridge uses them, tools do not.
HIDDEN_TYPES: Final = frozenset({"agent.types", "agent.cancel"})
#: The input schema of a type that declares none: any object.
OPEN_OBJECT: Final = {"type": "object", "additionalProperties": True}

_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 128


def tool_name(message_type: str) -> str:
    """The MCP tool name for ``message_type`` (characters MCP does not allow become ``_``)."""
    return _NOT_IN_NAMES.sub("_", message_type)[:_MAX_NAME]


def input_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The tool's ``inputSchema``: the type's JSON Schema if it describes an object."""
    if not schema or schema.get("type") != "object":
        return dict(OPEN_OBJECT)
    return dict(schema)


@attrs.frozen
class Tool:
    """One message type offered as an MCP tool.

    Attributes:
        name: The tool's name.
        message_type: The agent's message type it sends.
        description: The handler's docstring (and the plugin that answers).
        input_schema: The JSON Schema of its arguments (the message's ``data``).
    """

    name: str
    message_type: str
    description: str
    input_schema: dict[str, Any]


@attrs.frozen
class Catalog:
    """The tools of one agent's type list (one ``agent.types`` digest).

    Attributes:
        digest: The list's digest (``agent.types`` answers ``unchanged`` for it).
        tools: The tools, sorted by name.
        skipped: Types left out, with why (a name taken by another type).
    """

    digest: str
    tools: tuple[Tool, ...]
    skipped: tuple[str, ...] = ()

    def find(self, name: str) -> Tool | None:
        return next((tool for tool in self.tools if tool.name == name), None)


def build_catalog(digest: str, types: Iterable[Mapping[str, Any]]) -> Catalog:
    """The tools for an ``agent.types`` list; the agent's plumbing types are left out."""
    tools: dict[str, Tool] = {}
    skipped: list[str] = []
    for described in types:
        message_type = str(described["type"])
        if message_type in HIDDEN_TYPES:
            continue
        name = tool_name(message_type)
        if name in tools:
            skipped.append(
                f"{message_type!r}: its tool name {name!r} is taken by {tools[name].message_type!r}"
            )
            continue
        description = str(described.get("description") or f"The agent's {message_type!r}.")
        plugin = described.get("plugin")
        if plugin:
            description += f"\n\n(LocalAgent message type {message_type!r}, plugin {plugin!r}.)"
        tools[name] = Tool(name, message_type, description, input_schema(described.get("schema")))
    return Catalog(digest, tuple(tools[name] for name in sorted(tools)), tuple(skipped))


def _text(value: Any) -> str:
    """Compact JSON (msgspec: a tenth of the time of json.dumps with indent, per call)."""
    return msgspec.json.encode(value).decode()


def success_result(result: Any) -> tuple[str, dict[str, Any]]:
    """``(text, structured content)`` of a result: the JSON, and the object itself.

    MCP's structured content is an object; any other JSON value is wrapped as
    ``{"result": value}``.
    """
    structured = result if isinstance(result, dict) else {"result": result}
    return _text(result), structured


def error_result(code: str, message: str, details: Any = None) -> tuple[str, dict[str, Any]]:
    """``(text, structured content)`` of an error reply (the tool result has ``isError``)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    text = f"{code}: {message}"
    if details is not None:
        text += f"\ndetails: {_text(details)}"
    return text, {"error": error}
