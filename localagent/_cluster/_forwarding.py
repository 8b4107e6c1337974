"""Forwarding: this agent's clients send messages to other agents of the cluster.

A message addressed to another agent goes to that agent's inbox stream as a
signed request; :class:`Forwarder` waits for what comes back on this agent's
replies stream (streamed messages, then the reply), in order and from the
agent asked only. When a client with routed work goes away, the agents
running that work are told to cancel it (``cluster.cancel``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from localagent_hookspecs import Connection, Message, MessageError

from .._protocol import INVALID_MESSAGE
from ._entries import (
    EntryError,
    RejectedEntry,
    ReplayedEntry,
    Reply,
    Request,
    decode_replies,
    encode_broadcast,
    encode_requests,
    flat,
)
from ._inbox import CANCEL_TYPE, UNREACHABLE
from ._names import Address, safe_url
from ._outbox import Outbox

if TYPE_CHECKING:
    import redis.asyncio

    from ._node import ClusterNode

__all__ = ["TIMEOUT", "UNAVAILABLE", "Forwarder"]

logger = logging.getLogger("localagent.cluster")

#: Error codes of routed messages (besides ``unreachable``).
UNAVAILABLE: Final = "unavailable"
TIMEOUT: Final = "timeout"

#: Where a client connection keeps the agents running its routed work (``state`` key).
_TARGETS: Final = "cluster.targets"


class _Unwritten(Exception):
    """The request's entry was not written (``error`` says why): it fails the request."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _Waiter:
    """A forwarded request waiting for what the target sends back, in order.

    Cheaper than an ``asyncio.Queue`` and a timer per request: the replies
    reader appends and wakes it; :meth:`Forwarder.expire` fails the waiters
    whose deadline passed, checked a few times a second.
    """

    __slots__ = ("agent", "deadline", "error", "items", "next_seq", "wakeup")

    def __init__(self, agent: str, deadline: float) -> None:
        self.agent = agent  # the agent asked: the only one whose replies count
        self.deadline = deadline
        self.next_seq = 0
        self.items: collections.deque[Reply] = collections.deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.error: BaseException | None = None

    def put(self, reply: Reply) -> None:
        """Take ``reply``, the next one from the agent asked.

        Raises:
            RejectedEntry: It comes from another agent, or out of order (a copy).
        """
        if reply.responder != self.agent:
            raise RejectedEntry(f"a reply from {reply.responder!r}, asked {self.agent!r}")
        if reply.seq != self.next_seq:
            raise ReplayedEntry(f"reply {reply.seq} of a request, expected {self.next_seq}")
        self.next_seq += 1
        self.items.append(reply)
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def get(self) -> Reply:
        """The next reply (raises ``TimeoutError`` once the deadline has passed, or
        the Redis error that kept the request's entry from being written)."""
        while not self.items:
            if self.error is not None:
                raise self.error
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        return self.items.popleft()

    def expire(self) -> None:
        self.fail(TimeoutError())

    def fail(self, error: BaseException) -> None:
        """Wake the request with ``error`` (its deadline passed, or its entry was not written)."""
        self.error = error
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_exception(error)


#: A request queued for an inbox entry, and its waiter (none for a ``cluster.cancel``).
_Queued = tuple[Request, "_Waiter | None"]


def _fail_unwritten(queued: list[_Queued], future: asyncio.Future[Any]) -> None:
    """The ``XADD`` of the requests' entry is done: a failure fails the requests."""
    if not future.cancelled() and (error := future.exception()) is not None:
        for _request, waiter in queued:
            if waiter is not None:
                waiter.fail(_Unwritten(error))


class Forwarder:
    """Sends this agent's clients' messages to other agents and waits for their replies.

    Args:
        node: The cluster node (its name, keys, signer, Redis).
        timeout: Seconds a forwarded message waits for its reply.
    """

    def __init__(self, node: ClusterNode, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        # TOKEN-N: one random token per process, numbers counting up (see _replay.py:
        # a receiver keeps one window per token, so a token per request would make
        # its memory grow with the traffic for as long as entries stay valid).
        token = secrets.token_hex(6)
        self._uids = (f"{token}-{n}" for n in itertools.count(1))
        self._waiting: dict[str, _Waiter] = {}
        #: Requests for each target agent, several per inbox entry (see _outbox.py).
        self._outbox: Outbox[_Queued] = Outbox(
            lambda *command: node.pipe(*command),
            lambda callback: node.pipe.before_flush(callback),
            self._entry,
        )

    def _entry(self, agent: str, queued: Sequence[_Queued]) -> tuple[Any, ...]:
        """The ``XADD`` of one inbox entry carrying the ``queued`` requests for ``agent``."""
        node = self.node
        assert node.name is not None
        requests = [request for request, _waiter in queued]
        fields = encode_requests(requests, node.signer, node.name, agent, time.time())
        return ("XADD", node.keys.inbox(agent), "*", *flat(fields))

    def _send(self, agent: str, request: Request, waiter: _Waiter | None) -> None:
        """Queue ``request`` for ``agent``'s inbox; a failure to write it fails ``waiter``."""
        batch = self._outbox.put(agent, (request, waiter))
        if len(batch.items) == 1:
            batch.written.add_done_callback(functools.partial(_fail_unwritten, batch.items))

    def next_uid(self) -> str:
        """A request id no other request of this process has."""
        return next(self._uids)

    def expire(self, now: float) -> None:
        """Fail the forwarded requests whose reply did not come by ``now`` (monotonic)."""
        for waiter in list(self._waiting.values()):
            if waiter.deadline <= now:
                waiter.expire()

    async def forward(self, connection: Connection, message: Message, to: str) -> Any:
        """Deliver ``message`` to ``to``; return the result (or raise its error).

        Raises:
            MessageError: ``invalid_message`` (not an address), ``unreachable``
                (no such live agent, or no such peer), ``unavailable``
                (Redis is down, or the cluster is not joined yet), ``timeout``
                (no reply in time: the message stays queued), or the remote
                handler's own error.
        """
        node = self.node
        try:
            address = node.address(to)
        except ValueError as exc:
            raise MessageError(INVALID_MESSAGE, str(exc)) from None
        name = node.name
        if name is None or not node.joined.is_set():
            raise MessageError(UNAVAILABLE, "this agent has not joined its cluster yet")
        sender = f"{name}/{connection.id}"
        try:
            if address.is_broadcast:
                payload = encode_broadcast(
                    node.signer, sender, message.type, message.data, time.time()
                )
                published = await node.pipe("PUBLISH", node.keys.broadcast, payload)
                return {"published": int(published)}
            if address.agent == name:  # a peer of this agent
                return await node.inbox.deliver_to_peer(address, sender, message)
            assert address.agent is not None
            if address.agent not in node.live and not await node.is_live(address.agent):
                raise MessageError(
                    UNREACHABLE,
                    f"no agent {address.agent!r} is live in cluster {node.keys.cluster!r}",
                )
            uid = self.next_uid()
            request = Request(uid, sender, to, message.id, message.type, message.data, time.time())
            waiter = _Waiter(address.agent, time.monotonic() + self.timeout)
            self._waiting[request.uid] = waiter
            targets = self._targets(connection)
            targets[address.agent] += 1
            try:
                # Not awaited on its own: the reply cannot come before the entry is
                # written, and a failure to write it wakes the waiter.
                self._send(address.agent, request, waiter)
                try:
                    answer = await self._await_reply(connection, message, address, waiter)
                except _Unwritten as unwritten:
                    raise unwritten.error from None
            except asyncio.CancelledError:
                # The client went away (or the agent stops): the target stays counted,
                # so the connection's close tells it to cancel the work.
                raise
            except BaseException:
                self._untarget(targets, address.agent)
                raise
            finally:
                del self._waiting[request.uid]
            self._untarget(targets, address.agent)
            return answer
        except node.errors as exc:
            raise MessageError(
                UNAVAILABLE, f"the cluster's Redis at {safe_url(node.url)} is unavailable: {exc}"
            ) from None

    def _targets(self, connection: Connection) -> collections.Counter[str]:
        """The agents running ``connection``'s routed work, told to cancel it when it closes."""
        targets = connection.state.get(_TARGETS)
        if targets is None:
            targets = connection.state[_TARGETS] = collections.Counter()
            sender = f"{self.node.name}/{connection.id}"
            connection.on_close(lambda: self._cancel_at(sender, targets))
        return targets

    @staticmethod
    def _untarget(targets: collections.Counter[str], agent: str) -> None:
        targets[agent] -= 1
        if not targets[agent]:
            del targets[agent]

    def _cancel_at(self, sender: str, targets: collections.Counter[str]) -> None:
        """Tell the agents running ``sender``'s routed work that it went away."""
        for agent in list(targets):
            request = Request(self.next_uid(), sender, agent, None, CANCEL_TYPE, None, time.time())
            try:  # after the requests queued for that agent: in the same or a later entry
                self._send(agent, request, None)
            except Exception as exc:  # shutting down: their timeouts end the work
                logger.debug("cluster: could not cancel %s's work at %s: %r", sender, agent, exc)

    async def _await_reply(
        self, connection: Connection, message: Message, address: Address, waiter: _Waiter
    ) -> Any:
        try:
            while True:
                reply = await waiter.get()
                if reply.final:
                    break
                await connection.send(reply.message)  # streamed before the reply
        except TimeoutError:
            raise MessageError(
                TIMEOUT,
                f"no reply from {address} within {self.timeout:g} s "
                "(the message stays queued for it)",
            ) from None
        answer = reply.message
        error = answer.get("error") if type(answer) is dict else None
        if error is not None:
            if type(error) is not dict:
                raise MessageError("internal_error", f"malformed error reply from {address}")
            raise MessageError(
                str(error.get("code", "error")),
                str(error.get("message", "")),
                details=error.get("details"),
            )
        if message.id is None:
            return True  # a notification: nothing is sent back, but it was handled
        result = answer.get("result") if type(answer) is dict else None
        if result is None:
            raise MessageError("internal_error", f"{address} sent no result")
        return result

    async def consume_replies(self, reader: redis.asyncio.Redis) -> None:
        """Read this agent's replies stream and hand each reply to its waiter, forever."""
        node = self.node
        assert node.name is not None
        await node.joined.wait()
        stream, group = node.keys.replies(node.name), node.keys.group
        name, signer = node.name, node.signer
        async for entries, _recovered in node.group_entries(reader, stream):
            now = time.time()
            for _entry_id, fields in entries:
                if fields is None:
                    continue
                try:
                    for reply in decode_replies(fields, signer, name, now):
                        waiter = self._waiting.get(reply.uid)
                        if waiter is None:
                            logger.debug(
                                "cluster: dropped a reply nobody waits for (%s)", reply.uid
                            )
                            continue
                        try:
                            waiter.put(reply)
                        except RejectedEntry as exc:  # this reply only: the others count
                            node.reject(exc, "a reply")
                except RejectedEntry as exc:
                    node.reject(exc, "a reply entry")
                except EntryError as exc:
                    logger.warning("cluster: dropped a malformed reply entry: %s", exc)
            if entries:
                node.pipe.fire_last(("XACK", stream, group), [entry_id for entry_id, _ in entries])
