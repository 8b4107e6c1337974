"""The JSON codec: the one place that decides how frames are encoded and decoded."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["DecodeError", "EncodeError", "dumps", "loads"]

#: Raised by :func:`loads` for bytes that are not valid UTF-8 JSON.
DecodeError = orjson.JSONDecodeError
#: Raised by :func:`dumps` for values JSON cannot represent.
EncodeError = orjson.JSONEncodeError


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON."""
    return orjson.dumps(value)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode one JSON document."""
    return orjson.loads(data)
