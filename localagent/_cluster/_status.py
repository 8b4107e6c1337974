"""What ``localagent cluster status`` shows: agents, their peers and stream backlogs.

Reads Redis with redis-py's synchronous client (a CLI command needs no event
loop); :func:`render_table` formats the result like ``plugins list``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs

from ._entries import EntryError, Registration
from ._names import Keys

__all__ = ["AgentStatus", "StreamStatus", "read_status", "render_table"]


@attrs.frozen(kw_only=True)
class StreamStatus:
    """One stream's backlog.

    Attributes:
        length: Entries in the stream (acknowledged ones are trimmed in time).
        pending: Entries read by the agent and not yet acknowledged.
        lag: Entries not yet read by the agent (``None`` if Redis cannot tell).
    """

    length: int = 0
    pending: int = 0
    lag: int | None = 0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class AgentStatus:
    """One registered agent.

    Attributes:
        name: Its name in the cluster.
        live: Whether its registration is live (a heartbeat in the last seconds).
        registration: What it registered (``None`` if unreadable).
        heartbeat_age: Seconds since its last heartbeat.
        peers: The ids of its clients' connections.
        inbox: Its inbox stream (messages for it and its peers).
        replies: Its replies stream (replies to what it forwarded).
    """

    name: str
    live: bool
    registration: Registration | None
    heartbeat_age: float | None
    peers: tuple[str, ...]
    inbox: StreamStatus
    replies: StreamStatus

    def to_json(self) -> dict[str, Any]:
        registration = self.registration
        return {
            "name": self.name,
            "state": "up" if self.live else "down",
            "url": registration.url if registration else None,
            "pid": registration.pid if registration else None,
            "hostname": registration.hostname if registration else None,
            "heartbeat_age": None if self.heartbeat_age is None else round(self.heartbeat_age, 3),
            "rejected": registration.rejected if registration else None,
            "peers": list(self.peers),
            "inbox": self.inbox.to_json(),
            "replies": self.replies.to_json(),
        }


def _stream(client: Any, key: str, group: str) -> StreamStatus:
    import redis

    try:
        length = int(client.xlen(key))
        groups = client.xinfo_groups(key)
    except redis.exceptions.ResponseError:  # no such stream yet
        return StreamStatus()
    for info in groups:
        if _text(info.get("name") or "") == group:
            lag = info.get("lag")
            return StreamStatus(
                length=length, pending=int(info.get("pending") or 0), lag=_int_or_none(lag)
            )
    return StreamStatus(length=length, pending=0, lag=length)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def read_status(url: str, cluster: str) -> list[AgentStatus]:
    """Every agent registered in ``cluster``, sorted by name.

    Raises:
        redis.exceptions.ConnectionError: Redis cannot be reached (or any
            other redis-py error).
    """
    import redis

    from .._redis_cluster import is_cluster_sync, without_db

    keys = Keys(cluster)
    options: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
    client: Any
    if is_cluster_sync(url):  # any node of a Redis Cluster: each key is read where it lives
        client = redis.RedisCluster.from_url(without_db(url), **options)
    else:
        client = redis.Redis.from_url(url, **options)
    try:
        registered = client.hgetall(keys.agents)
        now = time.time()
        agents = []
        for raw_name, raw in sorted(registered.items()):
            name = _text(raw_name)
            try:
                registration: Registration | None = Registration.decode(
                    raw if isinstance(raw, bytes) else raw.encode()
                )
            except EntryError:
                registration = None
            agents.append(
                AgentStatus(
                    name=name,
                    live=bool(client.exists(keys.alive(name))),
                    registration=registration,
                    heartbeat_age=max(0.0, now - registration.heartbeat) if registration else None,
                    peers=tuple(sorted(_text(p) for p in client.smembers(keys.peers(name)))),
                    inbox=_stream(client, keys.inbox(name), keys.group),
                    replies=_stream(client, keys.replies(name), keys.group),
                )
            )
        return agents
    finally:
        client.close()


def render_table(agents: Sequence[AgentStatus]) -> str:
    """A table: one row per agent, columns aligned like ``plugins list``."""
    rows = [
        (
            "AGENT",
            "STATE",
            "URL",
            "PID",
            "HEARTBEAT",
            "INBOX",
            "PENDING",
            "LAG",
            "REJECTED",
            "PEERS",
        )
    ]
    for agent in agents:
        registration = agent.registration
        rows.append(
            (
                agent.name,
                "up" if agent.live else "down",
                registration.url if registration else "-",
                str(registration.pid) if registration else "-",
                f"{agent.heartbeat_age:.1f} s ago" if agent.heartbeat_age is not None else "-",
                str(agent.inbox.length),
                str(agent.inbox.pending),
                "-" if agent.inbox.lag is None else str(agent.inbox.lag),
                str(registration.rejected) if registration else "-",
                ",".join(agent.peers) or "-",
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
