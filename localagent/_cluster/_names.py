"""Cluster naming: valid names, addresses (``"to"``), the Redis keys of a cluster,
and how its Redis URL is shown (without the password).

Pure code, no I/O. Every key of a cluster starts with ``la:`` and carries a
Redis Cluster hash tag: the keys of one agent (its inbox, replies, peers,
liveness, handled-request records) share the tag ``{CLUSTER:AGENT}`` and so
one slot; the cluster-wide keys share ``{CLUSTER}``.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

__all__ = [
    "BROADCAST",
    "MAX_NAME_LENGTH",
    "Address",
    "Keys",
    "check_agent_name",
    "check_cluster_name",
    "parse_address",
    "safe_url",
]

#: The address of every peer of every agent.
BROADCAST: Final = "*"
#: The longest cluster or agent name, in characters.
MAX_NAME_LENGTH: Final = 128
#: Separates an agent's name from one of its connections in a peer address.
PEER_SEPARATOR: Final = "/"

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Braces would break the hash tags, "/" separates peer addresses, "*" is broadcast.
_AGENT_NAME_FORBIDDEN = re.compile(r"[{}/*\s]")


def check_cluster_name(name: str) -> str:
    """Return ``name`` if it can name a cluster: letters, digits, ``.``, ``_``, ``-``.

    Raises:
        ValueError: It cannot.
    """
    if len(name) > MAX_NAME_LENGTH or not _CLUSTER_NAME.fullmatch(name):
        raise ValueError(
            f"a cluster name is 1-{MAX_NAME_LENGTH} letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def check_agent_name(name: str) -> str:
    """Return ``name`` if it can name an agent: no braces, ``/``, ``*`` or whitespace.

    Raises:
        ValueError: It cannot.
    """
    if not name or len(name) > MAX_NAME_LENGTH or _AGENT_NAME_FORBIDDEN.search(name):
        raise ValueError(
            f"an agent name is 1-{MAX_NAME_LENGTH} characters without braces, '/', '*' "
            "or whitespace"
        )
    return name


@attrs.frozen
class Address:
    """Where a message is addressed.

    Attributes:
        agent: The agent's name (``None`` for a broadcast).
        connection: A connection id of that agent (a peer), or ``None`` for
            the agent itself.
    """

    agent: str | None
    connection: str | None = None

    @property
    def is_broadcast(self) -> bool:
        return self.agent is None

    def __str__(self) -> str:
        if self.agent is None:
            return BROADCAST
        if self.connection is None:
            return self.agent
        return f"{self.agent}{PEER_SEPARATOR}{self.connection}"


def parse_address(to: str) -> Address:
    """Parse a ``"to"`` value: ``"AGENT"``, ``"AGENT/CONNID"`` (a peer) or ``"*"``.

    Raises:
        ValueError: Neither form, with the reason.
    """
    if to == BROADCAST:
        return Address(None)
    agent, separator, connection = to.partition(PEER_SEPARATOR)
    if separator and (not agent or not connection):
        raise ValueError(f"'to' {to!r} is not an address: expected AGENT, AGENT/CONNID or '*'")
    try:
        check_agent_name(agent)
    except ValueError as exc:
        raise ValueError(f"'to' {to!r} is not an address: {exc}") from None
    return Address(agent, connection or None)


@attrs.frozen
class Keys:
    """The Redis keys and channel of one cluster.

    Attributes:
        cluster: The cluster's name (see :func:`check_cluster_name`).
    """

    cluster: str

    @property
    def group(self) -> str:
        """The consumer group of every stream of the cluster."""
        return self.cluster

    @property
    def agents(self) -> str:
        """Hash: agent name -> its registration (JSON: url, pid, last heartbeat)."""
        return f"la:{{{self.cluster}}}:agents"

    @property
    def broadcast(self) -> str:
        """Pub/sub channel: broadcasts and presence (join, leave)."""
        return f"la:{{{self.cluster}}}:broadcast"

    def _agent(self, agent: str) -> str:
        return f"la:{{{self.cluster}:{agent}}}"

    def alive(self, agent: str) -> str:
        """String with an expiry, renewed by the agent's heartbeat: it is live while it exists."""
        return self._agent(agent) + ":alive"

    def peers(self, agent: str) -> str:
        """Set: the ids of the connections of the agent's clients (same expiry)."""
        return self._agent(agent) + ":peers"

    def inbox(self, agent: str) -> str:
        """Stream: the messages addressed to the agent or its peers."""
        return self._agent(agent) + ":inbox"

    def replies(self, agent: str) -> str:
        """Stream: the replies to the messages the agent forwarded."""
        return self._agent(agent) + ":replies"

    def done(self, agent: str, uid: str) -> str:
        """String with an expiry: the agent replied to request ``uid`` (deduplication)."""
        return self._agent(agent) + ":done:" + uid


def safe_url(url: str) -> str:
    """A Redis URL as messages and logs show it: without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return parts._replace(netloc=user + netloc).geturl()
