"""MCP's stdio framing: newline-delimited JSON-RPC messages in and out, pure (no I/O).

MCP over stdio sends one JSON-RPC message per line, UTF-8, no embedded
newlines. :class:`LineDecoder` turns the bytes read from stdin, in pieces of any
size, into messages of :mod:`mcp_types`, and a line that is not one into the
JSON-RPC error reply it deserves: invalid JSON gets ``-32700 Parse error``,
JSON that is not a JSON-RPC message ``-32600 Invalid Request`` (with the
line's ``id`` when it has a usable one, else ``null``). Either way the next
line is read as usual. :func:`encode` is the other direction.
"""

from __future__ import annotations

import json
from typing import Any, Final

import mcp_types as types
import pydantic

__all__ = ["Decoded", "LineDecoder", "encode", "error_reply"]

#: A line's outcome: a message for the server, or an error reply for the peer.
Decoded = tuple[types.JSONRPCMessage | None, types.JSONRPCError | None]

_SERIALIZER: Final = types.jsonrpc_message_adapter.serializer


def encode(message: types.JSONRPCMessage) -> bytes:
    """One message as its line: compact JSON, fields by their wire names, then ``\\n``."""
    return _SERIALIZER.to_json(message, by_alias=True, exclude_unset=True) + b"\n"


def error_reply(code: int, message: str, request_id: Any = None) -> types.JSONRPCError:
    """A JSON-RPC error response; ``request_id`` is kept only if it is a valid id."""
    valid_id = request_id if isinstance(request_id, str | int) else None
    if isinstance(valid_id, bool):  # JSON true is no id
        valid_id = None
    return types.JSONRPCError(
        jsonrpc="2.0", id=valid_id, error=types.ErrorData(code=code, message=message)
    )


def decode_line(line: bytes) -> Decoded:
    """One line (without its ``\\n``) as ``(message, None)`` or ``(None, error reply)``."""
    try:
        return types.jsonrpc_message_adapter.validate_json(line, by_name=False), None
    except pydantic.ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return None, error_reply(types.PARSE_ERROR, "Parse error: the line is not JSON")
        request_id = None
        try:  # the line is JSON (pydantic said so): answer with its id if it has one
            value = json.loads(line)
        except ValueError:
            value = None
        if isinstance(value, dict):
            request_id = value.get("id")
        detail = exc.errors()[0]["msg"] if exc.errors() else "not a JSON-RPC message"
        return None, error_reply(
            types.INVALID_REQUEST, f"Invalid Request: not a JSON-RPC message ({detail})", request_id
        )


class LineDecoder:
    """Splits bytes into lines and decodes each; keeps an unfinished line for the next piece.

    Blank lines (and a ``\\r`` before the ``\\n``) are skipped, as a peer's
    stray whitespace is no message.
    """

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[Decoded]:
        """The outcomes of every line that ``data`` completes, in order."""
        if b"\n" not in data:
            self._partial += data
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [decode_line(line) for line in lines if line.strip()]

    def finish(self) -> list[Decoded]:
        """At end of input: a last line without its ``\\n`` counts too."""
        rest, self._partial = self._partial, b""
        return [decode_line(rest)] if rest.strip() else []
