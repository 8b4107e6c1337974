"""Pub/sub: broadcasts (``"to": "*"``) relayed to this agent's clients, and presence events.

Every agent of the cluster subscribes to its broadcast channel. A payload is
verified, dropped if seen before (its MAC, within the time an event stays
valid), then either relayed to this agent's clients (a broadcast) or taken as
news that an agent joined or left (presence, which keeps the live set fresh
between heartbeats).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ._entries import (
    BROADCAST_KIND,
    EVENT_MAX_AGE_SECONDS,
    JOIN_KIND,
    LEAVE_KIND,
    EntryError,
    RejectedEntry,
    ReplayedEntry,
    decode_event,
)
from ._signing import MAX_SKEW_SECONDS

if TYPE_CHECKING:
    import redis.asyncio

    from ._node import ClusterNode

__all__ = ["Broadcasts"]

logger = logging.getLogger("localagent.cluster")


class Broadcasts:
    """Listens on the cluster's channel for this agent.

    Args:
        node: The cluster node (its name, keys, signer, live set, runtime).
    """

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        #: The MACs of the payloads seen, and when (replays are rejected).
        self._seen: dict[bytes, float] = {}

    def forget_before(self, now: float) -> None:
        """Forget the payloads too old to come back at ``now``: they would be expired."""
        oldest = now - EVENT_MAX_AGE_SECONDS - MAX_SKEW_SECONDS
        self._seen = {mac: at for mac, at in self._seen.items() if at >= oldest}

    async def listen(self, subscriber: redis.asyncio.Redis) -> None:
        """Take the channel's payloads as they come, forever."""
        node = self.node
        await node.joined.wait()
        pubsub = subscriber.pubsub()
        try:
            await pubsub.subscribe(node.keys.broadcast)
            while True:
                item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if item is None or item.get("type") != "message":
                    continue
                payload: bytes = item["data"]
                now = time.time()
                try:
                    event = decode_event(payload, node.signer, now)
                    mac = payload[:64]
                    if mac in self._seen:
                        raise ReplayedEntry("a pub/sub payload again")
                    self._seen[mac] = now
                except RejectedEntry as exc:
                    node.reject(exc, "a pub/sub payload")
                    continue
                except EntryError as exc:
                    logger.debug("cluster: ignored a pub/sub payload: %s", exc)
                    continue
                kind = event["kind"]
                if kind == JOIN_KIND and isinstance(event.get("agent"), str):
                    node.live.add(event["agent"])
                elif kind == LEAVE_KIND:
                    node.live.discard(str(event.get("agent")))
                elif kind == BROADCAST_KIND:
                    self._relay(event)
        finally:
            await pubsub.aclose()

    def _relay(self, event: dict[str, Any]) -> None:
        """Send a broadcast to every client of this agent but the one it came from."""
        node = self.node
        sender = event["from"]  # decode_event drops a broadcast without a sender
        delivered = {"type": event.get("type"), "data": event.get("data"), "from": sender}
        targets = [
            c
            for c in node.runtime.connections
            if not c.outbound and f"{node.name}/{c.id}" != sender and not c.closed
        ]
        if not targets:
            return

        async def send_all() -> None:
            await asyncio.gather(*(c.send(delivered) for c in targets), return_exceptions=True)

        task = asyncio.get_running_loop().create_task(send_all())
        node.tasks.add(task)
        task.add_done_callback(node.tasks.discard)
