"""Area ``cluster``: messages routed between agents through Redis vs handled in place.

Two families of figures, each beside its baseline of the same run, alternating:

- Through two ``localagent serve --cluster`` subprocesses (agents A and B on the
  same Redis) driven over one WebSocket connection to A: ``echo`` requests
  addressed to B (``"to": B``: A forwards each to B's inbox stream, B handles it
  and writes the reply to A's replies stream) vs the same requests handled by
  A itself (no ``to``), and against bare redis-py doing the same
  request/reply over two streams with as many in flight
  (:mod:`._routed`, :mod:`._streams`). Throughput with 200 in flight, the
  latency p50 and p99 in flight and one at a time, and the agents' CPU per
  message. :func:`._routed.measure_routed` takes the Redis URL: one Redis
  here, another deployment alike.
- The Redis Stream path alone, in this process (two in-process agents, no
  WebSocket): batches of 100 requests forwarded by A's cluster node to B and
  answered (XADD to B's inbox, XREADGROUP COUNT 1000 by B, the handler, XADD
  of the reply + SET of the "handled" record + XACK, XREADGROUP + XACK by A),
  vs bare redis-py doing the same exchange over two streams: a pipeline of
  100 XADD, a responder reading with XREADGROUP COUNT 100 and answering with
  one pipeline of XADD + XACK, a reader doing XREADGROUP COUNT 100 + XACK.

Every reply is checked. The cluster and its keys are unique to the run and
deleted afterwards (the Redis may be the user's, ``--redis URL``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localagent import Server, _codec
from localagent._cluster._entries import Reply, Request
from localagent._cluster._signing import Signer, create_secret_file, read_secret_file
from localagent._protocol import Message

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area
from ._routed import WINDOW, measure_routed, routed_comparisons

if TYPE_CHECKING:
    import redis.asyncio

    from localagent._cluster._node import ClusterNode

__all__ = ["AREA"]

NAME, TITLE = "cluster", "Cluster (agents sharing Redis)"
#: Routed messages' worth of MACs timed per sample (a fifth of a second or so).
MAC_ROUNDS = 20_000
#: Requests per batch on the stream path (and the XREADGROUP COUNT of both sides).
BATCH = 100
#: Seconds a batch or a request may take before the area gives up.
PATIENCE = 30.0


# -- the stream path, in this process -------------------------------------------------


class _Sender:
    """The connection a forwarded message comes from, for :meth:`ClusterNode.forward`."""

    id = "bench"
    outbound = False

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def on_close(self, callback: Any) -> None:
        """Never closes: the bench's sender lives for the run."""

    async def send(self, message: Any) -> None:
        raise RuntimeError(f"echo streamed a message: {message!r}")


async def _node_batches(node: ClusterNode, to: str, batches: int) -> float:
    sender = _Sender()
    started = time.perf_counter()
    for number in range(batches):
        values = range(number * BATCH, (number + 1) * BATCH)
        results = await asyncio.gather(
            *(node.forward(sender, Message(n, "echo", n, to), to) for n in values)  # type: ignore[arg-type]
        )
        if results != [{"data": n} for n in values]:
            raise RuntimeError(f"a batch forwarded to {to} returned {results[:3]!r}...")
    return batches * BATCH / (time.perf_counter() - started)


class _BareExchange:
    """Request/reply over two streams with redis-py alone, batches of :data:`BATCH`."""

    def __init__(self, client: redis.asyncio.Redis, reader: Any, responder: Any, prefix: str):
        self.client, self.reader, self.responder = client, reader, responder
        self.requests, self.replies, self.group = f"{prefix}req", f"{prefix}rep", "bench"
        self._waiting: dict[bytes, asyncio.Future[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count()
        self._stopping = False

    async def start(self) -> None:
        for stream in (self.requests, self.replies):
            await self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._respond()), loop.create_task(self._read())]

    async def _respond(self) -> None:
        while not self._stopping:
            response = await self.responder.xreadgroup(
                self.group, "responder", {self.requests: ">"}, count=BATCH, block=1000
            )
            entries = response[0][1] if response else []
            if not entries:
                continue
            async with self.responder.pipeline(transaction=False) as pipe:
                for _entry_id, fields in entries:
                    msg = _codec.loads(fields[b"msg"])
                    reply = _codec.dumps({"id": msg["id"], "result": {"data": msg["data"]}})
                    pipe.xadd(self.replies, {b"uid": fields[b"uid"], b"msg": reply})
                pipe.xack(self.requests, self.group, *(entry_id for entry_id, _ in entries))
                await pipe.execute()

    async def _read(self) -> None:
        while not self._stopping:
            response = await self.reader.xreadgroup(
                self.group, "reader", {self.replies: ">"}, count=BATCH, block=1000
            )
            entries = response[0][1] if response else []
            for _entry_id, fields in entries:
                future = self._waiting.pop(fields[b"uid"], None)
                if future is not None:
                    future.set_result(_codec.loads(fields[b"msg"]))
            if entries:
                await self.reader.xack(
                    self.replies, self.group, *(entry_id for entry_id, _ in entries)
                )

    async def batches(self, count: int) -> float:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for number in range(count):
            values = range(number * BATCH, (number + 1) * BATCH)
            futures = []
            async with self.client.pipeline(transaction=False) as pipe:
                for n in values:
                    uid = f"u{next(self._ids)}".encode()
                    future = loop.create_future()
                    self._waiting[uid] = future
                    futures.append(future)
                    msg = _codec.dumps({"id": n, "type": "echo", "data": n})
                    pipe.xadd(self.requests, {b"uid": uid, b"msg": msg})
                await pipe.execute()
            async with asyncio.timeout(PATIENCE):
                replies = await asyncio.gather(*futures)
            if [reply["result"]["data"] for reply in replies] != list(values):
                raise RuntimeError("a bare batch came back wrong")
        return count * BATCH / (time.perf_counter() - started)

    async def aclose(self) -> None:
        """Stop the loops after their current read (a redis-py read blocked in XREADGROUP
        does not always end when its task is cancelled)."""
        self._stopping = True
        _done, pending = await asyncio.wait(self._tasks, timeout=5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _mac_seconds(signer: Signer, count: int) -> float:
    """Seconds of MAC work per routed echo: sign and verify its request and its reply.

    Times :meth:`Signer.sign` and :meth:`Signer.verify` on the fields of a real
    request and reply entry of the routed echo (the MAC's input is those fields
    and a few short tags), ``count`` times.
    """
    now = time.time()
    a, b = "127.0.0.1:40001", "127.0.0.1:40002"
    request = Request("0123456789ab-1", f"{a}/c1", b, 1, "echo", 1, now).fields(signer, b)
    reply = Reply("0123456789ab-1", True, {"id": 1, "result": {"data": 1}}, b, 0, now)
    entries = [request, reply.fields(signer, a)]
    parts = [tuple(v for k, v in fields.items() if k != b"mac") for fields in entries]
    started = time.perf_counter()
    for _ in range(count):
        for entry in parts:
            signer.verify(signer.sign(*entry), *entry)
    return (time.perf_counter() - started) / count


def _member(
    ctx: BenchContext, name: str, cluster: str, secret: Path
) -> AbstractAsyncContextManager[Server]:
    """An agent of ``cluster`` in this process (its own config dir, a free port)."""
    return ctx.in_process_agent(
        name,
        overrides={"redis": ctx.redis_url, "cluster": cluster, "cluster_secret_file": secret},
        options=("no:fs", "no:exec"),
    )


def _node(server: Server) -> ClusterNode:
    node = getattr(server.runtime.pm.get_plugin("cluster"), "node", None)
    if node is None:
        raise RuntimeError("the cluster plugin did not start a node")
    return node  # type: ignore[no-any-return]


async def _joined(*nodes: ClusterNode) -> None:
    """Wait until every node registered itself (and created its streams)."""
    async with asyncio.timeout(PATIENCE):
        await asyncio.gather(*(node.joined.wait() for node in nodes))


async def _delete_cluster(client: redis.asyncio.Redis, cluster: str, prefix: str) -> None:
    for pattern in (f"la:{{{cluster}}}*", f"la:{{{cluster}:*", f"{prefix}*"):
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)


async def run(ctx: BenchContext) -> AreaResult:
    if ctx.redis_url is None:
        return AreaResult.skip(NAME, TITLE, ctx.redis_missing or "no Redis")
    try:
        import redis.asyncio
    except ImportError:
        return AreaResult.skip(NAME, TITLE, "redis-py is not installed (localagent[redis])")
    batches = ctx.size(100, 30)
    run_id = secrets.token_hex(4)
    cluster, prefix = f"bench-{run_id}", f"bench-{run_id}:"
    secret = ctx.workdir / f"cluster-secret-{run_id}"  # the agents' shared secret
    create_secret_file(secret)
    series: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        series.setdefault(name, []).append(value)

    bare_client = redis.asyncio.Redis.from_url(ctx.redis_url)
    try:
        ctx.progress("cluster: starting agents")
        series.update(await measure_routed(ctx, ctx.redis_url, cluster, secret, prefix + "pp:"))
        signer = Signer(cluster, key=read_secret_file(secret))
        for routed_rate in series["routed rate"]:
            add("mac", _mac_seconds(signer, MAC_ROUNDS) * 1e6)
            add("routed message", 1e6 / routed_rate)
        ctx.progress("cluster: stream path")
        async with AsyncExitStack() as stack:
            # The in-process agents log here: not their warning about the run's own Redis.
            quiet = logging.getLogger("localagent.cluster")
            stack.callback(quiet.setLevel, quiet.level)
            quiet.setLevel(logging.ERROR)
            a = await stack.enter_async_context(_member(ctx, "a", cluster + "-s", secret))
            b = await stack.enter_async_context(_member(ctx, "b", cluster + "-s", secret))
            node_a, b_name = _node(a), b.url.removeprefix("ws://")
            await _joined(node_a, _node(b))
            reader = redis.asyncio.Redis.from_url(ctx.redis_url, socket_timeout=10.0)
            responder = redis.asyncio.Redis.from_url(ctx.redis_url, socket_timeout=10.0)
            stack.push_async_callback(reader.aclose)
            stack.push_async_callback(responder.aclose)
            bare = _BareExchange(bare_client, reader, responder, prefix)
            await bare.start()
            stack.push_async_callback(bare.aclose)
            await _node_batches(node_a, b_name, max(1, batches // 10))
            await bare.batches(max(1, batches // 10))
            for repetition in range(ctx.repetitions):
                ctx.progress(f"cluster: stream path, {repetition + 1}/{ctx.repetitions}")
                add("stream agent", await _node_batches(node_a, b_name, batches))
                add("stream bare", await bare.batches(batches))
    finally:
        try:
            for name in (cluster, cluster + "-s"):
                await _delete_cluster(bare_client, name, prefix)
        finally:
            await bare_client.aclose()
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=[
            *routed_comparisons(series, "one Redis"),
            Comparison(
                figure=Figure("MACs of a routed message", "µs", series["mac"], False),
                baseline=Figure("a routed message", "µs", series["routed message"], False),
                baseline_name="the routed echo's whole cost (1 / its rate above)",
                target="<= 0.05x",
            ),
            Comparison(
                figure=Figure(f"stream path, batches of {BATCH}", "msg/s", series["stream agent"]),
                baseline=Figure("redis-py XADD/XREADGROUP/XACK", "msg/s", series["stream bare"]),
                baseline_name=f"bare redis-py request/reply over two streams, COUNT {BATCH}",
                target=">= 0.5x",
            ),
        ],
        notes=[
            "routed: two `serve --cluster` subprocesses on one Redis; one WebSocket connection "
            "to A; echo addressed to B vs echo handled by A, and bare redis-py request/reply "
            "over two streams (two tasks in the bench process) with as many in flight",
            f"per sample: {ctx.size(10_000, 3_000)} requests {WINDOW} in flight (their "
            f"latencies give the 'in flight' p50/p99), {ctx.size(1_000, 300)} round trips "
            "one at a time",
            "MACs: HMAC-SHA256 signing and verifying of the routed echo's request and reply "
            "entries (what A and B add per message for the cluster's secret), timed in the "
            "bench process; the ratio is their share of a routed message",
            "stream path: two in-process agents, A's cluster node forwarding to B "
            "(XADD, XREADGROUP, handler, XADD reply + SET done + XACK, XREADGROUP + XACK), vs "
            "bare redis-py doing the same request/reply exchange over two streams "
            f"(no handler, no dedupe record), {batches} batches of {BATCH} per sample",
            f"cluster {cluster}; its keys are deleted afterwards",
        ],
    )


AREA = Area(NAME, TITLE, run)
