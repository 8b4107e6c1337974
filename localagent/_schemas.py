"""Typed message data: checking ``data`` against a handler's ``schema=``, and exporting schemas.

A handler declared with ``@handles("kv.set", schema=SetData)`` receives
``message.data`` converted to ``SetData`` (``msgspec.convert``, which takes
msgspec Structs, attrs classes, dataclasses, TypedDicts and plain types);
data that does not fit gets one error code, ``invalid_data``, whose message
and ``details.path`` name the field (``$.key``). A ``dict`` schema is a JSON
Schema the handler enforces itself: it is exported, not checked here.

The export (:func:`json_schema`, :func:`describe_types`) is what ``localagent
plugins schemas``, the ``agent.types`` message and the MCP bridge show.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable
from typing import Any

import msgspec
from localagent_hookspecs import Connection, Message, MessageError, handled_schema, handled_types
from pluggy import HookImpl, PluginManager

from . import _codec
from ._protocol import INVALID_DATA
from ._protocol import Message as Parsed

__all__ = [
    "INVALID_DATA",
    "MessageType",
    "describe_types",
    "json_schema",
    "typed_direct",
    "typed_handler",
    "validator",
]


Handler = Callable[[Connection, Message], Any]
_new_message = tuple.__new__
#: msgspec's ValidationError messages end with `` - at `$.path` `` when the fault is inside.
_AT = re.compile(r" - at `(\$[^`]*)`$")
#: ...and name the field in "missing required field `x`" / "unknown field `x`".
_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]*)`")


def _path(error: str) -> tuple[str, str]:
    """Split msgspec's message into (what is wrong, the JSON path of the field)."""
    at = _AT.search(error)
    path = at.group(1) if at else "$"
    reason = error[: at.start()] if at else error
    named = _FIELD.search(reason)
    if named:
        path = f"{path}.{named.group(1)}"
    return reason, path


def invalid(message_type: str, error: msgspec.ValidationError) -> MessageError:
    """The ``invalid_data`` error for ``error``, naming the field."""
    reason, path = _path(str(error))
    return MessageError(
        INVALID_DATA, f"{message_type}: invalid data at {path}: {reason}", details={"path": path}
    )


def _describes_object(schema: object) -> bool:
    exported = json_schema(schema)
    return exported is not None and exported.get("type") == "object"


def validator(message_type: str, schema: object) -> Callable[[Any], Any] | None:
    """A function that checks and converts ``data`` for ``schema``; ``None`` if none is needed.

    ``typing.Any`` and ``dict`` schemas (JSON Schemas, exported only) need none.
    """
    if schema is None or schema is Any or isinstance(schema, dict):
        return None
    convert = msgspec.convert
    absent: Any = None  # the value of an absent ``data``, built once: schema types are frozen
    absent_error: msgspec.ValidationError | None = None
    try:
        if _describes_object(schema):
            try:
                absent = convert({}, schema)
            except msgspec.ValidationError as exc:
                absent_error = exc
    except Exception as exc:  # a plugin's bug: its handler fails, not the dispatch table
        return _unusable(message_type, exc)

    def validate(data: Any) -> Any:
        if data is None:
            if absent_error is not None:
                raise invalid(message_type, absent_error)
            if absent is not None:
                return absent
        try:
            return convert(data, schema)
        except msgspec.ValidationError as exc:
            raise invalid(message_type, exc) from None

    return validate


def _unusable(message_type: str, error: Exception) -> Callable[[Any], Any]:
    """The validator of a schema msgspec cannot use: every message fails (``internal_error``)."""
    problem = f"{type(error).__name__}: {error}"

    def refuse(data: Any) -> Any:
        raise TypeError(f"the schema of {message_type!r} is unusable: {problem}")

    return refuse


def typed_handler(handler: Handler, impl: HookImpl, message_type: str | None) -> Handler:
    """``handler`` (called as ``(connection, message)``), checking data against its schema first."""
    if message_type is None:
        return handler
    validate = validator(message_type, handled_schema(impl.function, message_type))
    if validate is None:
        return handler

    def typed(connection: Connection, message: Message) -> Any:
        data = validate(message.data)
        typed = _new_message(Parsed, (message.id, message.type, data, message.to))
        return handler(connection, typed)

    return typed


def typed_direct(
    function: Callable[[Message], Any], impl: HookImpl, message_type: str | None
) -> Callable[[Message], Any]:
    """:func:`typed_handler` for a handler called as ``function(message)``."""
    if message_type is None:
        return function
    validate = validator(message_type, handled_schema(impl.function, message_type))
    if validate is None:
        return function

    def typed(message: Message) -> Any:
        data = validate(message.data)
        return function(_new_message(Parsed, (message.id, message.type, data, message.to)))

    return typed


def json_schema(schema: object) -> dict[str, Any] | None:
    """``schema`` as a JSON Schema object, its top-level definition inlined; ``None`` for none."""
    if schema is None:
        return None
    if isinstance(schema, dict):
        return schema
    exported: dict[str, Any] = msgspec.json.schema(schema)
    ref = exported.get("$ref", "")
    definitions: dict[str, Any] = exported.get("$defs", {})
    if ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        top = dict(definitions[name])
        rest = {key: value for key, value in definitions.items() if key != name}
        if rest or f'"#/$defs/{name}"' in _codec.dumps(top).decode():
            top["$defs"] = definitions
        return top
    return exported


class MessageType(msgspec.Struct, frozen=True):
    """One message type an agent answers, as exported.

    Attributes:
        type: The type, e.g. ``"kv.set"``.
        plugin: The plugin of the handler that answers it first.
        description: That handler's docstring (its first paragraph and the rest, dedented).
        schema: Its data's JSON Schema, ``None`` when the handler declared none.
    """

    type: str
    plugin: str | None
    description: str
    schema: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "plugin": self.plugin,
            "description": self.description,
            "schema": self.schema,
        }


def describe_types(pm: PluginManager) -> list[MessageType]:
    """Every type declared with ``@handles`` by a registered plugin, sorted by type.

    Each is described by the implementation that answers it first (pluggy's
    call order), as the dispatcher calls them.
    """
    first: dict[str, HookImpl] = {}
    for impl in reversed(pm.hook.on_message.get_hookimpls()):  # call order
        if impl.wrapper or impl.hookwrapper:
            continue
        for message_type in handled_types(impl.function) or ():
            first.setdefault(message_type, impl)
    return [
        MessageType(
            type=message_type,
            plugin=pm.get_name(impl.plugin),
            description=inspect.getdoc(impl.function) or "",
            schema=_exported(handled_schema(impl.function, message_type)),
        )
        for message_type, impl in sorted(first.items())
    ]


def _exported(schema: object) -> dict[str, Any] | None:
    try:
        return json_schema(schema)
    except Exception:  # unusable (its handler answers internal_error): described without one
        return None


def digest(types: list[MessageType]) -> str:
    """A short fingerprint of a set of types: it changes when any type or schema does."""
    encoded = _codec.dumps([t.to_json() for t in types])
    return hashlib.sha256(encoded).hexdigest()[:16]
