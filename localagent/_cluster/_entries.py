"""What travels through Redis: stream entries, pub/sub payloads, registrations.

Pure code, no I/O. Values are encoded with :mod:`localagent.codec` (JSON).
A request entry has the fields ``uid``, ``from`` (``AGENT/CONNID`` of the
sender), ``to`` and ``msg`` (the message's ``{"id", "type", "data"}``); a
reply entry has ``uid``, ``end`` (``1`` for the final reply, ``0`` for a
message streamed before it) and ``msg`` (the message as the target sent it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .. import _codec

__all__ = [
    "Registration",
    "Reply",
    "Request",
    "decode_event",
    "decode_reply",
    "decode_request",
    "encode_broadcast",
    "encode_presence",
    "is_final_reply",
]

#: Fields of a stream entry as redis-py returns them (bytes keys and values).
Fields = Mapping[bytes, bytes]

_UID, _FROM, _TO, _MSG, _END = b"uid", b"from", b"to", b"msg", b"end"


class EntryError(ValueError):
    """A stream entry or pub/sub payload that is not in the cluster's format."""


@attrs.frozen(slots=True)
class Request:
    """A message forwarded to another agent (or to one of its peers).

    Attributes:
        uid: Unique id of this forwarding (the sender's replies carry it).
        sender: ``AGENT/CONNID`` of the client that sent it.
        to: The address the client gave.
        id: The client's message id (``None`` for a notification).
        type: The message type.
        data: The payload.
    """

    uid: str
    sender: str
    to: str
    id: str | int | None
    type: str
    data: Any = None

    @property
    def sender_agent(self) -> str:
        return self.sender.partition("/")[0]

    def fields(self) -> dict[bytes, bytes]:
        """The stream entry's fields."""
        msg = _codec.dumps({"id": self.id, "type": self.type, "data": self.data})
        return {
            _UID: self.uid.encode(),
            _FROM: self.sender.encode(),
            _TO: self.to.encode(),
            _MSG: msg,
        }


def decode_request(fields: Fields) -> Request:
    """The request in a stream entry.

    Raises:
        EntryError: The entry is not a request of this format.
    """
    try:
        msg = _codec.loads(fields[_MSG])
        msg_id, msg_type = msg["id"], msg["type"]
        if not isinstance(msg_type, str) or not (msg_id is None or isinstance(msg_id, str | int)):
            raise TypeError("bad id or type")
        return Request(
            uid=fields[_UID].decode(),
            sender=fields[_FROM].decode(),
            to=fields[_TO].decode(),
            id=msg_id,
            type=msg_type,
            data=msg.get("data"),
        )
    except (KeyError, TypeError, UnicodeDecodeError, _codec.DecodeError) as exc:
        raise EntryError(f"not a request entry: {exc!r}") from None


@attrs.frozen(slots=True)
class Reply:
    """A message the target sent back for one request.

    Attributes:
        uid: The request's uid.
        final: The reply itself (``True``) or a message streamed before it.
        message: The message, as the target's handler or runtime sent it.
    """

    uid: str
    final: bool
    message: Any

    def fields(self) -> dict[bytes, bytes]:
        """The stream entry's fields."""
        return {
            _UID: self.uid.encode(),
            _END: b"1" if self.final else b"0",
            _MSG: _codec.dumps(self.message),
        }


def decode_reply(fields: Fields) -> Reply:
    """The reply in a stream entry.

    Raises:
        EntryError: The entry is not a reply of this format.
    """
    try:
        return Reply(fields[_UID].decode(), fields[_END] == b"1", _codec.loads(fields[_MSG]))
    except (KeyError, UnicodeDecodeError, _codec.DecodeError) as exc:
        raise EntryError(f"not a reply entry: {exc!r}") from None


def is_final_reply(message: Any, request_id: str | int | None) -> bool:
    """Whether ``message``, sent for the request ``request_id``, is its reply.

    The rule :class:`localagent.Client` applies too: a reply has the
    request's id and a ``result`` or an ``error``; anything else sent before
    it (streamed output, events) is not.
    """
    return (
        type(message) is dict
        and message.get("id") == request_id
        and ("result" in message or "error" in message)
    )


#: Kinds of pub/sub payloads.
BROADCAST_KIND: Final = "broadcast"
JOIN_KIND: Final = "join"
LEAVE_KIND: Final = "leave"


def encode_broadcast(sender: str, message_type: str, data: Any) -> bytes:
    """A broadcast from ``sender`` (``AGENT/CONNID``) for every peer of every agent."""
    return _codec.dumps(
        {"kind": BROADCAST_KIND, "from": sender, "type": message_type, "data": data}
    )


def encode_presence(kind: str, agent: str) -> bytes:
    """``join`` or ``leave`` of ``agent``."""
    return _codec.dumps({"kind": kind, "agent": agent})


def decode_event(payload: bytes) -> dict[str, Any]:
    """A pub/sub payload: a broadcast or a presence event (``kind`` says which).

    Raises:
        EntryError: It is not one.
    """
    try:
        event = _codec.loads(payload)
    except _codec.DecodeError as exc:
        raise EntryError(f"not a cluster event: {exc}") from None
    if type(event) is not dict or event.get("kind") not in (BROADCAST_KIND, JOIN_KIND, LEAVE_KIND):
        raise EntryError(f"not a cluster event: {event!r}")
    if event["kind"] == BROADCAST_KIND and not (type(event.get("from")) is str and event["from"]):
        # Relayed to clients, a broadcast must say who sent it: without "from" a
        # client could take it for part of one of its own requests.
        raise EntryError(f"a broadcast without a sender: {event!r}")
    return event


@attrs.frozen(kw_only=True)
class Registration:
    """What an agent registers about itself (the value in the ``agents`` hash).

    Attributes:
        name: Its name in the cluster.
        url: ``ws://host:port`` it listens on.
        pid: Its process id.
        hostname: The machine it runs on.
        started: When it started (Unix time).
        heartbeat: Its last heartbeat (Unix time).
    """

    name: str
    url: str
    pid: int
    hostname: str
    started: float
    heartbeat: float

    def encode(self) -> bytes:
        return _codec.dumps(attrs.asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> Registration:
        """Raises: EntryError: Not a registration."""
        try:
            value = _codec.loads(raw)
            return cls(**{field.name: value[field.name] for field in attrs.fields(cls)})
        except (KeyError, TypeError, _codec.DecodeError) as exc:
            raise EntryError(f"not a registration: {exc!r}") from None
