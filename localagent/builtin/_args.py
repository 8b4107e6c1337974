"""Reading a request's ``data`` object with clear ``bad_request`` errors.

Shared by the built-in plugins so every handler rejects malformed arguments the
same way, naming the message type and the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

from localagent_hookspecs import Message, MessageError

__all__ = ["BAD_REQUEST", "MISSING", "arguments", "field"]

BAD_REQUEST = "bad_request"
T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: Default for :func:`field` meaning "this field is required".
MISSING: Any = _Missing()

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "an object", float: "a number"}  # fmt: skip


def arguments(message: Message, *allowed: str) -> dict[str, Any]:
    """``message.data`` as an object (``None`` counts as ``{}``), with no unknown keys.

    Raises:
        MessageError: ``bad_request`` if it is not an object or has a key not in ``allowed``.
    """
    data = {} if message.data is None else message.data
    if not isinstance(data, dict):
        raise MessageError(BAD_REQUEST, f"{message.type}: data must be a JSON object")
    for key in data:  # the common case, with no set built: every key is allowed
        if key not in allowed:
            break
    else:
        return data
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise MessageError(
            BAD_REQUEST,
            f"{message.type}: unknown field(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(allowed)})",
        )
    return data


def field(
    message: Message,
    data: dict[str, Any],
    name: str,
    kind: type[T] | tuple[type, ...],
    default: Any = MISSING,
) -> T:
    """One field of ``data``, checked against ``kind``.

    ``bool`` is never accepted for ``int`` or ``float`` (JSON ``true`` is not
    a number), and an ``int`` is accepted for ``float``.

    Raises:
        MessageError: ``bad_request`` naming the message type and the field.
    """
    if name not in data or data[name] is None:
        if default is MISSING:
            raise MessageError(BAD_REQUEST, f"{message.type}: field {name!r} is required")
        return default  # type: ignore[no-any-return]
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and type(value) is int:
        value = float(value)
    ok = False if type(value) is bool and bool not in kinds else isinstance(value, kinds)
    if not ok:
        expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise MessageError(BAD_REQUEST, f"{message.type}: field {name!r} must be {expected}")
    return value  # type: ignore[no-any-return]
