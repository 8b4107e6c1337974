"""Bare redis-py request/reply over two Redis streams: the cluster area's baseline.

What a routed request costs Redis and the wire, with none of the agents'
work: a requester keeps ``window`` requests in flight (``XADD`` to a request
stream, one pipeline per batch), a responder task reads them
(``XREADGROUP COUNT batch``) and answers each with one pipeline of reply
``XADD`` s and one ``XACK``; the requester reads the replies the same way,
acknowledges them and sends as many new requests as it got replies (in the
same pipeline). Both tasks run in the bench process, each on its own
connection.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Any

from localagent import _codec

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["StreamPingPong"]

_GROUP = "bench"


def _entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not response:
        return []
    if isinstance(response, dict):
        streams = list(response.values())
        return list(streams[0][0]) if streams and streams[0] else []
    return list(response[0][1])


class StreamPingPong:
    """``echo`` request/reply over two streams with redis-py alone, ``window`` in flight.

    Args:
        url: The Redis to use.
        prefix: The streams' key prefix (unique to the run, without braces; the
            caller deletes the keys).
        window: Requests in flight.
        batch: ``COUNT`` of every ``XREADGROUP`` (the agents' read batch).
    """

    def __init__(self, url: str, prefix: str, *, window: int, batch: int) -> None:
        self.url, self.window, self.batch = url, window, batch
        # One hash tag: both streams in one slot, should the Redis be a Redis Cluster.
        self.requests, self.replies = f"{prefix}{{pp}}req", f"{prefix}{{pp}}rep"
        self._clients: list[redis.asyncio.Redis] = []
        self._responder: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = itertools.count()

    async def start(self) -> None:
        import redis.asyncio

        self._clients = [
            redis.asyncio.Redis.from_url(self.url, socket_timeout=30.0) for _ in range(2)
        ]
        for stream in (self.requests, self.replies):
            await self._clients[0].xgroup_create(stream, _GROUP, id="0", mkstream=True)
        self._responder = asyncio.get_running_loop().create_task(self._respond())

    async def _respond(self) -> None:
        client = self._clients[1]
        while not self._stopping:
            response = await client.xreadgroup(
                _GROUP, "responder", {self.requests: ">"}, count=self.batch, block=200
            )
            entries = _entries(response)
            if not entries:
                continue
            async with client.pipeline(transaction=False) as pipe:
                for _entry_id, fields in entries:
                    msg = _codec.loads(fields[b"msg"])
                    reply = _codec.dumps({"id": msg["id"], "result": {"data": msg["data"]}})
                    pipe.xadd(self.replies, {b"uid": fields[b"uid"], b"msg": reply})
                pipe.xack(self.requests, _GROUP, *(entry_id for entry_id, _ in entries))
                await pipe.execute()

    def _send(self, pipe: Any, count: int, waiting: dict[bytes, int]) -> None:
        for _ in range(count):
            n = next(self._ids)
            uid = b"u%d" % n
            waiting[uid] = n
            msg = _codec.dumps({"id": n, "type": "echo", "data": n})
            pipe.xadd(self.requests, {b"uid": uid, b"msg": msg})

    async def run(self, count: int, patience: float = 30.0) -> float:
        """Send ``count`` requests, ``window`` in flight; replies per second.

        Raises:
            RuntimeError: A reply came back wrong or twice.
        """
        client = self._clients[0]
        waiting: dict[bytes, int] = {}
        started = time.perf_counter()
        sent = min(self.window, count)
        async with client.pipeline(transaction=False) as pipe:
            self._send(pipe, sent, waiting)
            await pipe.execute()
        answered = 0
        async with asyncio.timeout(patience):
            while answered < count:
                response = await client.xreadgroup(
                    _GROUP, "requester", {self.replies: ">"}, count=self.batch, block=200
                )
                entries = _entries(response)
                if not entries:
                    continue
                for _entry_id, fields in entries:
                    n = waiting.pop(fields[b"uid"], None)
                    if n is None or _codec.loads(fields[b"msg"])["result"] != {"data": n}:
                        raise RuntimeError(f"a bare reply came back wrong: {fields!r}")
                answered += len(entries)
                more = min(len(entries), count - sent)
                sent += more
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xack(self.replies, _GROUP, *(entry_id for entry_id, _ in entries))
                    self._send(pipe, more, waiting)
                    await pipe.execute()
        return count / (time.perf_counter() - started)

    async def aclose(self) -> None:
        """Stop the responder after its current read, close the connections."""
        self._stopping = True
        if self._responder is not None:
            _done, pending = await asyncio.wait([self._responder], timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(self._responder, return_exceptions=True)
        for client in self._clients:
            await client.aclose()
