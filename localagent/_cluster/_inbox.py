"""The inbox: messages other agents' clients sent to this agent (or to its peers).

:class:`Inbox` reads this agent's inbox stream in batches, verifies each
request, drops copies (a request seen before, or answered by an earlier run),
and handles each in a task as if it came from a connection of this agent: a
:class:`RemoteSender`, whose replies go back to the sender agent's replies
stream. The requests of one sender share a :class:`RemotePeer` (its state and
close callbacks); ``cluster.cancel`` from its agent ends them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import msgspec
from localagent_hookspecs import CloseCallback, Message, MessageError, SendFunc

from .. import _codec
from .._connection import ConnectionBase, run_callbacks
from .._protocol import Message as Parsed
from .._redis_cluster import through_failover
from ..exceptions import ConnectionLost
from ._entries import (
    EntryError,
    RejectedEntry,
    ReplayedEntry,
    Reply,
    Request,
    decode_requests,
    encode_replies,
    flat,
    is_final_reply,
)
from ._names import Address
from ._outbox import Batch, Outbox
from ._replay import ReplayGuard
from ._signing import MAX_SKEW_SECONDS

if TYPE_CHECKING:
    import redis.asyncio

    from ._node import ClusterNode

__all__ = ["CANCEL_TYPE", "UNREACHABLE", "Inbox", "RemotePeer", "RemoteSender"]

logger = logging.getLogger("localagent.cluster")

#: The error code of a message for an agent or a peer that is not there.
UNREACHABLE: Final = "unreachable"
#: The message an agent sends to the agents that run its client's routed work when that
#: client disconnects: they cancel it (an ``exec`` process is killed). A client may send it
#: too (``to`` an agent): it cancels its own routed work there.
CANCEL_TYPE: Final = "cluster.cancel"
#: Remote messages handled at once; the inbox is not read further meanwhile.
MAX_HANDLING: Final = 256
#: How long a "request handled" record is kept (deduplicates re-delivered entries).
DONE_SECONDS: Final = 24 * 3600
#: Replies kept for a sender that never reads them (a sender gone for good).
MAX_REPLIES: Final = 100_000


class _Entry:
    """An inbox entry being handled: acknowledged once none of its requests is left."""

    __slots__ = ("id", "left")

    def __init__(self, entry_id: bytes, left: int) -> None:
        self.id = entry_id
        self.left = left


class RemotePeer:
    """A client of another agent, as this agent sees it across its routed requests.

    The requests from one sender share its ``state`` (so a handler's
    per-connection limits, like ``exec``'s ``max_per_connection``, hold across
    them) and its close callbacks, which run when the sender goes away (a
    ``cluster.cancel`` from its agent) or its last request here ends.

    Attributes:
        id: The sender's address, ``AGENT/CONNID``.
        tasks: The handlers of its requests running here.
        cancelled: Whether its agent said it went away.
    """

    __slots__ = ("_callbacks", "cancelled", "id", "state", "tasks")

    def __init__(self, address: str) -> None:
        self.id = address
        self.state: dict[str, Any] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.cancelled = False
        self._callbacks: list[CloseCallback] = []

    def on_close(self, callback: CloseCallback) -> None:
        self._callbacks.append(callback)

    async def close(self) -> None:
        """Run the close callbacks once (failures are logged: nobody else would hear)."""
        callbacks, self._callbacks = self._callbacks, []
        await run_callbacks(callbacks, self._close_failed)

    def _close_failed(self, exc: Exception) -> None:
        logger.error("cluster: a close callback for %s failed", self.id, exc_info=exc)


class RemoteSender(ConnectionBase):
    """The :class:`~localagent_hookspecs.Connection` of a client of another agent.

    Handlers of this agent see it as the connection a forwarded message
    arrived on. What they (or the runtime) send on it goes back to the sender
    agent's replies stream; the sender relays it to its client.

    Attributes:
        id: The sender's address, ``AGENT/CONNID``.
        answered: Whether the final reply was sent.
    """

    __slots__ = (
        "_inbox",
        "answered",
        "entry",
        "peer",
        "remote_address",
        "request",
        "sent",
        "started",
        "state",
    )

    outbound = False
    origin = None

    def __init__(self, inbox: Inbox, request: Request, entry: _Entry, peer: RemotePeer) -> None:
        self._inbox = inbox
        self.request = request
        self.entry = entry
        self.peer = peer
        self.id = request.sender
        self.remote_address: str | None = None
        self.state = peer.state  # shared by the sender's requests
        self.answered = False
        self.sent = 0  # replies written so far: the next one's seq
        self.started = False  # whether its handler ran at all (see Inbox._handled)
        self.send_path: SendFunc = self._send
        self._close_callbacks: list[CloseCallback] = []
        self._report = None

    @property
    def closed(self) -> bool:
        return self.answered or self.peer.cancelled

    def on_close(self, callback: CloseCallback) -> None:
        """Run ``callback`` when the sender goes away (or its last request here ends)."""
        self.peer.on_close(callback)

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.send_path(message)

    async def _send(self, message: Mapping[str, Any]) -> None:
        if self.answered:
            raise ConnectionLost(f"request {self.request.uid} was already answered")
        if self.peer.cancelled:
            raise ConnectionLost(f"{self.id} went away")
        final = is_final_reply(message, self.request.id)
        await self._inbox.send_reply(self, dict(message), final=final)
        self.answered = final

    async def send_frame(self, frame: bytes | bytearray | memoryview) -> None:
        await self._send(_codec.loads(frame))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """A remote sender cannot be closed from here; the request just ends."""
        await self.run_close_callbacks()


class Inbox:
    """Handles the requests in this agent's inbox stream and writes their replies back.

    Args:
        node: The cluster node (its name, keys, signer, Redis, runtime).
    """

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._handling = asyncio.Semaphore(MAX_HANDLING)
        # Replays: the request numbers seen from each sender (a sliding window).
        # Requests signed before this node started may have been handled by an
        # earlier run: for those, the "handled" records in Redis decide.
        self._replays = ReplayGuard()
        #: The clients of other agents with requests running here, by address.
        self._peers: dict[str, RemotePeer] = {}
        #: Replies for each sender agent, several per entry (see _outbox.py).
        self._replies: Outbox[tuple[Reply, RemoteSender]] = Outbox(
            self._write_replies,
            lambda callback: node.pipe.before_flush(callback),
            self._reply_entry,
            self._replies_queued,
        )

    def forget_before(self, when: float) -> None:
        """Forget the requests signed before ``when``: they would be rejected as expired."""
        self._replays.forget_before(when)

    async def consume(self, reader: redis.asyncio.Redis) -> None:
        """Read this agent's inbox stream and handle each request in a task, forever."""
        node = self.node
        assert node.name is not None
        await node.joined.wait()
        name, signer = node.name, node.signer
        stream, group = node.keys.inbox(name), node.keys.group
        # Requests signed since this node started can only have been handled by it: the
        # request numbers it saw tell a copy. Older ones (and the entries this agent read
        # before a restart, which come first) may have been answered by an earlier run:
        # the "handled" records tell (a reply written, the acknowledgement lost), as they
        # do for a number too far below its sender's highest. A sender's clock may run
        # ahead: "since" counts from a skew's length after the start.
        fresh_since = node.started + MAX_SKEW_SECONDS
        async for batch, recovered in node.group_entries(reader, stream):
            now = time.time()
            requests: list[tuple[_Entry, Request]] = []
            dropped: list[bytes] = []
            for entry_id, fields in batch:
                if fields is None:  # trimmed away meanwhile: nothing left to handle
                    dropped.append(entry_id)
                    continue
                try:
                    decoded = decode_requests(fields, signer, name, now)
                except RejectedEntry as exc:
                    node.reject(exc, "an inbox entry")
                    dropped.append(entry_id)
                    continue
                except EntryError as exc:
                    logger.warning("cluster: dropped a malformed inbox entry: %s", exc)
                    dropped.append(entry_id)
                    continue
                entry = _Entry(entry_id, len(decoded))
                requests.extend((entry, request) for request in decoded)
            if dropped:
                node.pipe.fire_last(("XACK", stream, group), dropped)
            if recovered:
                requests = await self._not_done(requests)
            for entry, request in requests:
                new = self._replays.check(request.uid, now)
                if new is False:
                    node.reject(ReplayedEntry(f"request {request.uid} again"), "an inbox entry")
                    self._settle(entry)
                    continue
                if request.type == CANCEL_TYPE and request.id is None:
                    self._settle(entry)
                    await self._cancel(request.sender)
                    continue
                # Checked in the task, so that the reader goes on meanwhile.
                check = not recovered and (new is None or request.signed_at < fresh_since)
                peer = self._peers.get(request.sender)
                if peer is None:
                    peer = self._peers[request.sender] = RemotePeer(request.sender)
                await self._handling.acquire()
                sender = RemoteSender(self, request, entry, peer)
                task = asyncio.get_running_loop().create_task(self._handle(sender, check))
                node.runtime.in_flight.add(task)  # a graceful shutdown waits for it
                node.tasks.add(task)
                peer.tasks.add(task)
                task.add_done_callback(partial(self._handled, sender))

    def _settle(self, entry: _Entry) -> None:
        """One request of ``entry`` is done with: the last one acknowledges the entry."""
        entry.left -= 1
        if not entry.left:
            node = self.node
            assert node.name is not None
            node.pipe.fire_last(("XACK", node.keys.inbox(node.name), node.keys.group), [entry.id])

    def _handled(self, sender: RemoteSender, task: asyncio.Task[None]) -> None:
        """A handler's task ended, whether or not its coroutine ever ran.

        A task cancelled before its first step (its sender went away in the
        read that brought the request) never enters :meth:`_handle`: its slot,
        and its entry like that of a request cancelled while running, are
        settled here.
        """
        node = self.node
        node.runtime.in_flight.discard(task)
        node.tasks.discard(task)
        sender.peer.tasks.discard(task)
        self._handling.release()
        if not sender.started and sender.peer.cancelled:
            self._cancelled(sender)

    def _cancelled(self, sender: RemoteSender) -> None:
        """Its sender went away: the request counts as handled and nothing is sent back."""
        node = self.node
        assert node.name is not None
        node.pipe.fire(
            "SET", node.keys.done(node.name, sender.request.uid), 1, "NX", "EX", DONE_SECONDS
        )
        self._settle(sender.entry)

    async def _cancel(self, sender: str) -> None:
        """``sender`` went away: cancel its requests running here, run its close callbacks."""
        peer = self._peers.pop(sender, None)
        if peer is None:
            return
        peer.cancelled = True
        logger.debug("cluster: %s went away: cancelling %d request(s)", sender, len(peer.tasks))
        for task in list(peer.tasks):
            task.cancel()
        await peer.close()

    async def _not_done(
        self, requests: list[tuple[_Entry, Request]]
    ) -> list[tuple[_Entry, Request]]:
        """The re-delivered requests not answered yet; an entry all answered is acknowledged."""
        node = self.node
        assert node.name is not None
        if not requests:
            return []
        async with node.redis.pipeline(transaction=False) as pipe:
            for _entry, request in requests:
                pipe.exists(node.keys.done(node.name, request.uid))
            done = await pipe.execute()
        left = []
        for (entry, request), seen in zip(requests, done, strict=True):
            if seen:
                self._settle(entry)
            else:
                left.append((entry, request))
        if len(left) < len(requests):
            logger.debug(
                "cluster: %d re-delivered requests were answered before", len(requests) - len(left)
            )
        return left

    async def _handle(self, sender: RemoteSender, check_handled: bool) -> None:
        """Handle one message from the inbox and send its reply back to the sender.

        With ``check_handled`` (signed before this node started), a request that
        has a "handled" record is a copy: rejected instead. Cancelled because
        the sender went away, it is acknowledged and recorded as handled, and
        nothing is sent back.
        """
        node = self.node
        sender.started = True
        request, entry, peer = sender.request, sender.entry, sender.peer
        name = node.name or ""
        try:
            if check_handled and await self._exists(node.keys.done(name, request.uid)):
                node.reject(ReplayedEntry(f"request {request.uid} again"), "an inbox entry")
                self._settle(entry)
                return
            address = node.address(request.to)
            message = Parsed(request.id, request.type, request.data, request.to)
            if address.connection is not None:
                try:
                    result = await self.deliver_to_peer(address, request.sender, message)
                except MessageError as exc:
                    reply = {"id": request.id, "error": {"code": exc.code, "message": exc.message}}
                else:
                    reply = {"id": request.id, "result": result}
                await sender.send(reply)
            else:
                await node.runtime.handle(sender, message)
            if not sender.answered:  # a notification that succeeded: nothing was sent
                await sender.send({"id": request.id, "result": None})
        except ConnectionLost as exc:
            # Redis went away before the reply was written: the entry stays
            # pending and is handled again once the inbox is read afresh.
            logger.debug("cluster: the reply to %s was not written: %s", request.uid, exc)
        except ValueError as exc:
            logger.warning("cluster: dropped a request for a bad address: %s", exc)
            self._settle(entry)
        except Exception:
            logger.exception("cluster: handling %s from %s failed", request.uid, request.sender)
        except asyncio.CancelledError:
            if not peer.cancelled:
                raise  # the agent is stopping: the entry stays pending, handled after a restart
            self._cancelled(sender)
        finally:
            await sender.run_close_callbacks()
            peer.tasks.discard(asyncio.current_task())
            if not peer.tasks and self._peers.get(peer.id) is peer:
                del self._peers[peer.id]  # its last request here: done with it
                await peer.close()

    async def send_reply(self, sender: RemoteSender, message: Any, *, final: bool) -> None:
        """Write what the target sends for a request to the sender's replies stream.

        Replies to the same agent share entries (:class:`~._outbox.Outbox`). A
        message streamed before the reply is written before this returns, so
        the next one cannot overtake it. The final reply's entry goes out in
        one pipeline with the request's "handled" record and, once none of its
        entry's requests is left, the acknowledgement of the inbox entry, in
        that order; this returns once it is queued: if that pipeline fails, the
        entry stays pending and is handled again when the inbox is read afresh
        (after Redis comes back, or a restart). On a Redis Cluster the reply
        entry may go to another node than the record and the acknowledgement:
        it is written first (through a failover), and they follow once it is.

        Raises:
            ConnectionLost: Redis did not take a streamed message.
        """
        node = self.node
        assert node.name is not None
        request = sender.request
        # Encoded here, so that a message JSON cannot carry fails its own request only,
        # not the other replies of its entry; the entry embeds the bytes as they are.
        encoded = msgspec.Raw(_codec.dumps(message))
        reply = Reply(request.uid, final, encoded, node.name, sender.sent)
        sender.sent += 1
        batch = self._replies.put(request.sender_agent, (reply, sender))
        if final:
            return
        try:  # shielded: the batch's other senders wait for the same write
            await asyncio.shield(batch.written)
        except node.errors as exc:
            raise ConnectionLost(f"cannot write to {request.sender}: {exc}") from None

    async def _exists(self, key: str) -> bool:
        """Whether ``key`` exists (asked again through a failover of a Redis Cluster)."""
        node = self.node
        if node.cluster_mode:
            return bool(await through_failover(lambda: node.pipe("EXISTS", key), node.errors))
        return bool(await node.pipe("EXISTS", key))

    def _reply_entry(
        self, agent: str, queued: Sequence[tuple[Reply, RemoteSender]]
    ) -> tuple[Any, ...]:
        """The ``XADD`` of one entry carrying the ``queued`` replies for ``agent``."""
        node = self.node
        assert node.name is not None
        replies = [reply for reply, _sender in queued]
        fields = encode_replies(replies, node.signer, node.name, agent, time.time())
        return ("XADD", node.keys.replies(agent), "MAXLEN", "~", MAX_REPLIES, "*", *flat(fields))

    def _write_replies(self, *command: Any) -> asyncio.Future[Any]:
        """Queue the ``XADD`` of a reply entry (on a Redis Cluster: sent through a failover)."""
        node = self.node
        if node.cluster_mode:  # written once the cluster elected a new primary
            return asyncio.ensure_future(through_failover(lambda: node.pipe(*command), node.errors))
        return node.pipe(*command)

    def _replies_queued(self, batch: Batch[tuple[Reply, RemoteSender]]) -> None:
        """After the entry: the "handled" record of each request answered in it, and the
        acknowledgement of the inbox entries left with no request.

        On one Redis they follow the entry in the same pipeline; on a Redis
        Cluster they may live on another node, so they wait until it is written
        (if it never is, the inbox entry stays pending and is handled again).
        """
        if self.node.cluster_mode:
            batch.written.add_done_callback(
                lambda written: (
                    None
                    if written.cancelled() or written.exception() is not None
                    else self._record_answered(batch)
                )
            )
        else:
            self._record_answered(batch)

    def _record_answered(self, batch: Batch[tuple[Reply, RemoteSender]]) -> None:
        node = self.node
        assert node.name is not None
        for reply, sender in batch.items:
            if reply.final:
                node.pipe.fire(
                    "SET", node.keys.done(node.name, reply.uid), 1, "NX", "EX", DONE_SECONDS
                )
                self._settle(sender.entry)

    async def deliver_to_peer(self, address: Address, sender: str, message: Message) -> Any:
        """Hand ``message`` to the connection ``address`` names, on this agent.

        Raises:
            MessageError: ``unreachable``: no such connection (any more).
        """
        node = self.node
        target = next(
            (c for c in node.runtime.connections if c.id == address.connection and not c.outbound),
            None,
        )
        if target is None or target.closed:
            raise MessageError(UNREACHABLE, f"no peer {address} is connected")
        delivered: dict[str, Any] = {"type": message.type, "data": message.data, "from": sender}
        if message.id is not None:
            delivered["id"] = message.id
        try:
            await target.send(delivered)
        except ConnectionLost:
            raise MessageError(UNREACHABLE, f"peer {address} disconnected") from None
        return {"delivered": True}
