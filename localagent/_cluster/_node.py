"""``ClusterNode``: one agent's membership in a cluster, the I/O half (redis-py asyncio).

A node registers its agent (a heartbeat renews a key with an expiry), keeps
its peers' connection ids in Redis, forwards messages addressed elsewhere to
the target agent's inbox stream and waits for the reply on its own replies
stream, consumes its own inbox (in batches, acknowledging each entry once its
reply is written), and relays broadcasts over pub/sub. Redis going away never
stops the agent: forwarding fails with ``unavailable`` meanwhile, and every
loop backs off and resumes alone once Redis answers again.

Redis is not trusted with authority: everything a node writes is signed with
the cluster's secret (:mod:`._signing`), and what it reads is verified first.
An entry that fails (forged, altered, expired, replayed) is acknowledged,
counted, reported to ``on_error`` and logged without its content, at most a
line every few seconds, and never handled nor passed to a client.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from localagent_hookspecs import CloseCallback, Connection, Message, MessageError, SendFunc

from .._autopipeline import AutoPipeline
from .._connection import ConnectionBase, run_callbacks
from .._protocol import INVALID_MESSAGE
from .._protocol import Message as Parsed
from ..exceptions import ConnectionLost
from ._entries import (
    BROADCAST_KIND,
    EVENT_MAX_AGE_SECONDS,
    JOIN_KIND,
    LEAVE_KIND,
    EntryError,
    Registration,
    RejectedEntry,
    ReplayedEntry,
    Reply,
    Request,
    decode_event,
    decode_reply,
    decode_request,
    encode_broadcast,
    encode_presence,
    is_final_reply,
)
from ._names import Address, Keys, parse_address, safe_url
from ._replay import ReplayGuard
from ._signing import MAX_AGE_SECONDS, MAX_SKEW_SECONDS, Signer

if TYPE_CHECKING:
    import redis.asyncio

    from .._runtime import AgentRuntime

__all__ = [
    "BLOCK_SECONDS",
    "HEARTBEAT_SECONDS",
    "LIVENESS_SECONDS",
    "READ_BATCH",
    "TIMEOUT",
    "UNAVAILABLE",
    "UNREACHABLE",
    "ClusterNode",
    "RemoteSender",
]

logger = logging.getLogger("localagent.cluster")

#: Error codes of routed messages.
UNREACHABLE: Final = "unreachable"
UNAVAILABLE: Final = "unavailable"
TIMEOUT: Final = "timeout"

#: Seconds between heartbeats, and how long a registration outlives the last one.
HEARTBEAT_SECONDS: Final = 1.0
LIVENESS_SECONDS: Final = 5.0
#: Entries read per XREADGROUP, and how long one blocks waiting for entries.
READ_BATCH: Final = 100
BLOCK_SECONDS: Final = 1.0
#: Remote messages handled at once; the inbox is not read further meanwhile.
MAX_HANDLING: Final = 256
#: How long a "request handled" record is kept (deduplicates re-delivered entries).
DONE_SECONDS: Final = 24 * 3600
#: Replies kept for a sender that never reads them (a sender gone for good).
MAX_REPLIES: Final = 100_000
#: Seconds between trims of this agent's streams (entries every reader acknowledged).
TRIM_SECONDS: Final = 5.0
#: Seconds between two log lines about rejected entries (the others are counted).
REJECT_LOG_SECONDS: Final = 10.0
#: The message an agent sends to the agents that run its client's routed work when that
#: client disconnects: they cancel it (an ``exec`` process is killed). A client may send it
#: too (``to`` an agent): it cancels its own routed work there.
CANCEL_TYPE: Final = "cluster.cancel"
#: Where a client connection keeps the agents running its routed work (``state`` key).
_TARGETS: Final = "cluster.targets"


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


class _Backoff:
    """Waits growing from 0.1 s to 2 s between attempts while Redis is away."""

    def __init__(self) -> None:
        self.delay = 0.0

    async def wait(self) -> None:
        self.delay = min(2.0, max(0.1, self.delay * 2))
        await asyncio.sleep(self.delay)

    def reset(self) -> None:
        self.delay = 0.0


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
        "_node",
        "answered",
        "entry_id",
        "peer",
        "remote_address",
        "request",
        "sent",
        "state",
    )

    outbound = False
    origin = None

    def __init__(
        self, node: ClusterNode, request: Request, entry_id: bytes, peer: RemotePeer
    ) -> None:
        self._node = node
        self.request = request
        self.entry_id = entry_id
        self.peer = peer
        self.id = request.sender
        self.remote_address: str | None = None
        self.state = peer.state  # shared by the sender's requests
        self.answered = False
        self.sent = 0  # replies written so far: the next one's seq
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
        await self._node.send_reply(self, dict(message), final=final)
        self.answered = final

    async def send_frame(self, frame: bytes | bytearray | memoryview) -> None:
        from .. import _codec

        await self._send(_codec.loads(frame))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """A remote sender cannot be closed from here; the request just ends."""
        await self.run_close_callbacks()


class _Waiter:
    """A forwarded request waiting for what the target sends back, in order.

    Cheaper than an ``asyncio.Queue`` and a timer per request: the replies
    reader appends and wakes it; :meth:`ClusterNode._expire` fails the
    waiters whose deadline passed, checked a few times a second.
    """

    __slots__ = ("agent", "deadline", "items", "next_seq", "wakeup")

    def __init__(self, agent: str, deadline: float) -> None:
        self.agent = agent  # the agent asked: the only one whose replies count
        self.deadline = deadline
        self.next_seq = 0
        self.items: collections.deque[Reply] = collections.deque()
        self.wakeup: asyncio.Future[None] | None = None

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
        """The next reply (raises ``TimeoutError`` once the deadline has passed)."""
        while not self.items:
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        return self.items.popleft()

    def expire(self) -> None:
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_exception(TimeoutError())


class ClusterNode:
    """One agent's membership in cluster ``cluster`` on the Redis at ``redis_url``.

    Args:
        runtime: The agent runtime (dispatches remote messages, holds the
            connections, tells where the server listens).
        cluster: The cluster's name.
        redis_url: The Redis the cluster shares.
        name: This agent's name (default: ``host:port`` it listens on).
        timeout: Seconds a forwarded message waits for its reply.
        secret: The cluster's shared secret (:func:`._signing.read_secret_file`).

    Attributes:
        rejected: Entries and payloads rejected since the start, by kind
            (``ForgedEntry``, ``ExpiredEntry``, ``ReplayedEntry``, ...).
    """

    def __init__(
        self,
        runtime: AgentRuntime,
        *,
        cluster: str,
        redis_url: str,
        secret: bytes,
        name: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        self.runtime = runtime
        self.keys = Keys(cluster)
        self.signer = Signer(cluster, key=secret)
        self.url = redis_url
        self.name: str | None = name
        self.timeout = timeout
        self.errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
            TimeoutError,
        )
        self._response_error = redis.exceptions.ResponseError

        def client(**options: Any) -> redis.asyncio.Redis:
            return redis.asyncio.Redis.from_url(
                redis_url,
                socket_connect_timeout=2.0,
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
                **options,
            )

        # Blocking reads hold a connection each: they get clients of their own.
        self._redis = client(socket_timeout=5.0, max_connections=32)
        self._inbox_reader = client(socket_timeout=BLOCK_SECONDS + 5.0, max_connections=1)
        self._reply_reader = client(socket_timeout=BLOCK_SECONDS + 5.0, max_connections=1)
        self._subscriber = client(socket_timeout=None, max_connections=1)
        self._pipe = AutoPipeline(lambda: self._redis.connection_pool, timeout=5.0)
        self._uids = (f"{secrets.token_hex(6)}-{n}" for n in itertools.count(1))
        self._waiting: dict[str, _Waiter] = {}
        self._live: set[str] = set()
        self._addresses: dict[str, Address] = {}
        self._handling = asyncio.Semaphore(MAX_HANDLING)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = time.time()
        self.joined = asyncio.Event()
        self.rejected: collections.Counter[str] = collections.Counter()
        self._logged_rejects = 0
        self._last_reject_log = -REJECT_LOG_SECONDS
        # Replays: the request numbers seen from each sender (a sliding window), and
        # the MACs of the events relayed within the time an event stays valid.
        # Requests signed before this node started may have been handled by an
        # earlier run: for those, the "handled" records in Redis decide.
        self._replays = ReplayGuard()
        self._seen_events: dict[bytes, float] = {}
        #: The clients of other agents with requests running here, by address.
        self._peers: dict[str, RemotePeer] = {}

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        """Join once the server listens, then serve the cluster until cancelled."""
        url = await self.runtime.wait_listening()
        if self.name is None:
            self.name = url.removeprefix("ws://")
        name = self.name
        logger.info("joining cluster %r as agent %r", self.keys.cluster, name)
        loops = [
            self._warn_if_open(),
            self._loop(self._heartbeat, "heartbeat"),
            self._loop(self._consume_inbox, "inbox"),
            self._loop(self._consume_replies, "replies"),
            self._loop(self._listen, "broadcast"),
            self._expire(),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            await self._leave()

    async def _loop(self, body: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        """Run ``body`` until cancelled; whenever it fails, back off and run it again.

        A failure after a long healthy run starts a new outage: the backoff
        restarts from its shortest wait, and the outage is logged once.
        """
        backoff = _Backoff()
        while True:
            started = time.monotonic()
            try:
                await body()
                return
            except self._response_error as exc:
                if "NOGROUP" not in str(exc):
                    logger.exception("cluster %s failed; retrying", what)
                else:  # the stream or its group vanished (Redis lost its data)
                    logger.warning("cluster %s: %s; recreating the consumer group", what, exc)
            except self.errors as exc:
                if time.monotonic() - started > 2 * HEARTBEAT_SECONDS:
                    backoff.reset()
                if backoff.delay == 0.0:
                    logger.warning(
                        "cluster %s: Redis at %s is unavailable (%s); retrying",
                        what,
                        safe_url(self.url),
                        exc,
                    )
            except Exception:
                logger.exception("cluster %s failed; retrying", what)
            await backoff.wait()

    async def _expire(self) -> None:
        """Fail the forwarded requests whose reply did not come in time; forget old uids."""
        tick = min(0.25, self.timeout / 4)
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for waiter in list(self._waiting.values()):
                if waiter.deadline <= now:
                    waiter.expire()
            if now - last_prune >= HEARTBEAT_SECONDS:
                self._prune_seen(time.time())
                last_prune = now

    def _prune_seen(self, now: float) -> None:
        """Forget what is too old to come back: it would be rejected as expired."""
        self._replays.forget_before(now - MAX_AGE_SECONDS - MAX_SKEW_SECONDS)
        oldest = now - EVENT_MAX_AGE_SECONDS - MAX_SKEW_SECONDS
        self._seen_events = {m: at for m, at in self._seen_events.items() if at >= oldest}

    def _reject(self, error: RejectedEntry, where: str) -> None:
        """Count, report and log (rate-limited, without its content) a rejected entry."""
        from .._failures import ErrorContext

        kind = type(error).__name__
        self.rejected[kind] += 1
        self.runtime.report(error, ErrorContext("transport", plugin="cluster"))
        now = time.monotonic()
        if now - self._last_reject_log < REJECT_LOG_SECONDS:
            self._logged_rejects += 1
            return
        more = f" ({self._logged_rejects} more rejected since)" if self._logged_rejects else ""
        logger.warning("cluster: rejected %s: %s: %s%s", where, kind, error, more)
        self._last_reject_log, self._logged_rejects = now, 0

    async def _warn_if_open(self) -> None:
        """Warn when the cluster's Redis answers a client that gives no password."""
        import redis.asyncio

        probe = redis.asyncio.Redis.from_url(
            _without_credentials(self.url), socket_connect_timeout=2.0, socket_timeout=2.0
        )
        try:
            await probe.ping()
        except Exception:  # refused without a password (or unreachable: the loops say so)
            return
        finally:
            await probe.aclose()
        logger.warning(
            "cluster: the Redis at %s accepts connections without a password: any process "
            "that reaches it can drop or delay the cluster's messages (it cannot forge "
            "them: they are signed). Require one (requirepass or an ACL user) and give it "
            "in the URL.",
            safe_url(self.url),
        )

    async def _leave(self) -> None:
        """Deregister (a clean shutdown) and release the connections."""
        name = self.name
        try:
            if name is not None and self.joined.is_set():
                async with asyncio.timeout(1.0):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.delete(self.keys.alive(name), self.keys.peers(name))
                        pipe.hdel(self.keys.agents, name)
                        leave = encode_presence(self.signer, LEAVE_KIND, name, time.time())
                        pipe.publish(self.keys.broadcast, leave)
                        await pipe.execute()
        except Exception as exc:  # Redis away: the registration expires by itself
            logger.debug("could not deregister from the cluster: %r", exc)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._pipe.aclose()
            for client in (self._redis, self._inbox_reader, self._reply_reader, self._subscriber):
                await client.aclose()

    # -- registry ----------------------------------------------------------

    async def _ensure_groups(self) -> None:
        assert self.name is not None
        for stream in (self.keys.inbox(self.name), self.keys.replies(self.name)):
            try:
                await self._redis.xgroup_create(stream, self.keys.group, id="0", mkstream=True)
            except self._response_error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _heartbeat(self) -> None:
        assert self.name is not None
        name, keys = self.name, self.keys
        liveness_ms = int(LIVENESS_SECONDS * 1000)
        last_trim = 0.0
        announced = False
        while True:
            registration = Registration(
                name=name,
                url=self.runtime.url or "",
                pid=os.getpid(),
                hostname=socket.gethostname(),
                started=self._started,
                heartbeat=time.time(),
                rejected=sum(self.rejected.values()),
            )
            peers = sorted(c.id for c in self.runtime.connections if not c.outbound)
            async with self._redis.pipeline(transaction=True) as own:  # one slot: {cluster:name}
                own.set(keys.alive(name), registration.pid, px=liveness_ms)
                own.delete(keys.peers(name))
                if peers:
                    own.sadd(keys.peers(name), *peers)
                    own.pexpire(keys.peers(name), liveness_ms)
                await own.execute()
            async with self._redis.pipeline(transaction=False) as shared:
                shared.hset(keys.agents, name, registration.encode())
                shared.hkeys(keys.agents)
                if not announced:
                    join = encode_presence(self.signer, JOIN_KIND, name, time.time())
                    shared.publish(keys.broadcast, join)
                _hset, agents, *_rest = await shared.execute()
            if not announced:
                await self._ensure_groups()
                announced = True
                self.joined.set()
            await self._refresh_live([agent.decode() for agent in agents])
            if time.monotonic() - last_trim >= TRIM_SECONDS:
                await self._trim(keys.inbox(name))
                await self._trim(keys.replies(name))
                last_trim = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _refresh_live(self, agents: list[str]) -> None:
        if not agents:
            self._live = set()
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent in agents:
                pipe.exists(self.keys.alive(agent))
            found = await pipe.execute()
        self._live = {agent for agent, alive in zip(agents, found, strict=True) if alive}

    async def is_live(self, agent: str) -> bool:
        """Whether ``agent`` has a live registration (cached; asked of Redis when unknown)."""
        if agent in self._live:
            return True
        if await self._pipe("EXISTS", self.keys.alive(agent)):
            self._live.add(agent)
            return True
        return False

    async def _trim(self, stream: str) -> None:
        """Drop the entries of ``stream`` that the group read and acknowledged."""
        groups = await self._redis.xinfo_groups(stream)
        group = next((g for g in groups if _text(g.get("name")) == self.keys.group), None)
        if group is None:
            return
        oldest = _text(group.get("last-delivered-id"))
        if not oldest or oldest == "0-0":
            return
        if int(group.get("pending") or 0):
            summary = await self._redis.xpending(stream, self.keys.group)
            pending_min = _text(summary.get("min"))
            if pending_min and _stream_id(pending_min) < _stream_id(oldest):
                oldest = pending_min
        await self._redis.xtrim(stream, minid=oldest, approximate=False)

    # -- forwarding (this agent's clients send elsewhere) --------------------

    def _address(self, to: str) -> Address:
        """:func:`parse_address`, remembered for the addresses seen most (a bounded cache)."""
        address = self._addresses.get(to)
        if address is None:
            address = parse_address(to)
            if len(self._addresses) >= 1024:
                self._addresses.clear()
            self._addresses[to] = address
        return address

    def route(self, connection: Connection, message: Message) -> Any:
        """``on_message``: ``None`` for a message meant for this agent, else its forwarding.

        Synchronous on purpose: a local message costs one attribute read and
        a comparison, and no coroutine.
        """
        to = message.to
        if to is None or to == self.name:
            return None
        return self.forward(connection, message, to)

    async def forward(self, connection: Connection, message: Message, to: str) -> Any:
        """Deliver ``message`` to ``to``; return the result (or raise its error).

        Raises:
            MessageError: ``invalid_message`` (not an address), ``unreachable``
                (no such live agent, or no such peer), ``unavailable``
                (Redis is down, or the cluster is not joined yet), ``timeout``
                (no reply in time: the message stays queued), or the remote
                handler's own error.
        """
        try:
            address = self._address(to)
        except ValueError as exc:
            raise MessageError(INVALID_MESSAGE, str(exc)) from None
        name = self.name
        if name is None or not self.joined.is_set():
            raise MessageError(UNAVAILABLE, "this agent has not joined its cluster yet")
        sender = f"{name}/{connection.id}"
        try:
            if address.is_broadcast:
                payload = encode_broadcast(
                    self.signer, sender, message.type, message.data, time.time()
                )
                published = await self._pipe("PUBLISH", self.keys.broadcast, payload)
                return {"published": int(published)}
            if address.agent == name:  # a peer of this agent
                return await self.deliver_to_peer(address, sender, message)
            assert address.agent is not None
            if not await self.is_live(address.agent):
                raise MessageError(
                    UNREACHABLE,
                    f"no agent {address.agent!r} is live in cluster {self.keys.cluster!r}",
                )
            uid = next(self._uids)
            request = Request(uid, sender, to, message.id, message.type, message.data, time.time())
            waiter = _Waiter(address.agent, time.monotonic() + self.timeout)
            self._waiting[request.uid] = waiter
            targets = self._targets(connection)
            targets[address.agent] += 1
            try:
                fields = request.fields(self.signer, address.agent)
                await self._pipe("XADD", self.keys.inbox(address.agent), "*", *_flat(fields))
                answer = await self._await_reply(connection, message, address, waiter)
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
        except self.errors as exc:
            raise MessageError(
                UNAVAILABLE, f"the cluster's Redis at {safe_url(self.url)} is unavailable: {exc}"
            ) from None

    def _targets(self, connection: Connection) -> collections.Counter[str]:
        """The agents running ``connection``'s routed work, told to cancel it when it closes."""
        targets = connection.state.get(_TARGETS)
        if targets is None:
            targets = connection.state[_TARGETS] = collections.Counter()
            sender = f"{self.name}/{connection.id}"
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
            request = Request(next(self._uids), sender, agent, None, CANCEL_TYPE, None, time.time())
            fields = request.fields(self.signer, agent)
            try:
                self._pipe.fire("XADD", self.keys.inbox(agent), "*", *_flat(fields))
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

    async def _group_entries(
        self, reader: redis.asyncio.Redis, stream: str
    ) -> AsyncIterator[tuple[list[tuple[bytes, dict[bytes, bytes] | None]], bool]]:
        """Batches of ``stream``'s entries for this agent's consumer, read forever.

        First the entries an earlier run of this agent read and did not
        acknowledge (yielded with ``True``: being recovered), then new ones
        (``False``; an empty batch when a blocked read timed out).
        """
        assert self.name is not None
        await self._ensure_groups()
        start: str | bytes = "0"
        while True:
            response = await reader.xreadgroup(
                self.keys.group,
                self.name,
                {stream: start},
                count=READ_BATCH,
                block=int(BLOCK_SECONDS * 1000),
            )
            entries = _entries(response)
            if start == ">":
                yield entries, False
            elif entries:
                start = entries[-1][0]
                yield entries, True
            else:
                start = ">"

    async def _consume_replies(self) -> None:
        assert self.name is not None
        await self.joined.wait()
        stream, group = self.keys.replies(self.name), self.keys.group
        name, signer = self.name, self.signer
        async for entries, _recovered in self._group_entries(self._reply_reader, stream):
            now = time.time()
            for _entry_id, fields in entries:
                if fields is None:
                    continue
                try:
                    reply = decode_reply(fields, signer, name, now)
                    waiter = self._waiting.get(reply.uid)
                    if waiter is None:
                        logger.debug("cluster: dropped a reply nobody waits for (%s)", reply.uid)
                        continue
                    waiter.put(reply)
                except RejectedEntry as exc:
                    self._reject(exc, "a reply entry")
                except EntryError as exc:
                    logger.warning("cluster: dropped a malformed reply entry: %s", exc)
            if entries:
                self._pipe.fire_last(("XACK", stream, group), [entry_id for entry_id, _ in entries])

    # -- this agent's inbox (messages from elsewhere) -----------------------

    async def _consume_inbox(self) -> None:
        assert self.name is not None
        await self.joined.wait()
        name, signer = self.name, self.signer
        stream, group = self.keys.inbox(name), self.keys.group
        # Requests signed since this node started can only have been handled by it: the
        # request numbers it saw tell a copy. Older ones (and the entries this agent read
        # before a restart, which come first) may have been answered by an earlier run:
        # the "handled" records tell (a reply written, the acknowledgement lost), as they
        # do for a number too far below its sender's highest. A sender's clock may run
        # ahead: "since" counts from a skew's length after the start.
        fresh_since = self._started + MAX_SKEW_SECONDS
        async for batch, recovered in self._group_entries(self._inbox_reader, stream):
            now = time.time()
            requests: list[tuple[bytes, Request]] = []
            for entry_id, fields in batch:
                if fields is None:  # trimmed away meanwhile: nothing left to handle
                    self._pipe.fire_last(("XACK", stream, group), [entry_id])
                    continue
                try:
                    requests.append((entry_id, decode_request(fields, signer, name, now)))
                except RejectedEntry as exc:
                    self._reject(exc, "an inbox entry")
                    self._pipe.fire_last(("XACK", stream, group), [entry_id])
                except EntryError as exc:
                    logger.warning("cluster: dropped a malformed inbox entry: %s", exc)
                    self._pipe.fire_last(("XACK", stream, group), [entry_id])
            if recovered:
                requests = await self._not_done(requests)
            for entry_id, request in requests:
                new = self._replays.check(request.uid, now)
                if new is False:
                    self._reject(ReplayedEntry(f"request {request.uid} again"), "an inbox entry")
                    self._pipe.fire_last(("XACK", stream, group), [entry_id])
                    continue
                if request.type == CANCEL_TYPE and request.id is None:
                    self._pipe.fire_last(("XACK", stream, group), [entry_id])
                    await self._cancel(request.sender)
                    continue
                # Checked in the task, so that the reader goes on meanwhile.
                check = not recovered and (new is None or request.signed_at < fresh_since)
                peer = self._peers.get(request.sender)
                if peer is None:
                    peer = self._peers[request.sender] = RemotePeer(request.sender)
                await self._handling.acquire()
                handle = self._handle(request, entry_id, peer, check_handled=check)
                task = asyncio.get_running_loop().create_task(handle)
                self.runtime.in_flight.add(task)  # a graceful shutdown waits for it
                self._tasks.add(task)
                peer.tasks.add(task)
                task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self.runtime.in_flight.discard(task)
        self._tasks.discard(task)

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

    async def _not_done(self, requests: list[tuple[bytes, Request]]) -> list[tuple[bytes, Request]]:
        """The re-delivered requests not answered yet; the answered ones are acknowledged."""
        assert self.name is not None
        async with self._redis.pipeline(transaction=False) as pipe:
            for _entry_id, request in requests:
                pipe.exists(self.keys.done(self.name, request.uid))
            done = await pipe.execute()
        answered = [entry_id for (entry_id, _r), seen in zip(requests, done, strict=True) if seen]
        if answered:
            logger.debug("cluster: %d re-delivered entries were answered before", len(answered))
            await self._redis.xack(self.keys.inbox(self.name), self.keys.group, *answered)
        return [entry for entry, seen in zip(requests, done, strict=True) if not seen]

    async def _handle(
        self, request: Request, entry_id: bytes, peer: RemotePeer, *, check_handled: bool
    ) -> None:
        """Handle one message from the inbox and send its reply back to the sender.

        With ``check_handled`` (signed before this node started), a request that
        has a "handled" record is a copy: rejected instead. Cancelled because
        the sender went away, it is acknowledged and recorded as handled, and
        nothing is sent back.
        """
        sender = RemoteSender(self, request, entry_id, peer)
        name = self.name or ""
        try:
            if check_handled and await self._pipe("EXISTS", self.keys.done(name, request.uid)):
                self._reject(ReplayedEntry(f"request {request.uid} again"), "an inbox entry")
                self._pipe.fire_last(("XACK", self.keys.inbox(name), self.keys.group), [entry_id])
                return
            address = self._address(request.to)
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
                await self.runtime.handle(sender, message)
            if not sender.answered:  # a notification that succeeded: nothing was sent
                await sender.send({"id": request.id, "result": None})
        except ConnectionLost as exc:
            # Redis went away before the reply was written: the entry stays
            # pending and is handled again once the inbox is read afresh.
            logger.debug("cluster: the reply to %s was not written: %s", request.uid, exc)
        except ValueError as exc:
            logger.warning("cluster: dropped an entry for a bad address: %s", exc)
            self._pipe.fire_last(
                ("XACK", self.keys.inbox(self.name or ""), self.keys.group), [entry_id]
            )
        except Exception:
            logger.exception("cluster: handling %s from %s failed", request.uid, request.sender)
        except asyncio.CancelledError:
            if not peer.cancelled:
                raise  # the agent is stopping: the entry stays pending, handled after a restart
            done = self.keys.done(name, request.uid)
            self._pipe.fire("SET", done, 1, "NX", "EX", DONE_SECONDS)
            self._pipe.fire_last(("XACK", self.keys.inbox(name), self.keys.group), [entry_id])
        finally:
            self._handling.release()
            await sender.run_close_callbacks()
            peer.tasks.discard(asyncio.current_task())
            if not peer.tasks and self._peers.get(peer.id) is peer:
                del self._peers[peer.id]  # its last request here: done with it
                await peer.close()

    async def send_reply(self, sender: RemoteSender, message: Any, *, final: bool) -> None:
        """Write what the target sends for a request to the sender's replies stream.

        A message streamed before the reply is written before this returns,
        so the next one cannot overtake it. The final reply goes out in one
        pipeline with the "handled" record and the acknowledgement of the
        inbox entry, in that order, and this returns once it is queued: if
        that pipeline fails, the entry stays pending and is handled again
        when the inbox is read afresh (after Redis comes back, or a restart).

        Raises:
            ConnectionLost: Redis did not take a streamed message.
        """
        assert self.name is not None
        request = sender.request
        reply = Reply(request.uid, final, message, self.name, sender.sent, time.time())
        sender.sent += 1
        command = (
            "XADD",
            self.keys.replies(request.sender_agent),
            "MAXLEN",
            "~",
            MAX_REPLIES,
            "*",
            *_flat(reply.fields(self.signer, request.sender_agent)),
        )
        if final:
            self._pipe.fire(*command)
            done = self.keys.done(self.name, request.uid)
            self._pipe.fire("SET", done, 1, "NX", "EX", DONE_SECONDS)
            self._pipe.fire_last(
                ("XACK", self.keys.inbox(self.name), self.keys.group), [sender.entry_id]
            )
            return
        try:
            await self._pipe(*command)
        except self.errors as exc:
            raise ConnectionLost(f"cannot write to {request.sender}: {exc}") from None

    async def deliver_to_peer(self, address: Address, sender: str, message: Message) -> Any:
        """Hand ``message`` to the connection ``address`` names, on this agent.

        Raises:
            MessageError: ``unreachable``: no such connection (any more).
        """
        target = next(
            (c for c in self.runtime.connections if c.id == address.connection and not c.outbound),
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

    # -- pub/sub: broadcasts and presence --------------------------------------

    async def _listen(self) -> None:
        await self.joined.wait()
        pubsub = self._subscriber.pubsub()
        try:
            await pubsub.subscribe(self.keys.broadcast)
            while True:
                item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if item is None or item.get("type") != "message":
                    continue
                payload: bytes = item["data"]
                now = time.time()
                try:
                    event = decode_event(payload, self.signer, now)
                    mac = payload[:64]
                    if mac in self._seen_events:
                        raise ReplayedEntry("a pub/sub payload again")
                    self._seen_events[mac] = now
                except RejectedEntry as exc:
                    self._reject(exc, "a pub/sub payload")
                    continue
                except EntryError as exc:
                    logger.debug("cluster: ignored a pub/sub payload: %s", exc)
                    continue
                kind = event["kind"]
                if kind == JOIN_KIND and isinstance(event.get("agent"), str):
                    self._live.add(event["agent"])
                elif kind == LEAVE_KIND:
                    self._live.discard(str(event.get("agent")))
                elif kind == BROADCAST_KIND:
                    self._relay(event)
        finally:
            await pubsub.aclose()

    def _relay(self, event: dict[str, Any]) -> None:
        """Send a broadcast to every client of this agent but the one it came from."""
        sender = event["from"]  # decode_event drops a broadcast without a sender
        delivered = {"type": event.get("type"), "data": event.get("data"), "from": sender}
        targets = [
            c
            for c in self.runtime.connections
            if not c.outbound and f"{self.name}/{c.id}" != sender and not c.closed
        ]
        if not targets:
            return

        async def send_all() -> None:
            await asyncio.gather(*(c.send(delivered) for c in targets), return_exceptions=True)

        task = asyncio.get_running_loop().create_task(send_all())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _without_credentials(url: str) -> str:
    """``url`` with no user name nor password (in the authority or the query)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("username", "password")]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def _flat(fields: Mapping[bytes, bytes]) -> list[bytes]:
    return [part for pair in fields.items() for part in pair]


def _entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of a one-stream XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not response:
        return []
    if isinstance(response, dict):
        streams = list(response.values())
        return list(streams[0][0]) if streams and streams[0] else []
    return list(response[0][1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _stream_id(value: str) -> tuple[int, int]:
    millis, _, sequence = value.partition("-")
    return int(millis), int(sequence or 0)
