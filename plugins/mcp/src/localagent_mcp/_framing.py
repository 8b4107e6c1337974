"""MCP's stdio framing: newline-delimited JSON-RPC messages in and out, pure (no I/O).

MCP over stdio sends one JSON-RPC message per line, UTF-8, no embedded
newlines. :class:`LineDecoder` turns the bytes read from stdin, in pieces of any
size, into messages of :mod:`mcp_types`, and a line that is not one into the
JSON-RPC error reply it deserves: invalid JSON gets ``-32700 Parse error``,
JSON that is not a JSON-RPC message ``-32600 Invalid Request`` (with the
line's ``id`` when it has a usable one, else ``null``), a line over the size
limit ``-32600`` too. Either way the next line is read as usual. :func:`encode`
is the other direction.
"""

from __future__ import annotations

import json
from typing import Any, Final

import mcp_types as types
import pydantic

__all__ = ["MAX_LINE", "Decoded", "LineDecoder", "encode", "error_reply"]

#: The longest line :class:`LineDecoder` keeps by default (16 MiB): far above any tool call
#: the agent takes (its frames are at most ``server.max_message_size``, 1 MiB by default).
MAX_LINE: Final = 16 << 20

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
    stray whitespace is no message. A line longer than ``max_line`` bytes is
    never held whole: as soon as it is known to be too long it gets one
    ``-32600`` reply (``id`` null: its id is not read) and its bytes are dropped
    up to its ``\\n``, so a peer that never sends a newline cannot grow the
    bridge without bound.

    Args:
        max_line: The longest line kept, in bytes (without its ``\\n``).
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, not {max_line}")
        self.max_line = max_line
        self._parts: list[bytes] = []
        self._size = 0
        self._dropping = False  # inside a line already answered as too long

    def feed(self, data: bytes) -> list[Decoded]:
        """The outcomes of every line that ``data`` completes, in order."""
        if b"\n" not in data:
            return self._hold(data)
        first, *lines, rest = data.split(b"\n")
        decoded: list[Decoded] = []
        if self._dropping:  # the end of a line already answered
            self._dropping = False
        else:
            self._line(b"".join((*self._parts, first)) if self._parts else first, decoded)
        self._parts.clear()
        self._size = 0
        for line in lines:
            self._line(line, decoded)
        decoded += self._hold(rest)
        return decoded

    def finish(self) -> list[Decoded]:
        """At end of input: a last line without its ``\\n`` counts too."""
        rest = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        self._dropping = False
        decoded: list[Decoded] = []
        self._line(rest, decoded)
        return decoded

    def _line(self, line: bytes, decoded: list[Decoded]) -> None:
        if len(line) > self.max_line:
            decoded.append((None, self._too_long()))
        elif line.strip():
            decoded.append(decode_line(line))

    def _hold(self, piece: bytes) -> list[Decoded]:
        """Keep ``piece`` of an unfinished line, unless that makes the line too long."""
        if self._dropping or not piece:
            return []
        self._size += len(piece)
        if self._size <= self.max_line:
            self._parts.append(piece)
            return []
        self._parts.clear()
        self._size = 0
        self._dropping = True
        return [(None, self._too_long())]

    def _too_long(self) -> types.JSONRPCError:
        return error_reply(
            types.INVALID_REQUEST,
            f"Invalid Request: a line longer than {self.max_line} bytes was dropped "
            "(localagent mcp --max-line-bytes)",
        )
