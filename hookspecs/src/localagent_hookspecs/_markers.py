"""The pluggy markers for the ``localagent`` project and the ``handles`` marker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pluggy

__all__ = [
    "HANDLES_ATTRIBUTE",
    "PROJECT_NAME",
    "SCHEMAS_ATTRIBUTE",
    "handled_schema",
    "handled_types",
    "handles",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "localagent"

#: Marks a hook specification. Only :mod:`localagent_hookspecs.hookspecs` uses it.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a hook implementation in a plugin. Re-exported as ``localagent.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Name of the attribute that :func:`handles` sets on an ``on_message`` implementation.
HANDLES_ATTRIBUTE = "localagent_handles"

#: Name of the attribute that :func:`handles` sets for ``schema=``: a dict of type -> schema.
SCHEMAS_ATTRIBUTE = "localagent_schemas"

F = TypeVar("F", bound=Callable[..., object])


def handles(*message_types: str, schema: object = None) -> Callable[[F], F]:
    """Declare which message types an ``on_message`` implementation answers.

    The runtime builds a per-type dispatch table from these declarations, so an
    implementation marked ``@handles("ping")`` is called only for ``ping``
    messages and costs nothing for any other type. An implementation without
    the marker sees every message, in pluggy's order.

    Use it under ``@hookimpl``; to give one plugin several handlers, name the
    functions freely and point them at the hook with ``specname``::

        @hookimpl(specname="on_message")
        @handles("ping")
        def ping(connection, message):
            return {"pong": True}

    With ``schema``, the runtime checks each message's ``data`` before the
    implementation runs and hands it over converted: ``message.data`` is then
    an instance of the schema type. Data that does not fit gets the error
    reply ``invalid_data`` naming the field (``$.key``), and the
    implementation is not called::

        class SetData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
            key: str
            value: Any

        @hookimpl(specname="on_message")
        @handles("kv.set", schema=SetData)
        async def kv_set(message):
            await store.set(message.data.key, message.data.value)

    An absent ``data`` counts as ``{}`` for a schema that describes an
    object. The schemas are exported as JSON Schema (``localagent plugins
    schemas``, the ``agent.types`` message) and become the input schemas of
    MCP tools (``localagent mcp``).

    Args:
        message_types: One or more message type names, e.g. ``"fs.read"``.
        schema: What ``data`` must look like, for every type named: a
            ``msgspec.Struct`` or attrs class (or any type ``msgspec.convert``
            accepts, such as ``typing.Any`` or a ``TypedDict``), validated and
            converted; or a JSON Schema as a ``dict``, exported only (the
            implementation checks ``data`` itself). ``None``: undeclared,
            ``data`` is passed as decoded.

    Raises:
        ValueError: If no type is given or a type is not a non-empty string.
    """
    if not message_types:
        raise ValueError("handles() needs at least one message type")
    for message_type in message_types:
        if not isinstance(message_type, str) or not message_type:
            raise ValueError(f"message types must be non-empty strings, not {message_type!r}")

    def mark(function: F) -> F:
        declared: frozenset[str] = getattr(function, HANDLES_ATTRIBUTE, frozenset())
        setattr(function, HANDLES_ATTRIBUTE, declared | frozenset(message_types))
        if schema is not None:
            schemas: dict[str, object] = dict(getattr(function, SCHEMAS_ATTRIBUTE, {}))
            schemas.update(dict.fromkeys(message_types, schema))
            setattr(function, SCHEMAS_ATTRIBUTE, schemas)
        return function

    return mark


def handled_types(function: Callable[..., object]) -> frozenset[str] | None:
    """Return the types declared with :func:`handles`, or ``None`` for "every type"."""
    declared = getattr(function, HANDLES_ATTRIBUTE, None)
    return frozenset(declared) if declared is not None else None


def handled_schema(function: Callable[..., object], message_type: str) -> object:
    """Return the ``schema=`` given to :func:`handles` for ``message_type``, or ``None``."""
    schemas: dict[str, object] = getattr(function, SCHEMAS_ATTRIBUTE, {})
    return schemas.get(message_type)
