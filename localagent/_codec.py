"""The JSON codec: the one place that decides how frames are encoded and decoded.

msgspec does both directions. Inbound frames are decoded straight into typed
envelopes (:func:`decode_frame`): the envelope checks run in C while parsing,
which costs less than parsing into dicts and checking them in Python.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "MAX_TYPE_LENGTH",
    "DecodeError",
    "EncodeError",
    "Envelope",
    "Frame",
    "decode_frame",
    "dumps",
    "encode_into",
    "loads",
    "pretty",
]

#: The longest message ``type`` accepted, in characters.
MAX_TYPE_LENGTH = 128

#: Raised by :func:`loads` for bytes that are not valid UTF-8 JSON.
DecodeError = msgspec.DecodeError


class EncodeError(ValueError):
    """Raised by :func:`dumps` for values JSON cannot represent."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

#: A message id: a string or a signed 64-bit integer. (Ids up to 2**64 - 1 are valid
#: too; msgspec cannot bound those, so they take the loose path in _protocol.)
_Id = str | Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None
_Type = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TYPE_LENGTH)]
#: A message's address (``"to"``): a non-empty string, or absent.
_To = Annotated[str, msgspec.Meta(min_length=1)] | None


class Envelope(msgspec.Struct, gc=False):
    """A message as decoded from the wire (transient: converted to a Message at once).

    ``gc=False``: envelopes are created per message, never stored, and can
    hold no reference to themselves, so the cycle collector need not track them.
    """

    type: _Type
    id: _Id = None
    data: Any = None
    to: _To = None


class Frame(msgspec.Struct, gc=False):
    """A whole frame: one message, or a batch frame (``type == "batch"``) with ``messages``."""

    type: _Type
    id: _Id = None
    data: Any = None
    to: _To = None
    messages: list[Envelope] | None = None


_frame_decoder = msgspec.json.Decoder(Frame)


def decode_frame(data: bytes | bytearray | memoryview | str) -> Frame:
    """Decode a frame whose envelope (and every batch member's) is well-formed.

    Raises:
        DecodeError: Not JSON, or some envelope is not well-formed; the
            caller then decodes it loosely to say which part is wrong.
    """
    try:
        return _frame_decoder.decode(data)
    except (UnicodeError, RecursionError) as exc:  # msgspec lets these through
        raise DecodeError(str(exc)) from exc


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON.

    Raises:
        EncodeError: ``value`` holds something JSON cannot represent.
    """
    try:
        return _encoder.encode(value)
    except (TypeError, UnicodeError, msgspec.EncodeError, OverflowError, RecursionError) as exc:
        raise EncodeError(str(exc)) from exc


def encode_into(value: Any, buffer: bytearray, offset: int = 0) -> None:
    """Encode ``value`` into ``buffer`` from ``offset`` on, resizing it as needed.

    The buffer ends right after the encoded value. Reusing one buffer saves
    allocating a new ``bytes`` per frame (see the mempool plugin).

    Raises:
        EncodeError: As :func:`dumps`.
    """
    try:
        _encoder.encode_into(value, buffer, offset)
    except (TypeError, UnicodeError, msgspec.EncodeError, OverflowError, RecursionError) as exc:
        raise EncodeError(str(exc)) from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode one JSON document.

    Raises:
        DecodeError: Not valid UTF-8 JSON.
    """
    try:
        return _decoder.decode(data)
    except (UnicodeError, RecursionError) as exc:
        raise DecodeError(str(exc)) from exc


def pretty(value: Any) -> str:
    """``value`` as JSON indented by two spaces, for people."""
    return msgspec.json.format(dumps(value), indent=2).decode()
