"""What travels through Redis: stream entries, pub/sub payloads, registrations.

Pure code, no I/O. Values are encoded with :mod:`localagent.codec` (JSON).
An entry carries one or more messages between two agents, with one MAC: an
inbox (request) entry has the fields ``from`` (the sending agent), ``ts``
(when it was signed, Unix milliseconds), ``msg`` (a JSON list of requests,
each ``{"uid", "from", "to", "id", "type", "data"}``, ``from`` being
``AGENT/CONNID`` of the client, of the sending agent) and ``mac``; a reply
entry has ``from`` (the agent that answers), ``ts``, ``msg`` (a JSON list of
``{"uid", "end", "seq", "msg"}``: the request's uid, ``true`` for the final
reply and ``false`` for a message streamed before it, its place among the
request's replies from 0, the message as the target sent it) and ``mac``.
The ``mac`` (:class:`~._signing.Signer`) covers the entry's kind, the agent
whose stream holds it, ``from``, ``ts`` and ``msg``; what fails it, or is too
old, is rejected as a whole (:class:`RejectedEntry`), never handled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from .. import _codec
from ._signing import MAX_AGE_SECONDS, MAX_SKEW_SECONDS, Signer

__all__ = [
    "EVENT_MAX_AGE_SECONDS",
    "EntryError",
    "ExpiredEntry",
    "ForgedEntry",
    "Registration",
    "RejectedEntry",
    "ReplayedEntry",
    "Reply",
    "Request",
    "decode_event",
    "decode_replies",
    "decode_requests",
    "encode_broadcast",
    "encode_presence",
    "encode_replies",
    "encode_requests",
    "flat",
    "is_final_reply",
]

#: Fields of a stream entry as redis-py returns them (bytes keys and values).
Fields = Mapping[bytes, bytes]

_FROM, _TS, _MSG, _MAC = b"from", b"ts", b"msg", b"mac"
_REQUEST, _REPLY, _EVENT = b"request", b"reply", b"event"

#: How old a broadcast or presence event may be (pub/sub delivers at once or never).
EVENT_MAX_AGE_SECONDS: Final = 60.0


def flat(fields: Fields) -> list[bytes]:
    """``fields`` as the names and values, alternating, that ``XADD`` takes."""
    return [part for pair in fields.items() for part in pair]


class EntryError(ValueError):
    """A stream entry or pub/sub payload that is not in the cluster's format."""


class RejectedEntry(EntryError):
    """An entry no agent of this cluster wrote for this agent, now: never handled."""


class ForgedEntry(RejectedEntry):
    """Its MAC is missing or wrong: not signed with the cluster's secret, or altered."""


class ExpiredEntry(RejectedEntry):
    """Signed too long ago (or too far in the future) to tell it from a replay."""


class ReplayedEntry(RejectedEntry):
    """A copy of an entry that was handled already."""


def _millis(seconds: float) -> bytes:
    return str(int(seconds * 1000)).encode()


def _signed_at(raw: bytes, now: float, max_age: float) -> float:
    """The signing time in a ``ts`` field, checked against ``now``.

    Raises:
        ExpiredEntry: Older than ``max_age`` or too far in the future.
    """
    signed = int(raw) / 1000
    if signed < now - max_age:
        raise ExpiredEntry(f"signed {now - signed:.0f} s ago (at most {max_age:g} s)")
    if signed > now + MAX_SKEW_SECONDS:
        raise ExpiredEntry(f"signed {signed - now:.0f} s in the future")
    return signed


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
        signed_at: When its entry was signed (Unix time; set when read).
    """

    uid: str
    sender: str
    to: str
    id: str | int | None
    type: str
    data: Any = None
    signed_at: float = 0.0

    @property
    def sender_agent(self) -> str:
        return self.sender.partition("/")[0]

    def fields(self, signer: Signer, target: str) -> dict[bytes, bytes]:
        """An entry holding this request alone, signed (at ``signed_at``) for ``target``'s inbox."""
        return encode_requests([self], signer, self.sender_agent, target, self.signed_at)


def encode_requests(
    requests: Sequence[Request], signer: Signer, sender: str, target: str, now: float
) -> dict[bytes, bytes]:
    """One inbox entry carrying ``requests`` (all from agent ``sender``), signed for ``target``."""
    msg = _codec.dumps(
        [
            {
                "uid": r.uid,
                "from": r.sender,
                "to": r.to,
                "id": r.id,
                "type": r.type,
                "data": r.data,
            }
            for r in requests
        ]
    )
    agent, ts = sender.encode(), _millis(now)
    mac = signer.sign(_REQUEST, target.encode(), agent, ts, msg)
    return {_FROM: agent, _TS: ts, _MSG: msg, _MAC: mac}


def _verified(
    fields: Fields, signer: Signer, kind: bytes, target: str
) -> tuple[bytes, bytes, bytes]:
    """``from``, ``ts`` and ``msg`` of an entry whose MAC is right for ``target``'s stream.

    Raises:
        ForgedEntry: A field is missing, or the MAC is wrong.
    """
    try:
        agent, ts, msg, mac = fields[_FROM], fields[_TS], fields[_MSG], fields[_MAC]
    except KeyError as exc:
        raise ForgedEntry(
            f"not a signed {kind.decode()} entry: no field {exc.args[0].decode()!r}"
        ) from None
    if not signer.verify(mac, kind, target.encode(), agent, ts, msg):
        raise ForgedEntry(f"a {kind.decode()} entry with a wrong MAC")
    return agent, ts, msg


def _list(msg: bytes) -> list[Any]:
    items = _codec.loads(msg)
    if type(items) is not list or not items:
        raise TypeError("not a non-empty list")
    return items


def decode_requests(fields: Fields, signer: Signer, target: str, now: float) -> list[Request]:
    """The requests in a stream entry of agent ``target``'s inbox, verified.

    Raises:
        ForgedEntry: Not signed with the cluster's secret for this inbox.
        ExpiredEntry: Signed too long ago.
        EntryError: Signed, but not a request entry of this format.
    """
    raw_agent, ts, msg = _verified(fields, signer, _REQUEST, target)
    try:
        signed_at = _signed_at(ts, now, MAX_AGE_SECONDS)
        prefix = raw_agent.decode() + "/"
        requests = []
        for item in _list(msg):
            uid, sender, to = item["uid"], item["from"], item["to"]
            msg_id, msg_type = item["id"], item["type"]
            if not (
                type(uid) is str
                and type(sender) is str
                and sender.startswith(prefix)
                and type(to) is str
                and type(msg_type) is str
                and (msg_id is None or type(msg_id) is str or type(msg_id) is int)
            ):
                raise TypeError(f"bad request {item!r:.200}")
            requests.append(Request(uid, sender, to, msg_id, msg_type, item.get("data"), signed_at))
        return requests
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, _codec.DecodeError) as exc:
        if isinstance(exc, ExpiredEntry):
            raise
        raise EntryError(f"not a request entry: {exc!r}") from None


@attrs.frozen(slots=True)
class Reply:
    """A message the target sent back for one request.

    Attributes:
        uid: The request's uid.
        final: The reply itself (``True``) or a message streamed before it.
        message: The message, as the target's handler or runtime sent it.
        responder: The agent that answers.
        seq: Its place among the request's replies, from 0.
        signed_at: When its entry was signed (Unix time; set when read).
    """

    uid: str
    final: bool
    message: Any
    responder: str = ""
    seq: int = 0
    signed_at: float = 0.0

    def fields(self, signer: Signer, target: str) -> dict[bytes, bytes]:
        """An entry holding this reply alone, signed (at ``signed_at``) for ``target``'s replies."""
        return encode_replies([self], signer, self.responder, target, self.signed_at)


def encode_replies(
    replies: Sequence[Reply], signer: Signer, responder: str, target: str, now: float
) -> dict[bytes, bytes]:
    """One replies-stream entry carrying ``replies`` (from agent ``responder``), for ``target``."""
    msg = _codec.dumps(
        [{"uid": r.uid, "end": r.final, "seq": r.seq, "msg": r.message} for r in replies]
    )
    agent, ts = responder.encode(), _millis(now)
    mac = signer.sign(_REPLY, target.encode(), agent, ts, msg)
    return {_FROM: agent, _TS: ts, _MSG: msg, _MAC: mac}


def decode_replies(fields: Fields, signer: Signer, target: str, now: float) -> list[Reply]:
    """The replies in a stream entry of agent ``target``'s replies stream, verified.

    Raises:
        ForgedEntry: Not signed with the cluster's secret for this stream.
        ExpiredEntry: Signed too long ago.
        EntryError: Signed, but not a reply entry of this format.
    """
    raw_agent, ts, msg = _verified(fields, signer, _REPLY, target)
    try:
        signed_at = _signed_at(ts, now, MAX_AGE_SECONDS)
        responder = raw_agent.decode()
        replies = []
        for item in _list(msg):
            uid, end, seq = item["uid"], item["end"], item["seq"]
            if not (type(uid) is str and type(end) is bool and type(seq) is int and seq >= 0):
                raise TypeError(f"bad reply {item!r:.200}")
            replies.append(Reply(uid, end, item["msg"], responder, seq, signed_at))
        return replies
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, _codec.DecodeError) as exc:
        if isinstance(exc, ExpiredEntry):
            raise
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


def _signed_event(signer: Signer, event: dict[str, Any], now: float) -> bytes:
    payload = _codec.dumps({**event, "ts": int(now * 1000)})
    return signer.sign(_EVENT, payload).hex().encode() + b" " + payload


def encode_broadcast(
    signer: Signer, sender: str, message_type: str, data: Any, now: float
) -> bytes:
    """A broadcast from ``sender`` (``AGENT/CONNID``) for every peer of every agent, signed."""
    event = {"kind": BROADCAST_KIND, "from": sender, "type": message_type, "data": data}
    return _signed_event(signer, event, now)


def encode_presence(signer: Signer, kind: str, agent: str, now: float) -> bytes:
    """``join`` or ``leave`` of ``agent``, signed."""
    return _signed_event(signer, {"kind": kind, "agent": agent}, now)


def decode_event(payload: bytes, signer: Signer, now: float) -> dict[str, Any]:
    """A pub/sub payload: a broadcast or a presence event (``kind`` says which), verified.

    Raises:
        ForgedEntry: Not signed with the cluster's secret.
        ExpiredEntry: Older than :data:`EVENT_MAX_AGE_SECONDS`.
        EntryError: Signed, but not an event of this format.
    """
    mac_hex, _, body = payload.partition(b" ")
    try:
        mac = bytes.fromhex(mac_hex.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ForgedEntry("a pub/sub payload without a MAC") from None
    if not signer.verify(mac, _EVENT, body):
        raise ForgedEntry("a pub/sub payload with a wrong MAC")
    try:
        event = _codec.loads(body)
    except _codec.DecodeError as exc:
        raise EntryError(f"not a cluster event: {exc}") from None
    if type(event) is not dict or event.get("kind") not in (BROADCAST_KIND, JOIN_KIND, LEAVE_KIND):
        raise EntryError(f"not a cluster event: {event!r}")
    try:
        _signed_at(str(event["ts"]).encode(), now, EVENT_MAX_AGE_SECONDS)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, ExpiredEntry):
            raise
        raise EntryError(f"not a cluster event: {exc!r}") from None
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
        rejected: Entries and payloads it rejected since it started: forged,
            expired or replayed (what Redis holds is not signed: a display only).
    """

    name: str
    url: str
    pid: int
    hostname: str
    started: float
    heartbeat: float
    rejected: int = 0

    def encode(self) -> bytes:
        return _codec.dumps(attrs.asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> Registration:
        """Raises: EntryError: Not a registration."""
        try:
            value = _codec.loads(raw)
            return cls(
                **{
                    field.name: value[field.name]
                    for field in attrs.fields(cls)
                    if field.name in value or field.default is attrs.NOTHING
                }
            )
        except (KeyError, TypeError, _codec.DecodeError) as exc:
            raise EntryError(f"not a registration: {exc!r}") from None
