"""The wire protocol: message envelopes, replies, batch frames and validation.

Pure code, no I/O: the transport hands frames in and sends what comes out, and
unit tests drive it without sockets.

Inbound, a frame is one JSON object ``{"id", "type", "data"}`` (and an optional
address ``"to"``, see docs/cluster.md) or a batch
frame ``{"type": "batch", "messages": [...]}`` carrying such objects. Replies
carry the request's ``id`` and either ``result`` or ``error`` (``code``,
``message`` and optional ``details``). Any receiver unbatches batch frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec

from . import _codec

__all__ = [
    "BATCH",
    "INTERNAL_ERROR",
    "INVALID_DATA",
    "INVALID_JSON",
    "INVALID_MESSAGE",
    "MAX_TYPE_LENGTH",
    "UNKNOWN_TYPE",
    "Invalid",
    "Message",
    "batch_frame",
    "batch_frames",
    "error_reply",
    "parse_frame",
    "result_reply",
    "unbatch",
]

BATCH: Final = "batch"
MAX_TYPE_LENGTH: Final = _codec.MAX_TYPE_LENGTH

INVALID_JSON: Final = "invalid_json"
INVALID_MESSAGE: Final = "invalid_message"
UNKNOWN_TYPE: Final = "unknown_type"
#: ``data`` does not fit the schema its handler declared (see ``_schemas``).
INVALID_DATA: Final = "invalid_data"
INTERNAL_ERROR: Final = "internal_error"


class Message(NamedTuple):
    """One validated inbound message.

    A NamedTuple rather than an attrs class: one is built per message, and a
    tuple is created in a third of the time of a frozen attrs instance.

    Attributes:
        id: Correlation id (``str`` or ``int``), ``None`` for a notification.
        type: Message type, a non-empty string.
        data: Payload, any JSON value (``None`` when absent).
        to: Where the message is addressed (another agent or peer of a
            cluster), ``None`` for this agent.
    """

    id: str | int | None
    type: str
    data: Any = None
    to: str | None = None


class Invalid(msgspec.Struct, frozen=True):
    """A frame, or a member of a batch frame, that is not a valid message.

    Attributes:
        id: The id, when one could be read from the broken message.
        code: ``invalid_json`` or ``invalid_message``.
        reason: What is wrong, for the error reply.
    """

    id: str | int | None
    code: str
    reason: str


#: ``Message(id, type, data, to)`` without the Python-level ``__new__`` of a NamedTuple
#: (parse_frame builds one per message).
_new_message = tuple.__new__


def _is_int64(value: object) -> bool:
    """An integer id that fits 64 bits, signed or not (not a bool): what JSON peers agree on."""
    return type(value) is int and -(2**63) <= value <= 2**64 - 1


def _to_message(obj: object, *, in_batch: bool) -> Message | Invalid:
    """Check one decoded message in order; the first problem found is the reason given."""
    if type(obj) is not dict:
        return Invalid(None, INVALID_MESSAGE, "a message must be a JSON object")
    msg_id = obj.get("id")
    if msg_id is not None and not _is_int64(msg_id) and not isinstance(msg_id, str):
        return Invalid(None, INVALID_MESSAGE, "'id' must be a string, an integer or absent")
    msg_type = obj.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        return Invalid(msg_id, INVALID_MESSAGE, "'type' must be a non-empty string")
    if len(msg_type) > MAX_TYPE_LENGTH:
        return Invalid(msg_id, INVALID_MESSAGE, f"'type' is longer than {MAX_TYPE_LENGTH}")
    if msg_type == BATCH:
        reason = "batch frames cannot be nested" if in_batch else "'messages' must be a list"
        return Invalid(msg_id, INVALID_MESSAGE, reason)
    to = obj.get("to")
    if to is not None and (not isinstance(to, str) or not to):
        return Invalid(msg_id, INVALID_MESSAGE, "'to' must be a non-empty string or absent")
    return Message(msg_id, msg_type, obj.get("data"), to)


def parse_frame(frame: bytes | bytearray | memoryview | str) -> list[Message | Invalid]:
    """Decode and validate one inbound frame.

    Never raises: every problem becomes an :class:`Invalid` item, in the
    position of the message it replaces, so the caller can answer each one.

    Args:
        frame: The frame's payload: a text frame's as ``str``, a binary
            frame's as bytes (which need not be UTF-8: ``invalid_json`` then).

    Returns:
        One item for a plain message; one per member for a batch frame (an
        empty batch yields an empty list).
    """
    try:
        decoded = _codec.decode_frame(frame)
    except _codec.DecodeError:
        return _parse_loosely(frame)  # some part is wrong: find which, item by item
    new = _new_message
    if decoded.type != BATCH:
        return [new(Message, (decoded.id, decoded.type, decoded.data, decoded.to))]
    members = decoded.messages
    if members is None:
        return [Invalid(decoded.id, INVALID_MESSAGE, "'messages' must be a list")]
    return [
        new(Message, (member.id, member.type, member.data, member.to))
        if member.type != BATCH
        else Invalid(member.id, INVALID_MESSAGE, "batch frames cannot be nested")
        for member in members
    ]


def _parse_loosely(frame: bytes | bytearray | memoryview | str) -> list[Message | Invalid]:
    """:func:`parse_frame` for a frame the typed decoder refused: decode, then check each part."""
    try:
        obj = _codec.loads(frame)
    except (_codec.DecodeError, UnicodeDecodeError, TypeError):
        return [Invalid(None, INVALID_JSON, "the frame is not valid UTF-8 JSON")]
    if type(obj) is dict and obj.get("type") == BATCH:
        members = obj.get("messages")
        if type(members) is list:
            return [_to_message(member, in_batch=True) for member in members]
    return [_to_message(obj, in_batch=False)]


def result_reply(msg_id: str | int | None, result: Any) -> dict[str, Any]:
    """Build the reply that carries a handler's result."""
    return {"id": msg_id, "result": result}


def error_reply(
    msg_id: str | int | None, code: str, message: str, details: Any = None
) -> dict[str, Any]:
    """Build an error reply; ``details`` is included only when not ``None``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"id": msg_id, "error": error}


def batch_frame(messages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Wrap outbound messages in one batch frame."""
    return {"type": BATCH, "messages": list(messages)}


_BATCH_HEAD, _BATCH_TAIL = b'{"type":"%s","messages":[' % BATCH.encode(), b"]}"
_BATCH_OVERHEAD = _BATCH_HEAD + _BATCH_TAIL


def batch_frames(encoded: Sequence[bytes], max_bytes: int) -> Iterator[bytes]:
    """Frames carrying ``encoded`` messages (JSON, in order): batch frames of at most
    ``max_bytes``, and a message alone as its own frame (also one too big to share)."""
    start, size = 0, 0
    for end, message in enumerate(encoded):
        if end > start and size + len(message) + 1 > max_bytes - len(_BATCH_OVERHEAD):
            yield _joined(encoded[start:end])
            start, size = end, 0
        size += len(message) + 1
    if start < len(encoded):
        yield _joined(encoded[start:])


def _joined(encoded: Sequence[bytes]) -> bytes:
    if len(encoded) == 1:
        return encoded[0]
    return _BATCH_HEAD + b",".join(encoded) + _BATCH_TAIL


def unbatch(obj: Any) -> list[Any]:
    """Return the messages a received frame carries: the members of a batch, or itself."""
    if type(obj) is dict and obj.get("type") == BATCH:
        members = obj.get("messages")
        if type(members) is list:
            return members
    return [obj]
