"""``ClusterNode``: one agent's membership in a cluster, the I/O half (redis-py asyncio).

A node registers its agent (a heartbeat renews a key with an expiry), keeps
its peers' connection ids in Redis, and runs the loops that serve the
cluster: forwarding (:mod:`._forwarding`: messages addressed elsewhere go to
the target agent's inbox stream, replies come back on this agent's replies
stream), the inbox (:mod:`._inbox`: requests from other agents, handled here,
each entry, which may carry several requests, acknowledged once all their replies
are written), and broadcasts relayed
over pub/sub (here). Redis going away never stops the agent: forwarding fails
with ``unavailable`` meanwhile, and every loop backs off and resumes alone
once Redis answers again.

Redis is not trusted with authority: everything a node writes is signed with
the cluster's secret (:mod:`._signing`), and what it reads is verified first.
An entry that fails (forged, altered, expired, replayed) is acknowledged,
counted, reported to ``on_error`` and logged without its content, at most a
line every few seconds, and never handled nor passed to a client.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from localagent_hookspecs import Connection, Message

from .._redis_cluster import is_failover_error
from ._broadcasts import Broadcasts
from ._clients import Clients, cluster_clients, lone_clients
from ._entries import (
    JOIN_KIND,
    LEAVE_KIND,
    Registration,
    RejectedEntry,
    encode_presence,
)
from ._forwarding import TIMEOUT, UNAVAILABLE, Forwarder
from ._inbox import UNREACHABLE, Inbox, RemoteSender
from ._names import Address, Keys, parse_address, safe_url
from ._retry import Backoff, raise_if_cancelled
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

#: Seconds between heartbeats, and how long a registration outlives the last one.
HEARTBEAT_SECONDS: Final = 1.0
LIVENESS_SECONDS: Final = 5.0
#: Entries read per XREADGROUP, and how long one blocks waiting for entries.
READ_BATCH: Final = 1000
BLOCK_SECONDS: Final = 1.0
#: Seconds a reader of a Redis Cluster may fail in a row before it gets a new client.
RENEW_READER_SECONDS: Final = 5.0

_Body = Callable[[], Coroutine[Any, Any, None]]
#: Seconds between trims of this agent's streams (entries every reader acknowledged).
TRIM_SECONDS: Final = 5.0
#: Seconds between two log lines about rejected entries (the others are counted).
REJECT_LOG_SECONDS: Final = 10.0


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
        wait_replicas: On a Redis Cluster, the replicas each write waits for
            (``WAIT``; 0: none, asynchronous replication only).
        wait_timeout: Milliseconds that ``WAIT`` may take.

    Attributes:
        rejected: Entries and payloads rejected since the start, by kind
            (``ForgedEntry``, ``ExpiredEntry``, ``ReplayedEntry``, ...).
        forwarder: Sends this agent's clients' messages elsewhere (:mod:`._forwarding`).
        inbox: Handles what other agents send here (:mod:`._inbox`).
        broadcasts: Relays broadcasts, follows presence (:mod:`._broadcasts`).
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
        wait_replicas: int = 0,
        wait_timeout: int = 1000,
    ) -> None:
        import redis.exceptions

        self.runtime = runtime
        self.keys = Keys(cluster)
        self.signer = Signer(cluster, key=secret)
        self.url = redis_url
        self.name: str | None = name
        self.timeout = timeout
        self._response_error = redis.exceptions.ResponseError
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        # A Redis Cluster gets cluster clients instead, once run() has asked (_detect_mode).
        self._use(lone_clients(redis_url, block_seconds=BLOCK_SECONDS))
        #: The agents with a live registration, as last seen (see :meth:`is_live`).
        self.live: set[str] = set()
        self._addresses: dict[str, Address] = {}
        #: The node's background tasks (handlers of remote requests, relays).
        self.tasks: set[asyncio.Task[Any]] = set()
        self.started = time.time()
        self.joined = asyncio.Event()
        self.rejected: collections.Counter[str] = collections.Counter()
        self._logged_rejects = 0
        self._last_reject_log = -REJECT_LOG_SECONDS
        self.forwarder = Forwarder(self, timeout)
        self.inbox = Inbox(self)
        self.broadcasts = Broadcasts(self)

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        """Join once the server listens, then serve the cluster until cancelled."""
        url = await self.runtime.wait_listening()
        if self.name is None:
            self.name = url.removeprefix("ws://")
        name = self.name
        await self._detect_mode()
        raise_if_cancelled()
        logger.info("joining cluster %r as agent %r", self.keys.cluster, name)
        loops = [
            self._warn_if_open(),
            self._loop(self._heartbeat, "heartbeat"),
            self._loop(
                lambda: self.inbox.consume(self.clients.inbox_reader), "inbox", "inbox_reader"
            ),
            self._loop(
                lambda: self.forwarder.consume_replies(self.clients.reply_reader),
                "replies",
                "reply_reader",
            ),
            self._loop(lambda: self.broadcasts.listen(self.clients.subscriber), "broadcast"),
            self._expire(),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            await self._leave()

    async def _detect_mode(self) -> None:
        """Ask the Redis whether it is a Redis Cluster (until it answers); if so, use one."""
        from .._redis_cluster import is_cluster

        backoff = Backoff()
        while True:
            try:
                found = await is_cluster(self.url)
                break
            except self.errors as exc:
                raise_if_cancelled()
                if backoff.delay == 0.0:
                    logger.warning(
                        "cluster: Redis at %s is unavailable (%s); retrying",
                        safe_url(self.url),
                        exc,
                    )
            await backoff.wait()
        if found:
            await self._use_cluster()

    def _use(self, clients: Clients) -> None:
        self.clients = clients
        self.redis, self.pipe, self.errors = clients.redis, clients.pipe, clients.errors
        #: Whether the Redis is a Redis Cluster (known once run() has asked it).
        self.cluster_mode = clients.cluster

    async def _use_cluster(self) -> None:
        """Swap the node's clients for Redis Cluster clients (see :mod:`._clients`)."""
        previous, wait = self.clients, (self.wait_replicas, self.wait_timeout)
        self._use(cluster_clients(self.url, block_seconds=BLOCK_SECONDS, wait=wait))
        await previous.aclose()
        logger.info(
            "cluster: the Redis at %s is a Redis Cluster node: using the cluster client "
            "(writes confirmed by %d replica(s))",
            *(safe_url(self.url), self.wait_replicas),
        )

    async def _loop(self, body: _Body, what: str, reader: str | None = None) -> None:
        """Run ``body`` until cancelled; whenever it fails, back off and run it again.

        A failure after a long healthy run starts a new outage: the backoff
        restarts from its shortest wait, and the outage is logged once. The client
        ``body`` reads with (``reader``) is renewed every :data:`RENEW_READER_SECONDS`.
        """
        backoff = Backoff()
        while True:
            started = time.monotonic()
            try:
                await body()
                return
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
                elif reader and time.monotonic() - backoff.since >= RENEW_READER_SECONDS:
                    self.clients = await self.clients.renew(reader, what)
                    backoff.since = time.monotonic()
            except self._response_error as exc:
                if "NOGROUP" in str(exc):  # the stream or its group vanished (Redis lost data)
                    logger.warning("cluster %s: %s; recreating the consumer group", what, exc)
                elif is_failover_error(exc):  # a blocked read ended by a failover, say
                    logger.warning("cluster %s: %s; retrying", what, exc)
                else:
                    logger.exception("cluster %s failed; retrying", what)
            except Exception:
                logger.exception("cluster %s failed; retrying", what)
            raise_if_cancelled()
            await backoff.wait()

    async def _expire(self) -> None:
        """Fail the forwarded requests whose reply did not come in time; forget old uids."""
        tick = min(0.25, self.timeout / 4)
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            self.forwarder.expire(now)
            if now - last_prune >= HEARTBEAT_SECONDS:
                self._prune_seen(time.time())
                last_prune = now

    def _prune_seen(self, now: float) -> None:
        """Forget what is too old to come back: it would be rejected as expired."""
        self.inbox.forget_before(now - MAX_AGE_SECONDS - MAX_SKEW_SECONDS)
        self.broadcasts.forget_before(now)

    def reject(self, error: RejectedEntry, where: str) -> None:
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
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.delete(self.keys.alive(name), self.keys.peers(name))
                        pipe.hdel(self.keys.agents, name)
                        leave = encode_presence(self.signer, LEAVE_KIND, name, time.time())
                        # Not in the pipeline: a Redis Cluster's pipelines refuse PUBLISH.
                        self.pipe.fire("PUBLISH", self.keys.broadcast, leave)
                        await pipe.execute()
        except Exception as exc:  # Redis away: the registration expires by itself
            logger.debug("could not deregister from the cluster: %r", exc)
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.clients.aclose()

    # -- registry ----------------------------------------------------------

    async def _ensure_groups(self) -> None:
        assert self.name is not None
        for stream in (self.keys.inbox(self.name), self.keys.replies(self.name)):
            try:
                await self.redis.xgroup_create(stream, self.keys.group, id="0", mkstream=True)
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
                started=self.started,
                heartbeat=time.time(),
                rejected=sum(self.rejected.values()),
            )
            peers = sorted(c.id for c in self.runtime.connections if not c.outbound)
            async with self.redis.pipeline(transaction=True) as own:  # one slot: {cluster:name}
                own.set(keys.alive(name), registration.pid, px=liveness_ms)
                own.delete(keys.peers(name))
                if peers:
                    own.sadd(keys.peers(name), *peers)
                    own.pexpire(keys.peers(name), liveness_ms)
                await own.execute()
            async with self.redis.pipeline(transaction=False) as shared:
                shared.hset(keys.agents, name, registration.encode())
                shared.hkeys(keys.agents)
                if not announced:  # not in the pipeline: a Redis Cluster's refuse PUBLISH
                    join = encode_presence(self.signer, JOIN_KIND, name, time.time())
                    self.pipe.fire("PUBLISH", keys.broadcast, join)
                _hset, agents = await shared.execute()
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
            self.live = set()
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent in agents:
                pipe.exists(self.keys.alive(agent))
            found = await pipe.execute()
        self.live = {agent for agent, alive in zip(agents, found, strict=True) if alive}

    async def is_live(self, agent: str) -> bool:
        """Whether ``agent`` has a live registration (cached; asked of Redis when unknown)."""
        if agent in self.live:
            return True
        if await self.pipe("EXISTS", self.keys.alive(agent)):
            self.live.add(agent)
            return True
        return False

    async def _trim(self, stream: str) -> None:
        """Drop the entries of ``stream`` that the group read and acknowledged."""
        groups = await self.redis.xinfo_groups(stream)
        group = next((g for g in groups if _text(g.get("name")) == self.keys.group), None)
        if group is None:
            return
        oldest = _text(group.get("last-delivered-id"))
        if not oldest or oldest == "0-0":
            return
        if int(group.get("pending") or 0):
            summary = await self.redis.xpending(stream, self.keys.group)
            pending_min = _text(summary.get("min"))
            if pending_min and _stream_id(pending_min) < _stream_id(oldest):
                oldest = pending_min
        await self.redis.xtrim(stream, minid=oldest, approximate=False)

    # -- addresses and routing --------------------------------------------------

    def address(self, to: str) -> Address:
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
        return self.forwarder.forward(connection, message, to)

    async def forward(self, connection: Connection, message: Message, to: str) -> Any:
        """Deliver ``message`` to ``to`` (see :meth:`Forwarder.forward`)."""
        return await self.forwarder.forward(connection, message, to)

    # -- reading streams ---------------------------------------------------

    async def group_entries(
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


def _without_credentials(url: str) -> str:
    """``url`` with no user name nor password (in the authority or the query)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("username", "password")]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


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
