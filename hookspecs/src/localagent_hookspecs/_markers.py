"""The pluggy markers for the ``localagent`` project and the ``handles`` marker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pluggy

__all__ = ["HANDLES_ATTRIBUTE", "PROJECT_NAME", "handled_types", "handles", "hookimpl", "hookspec"]

PROJECT_NAME = "localagent"

#: Marks a hook specification. Only :mod:`localagent_hookspecs.hookspecs` uses it.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a hook implementation in a plugin. Re-exported as ``localagent.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Name of the attribute that :func:`handles` sets on an ``on_message`` implementation.
HANDLES_ATTRIBUTE = "localagent_handles"

F = TypeVar("F", bound=Callable[..., object])


def handles(*message_types: str) -> Callable[[F], F]:
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

    Args:
        message_types: One or more message type names, e.g. ``"fs.read"``.

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
        return function

    return mark


def handled_types(function: Callable[..., object]) -> frozenset[str] | None:
    """Return the types declared with :func:`handles`, or ``None`` for "every type"."""
    declared = getattr(function, HANDLES_ATTRIBUTE, None)
    return frozenset(declared) if declared is not None else None
