"""Area ``redis-cluster``: routed messages with the agents on a real 3-shard Redis Cluster.

Everything runs on private servers started for the area: a Redis Cluster of
3 primaries with one replica each (:class:`localagent.testing.RedisClusterServer`)
and a lone ``redis-server`` beside it, neither persisting anything. In each
repetition, alternating, over one WebSocket connection per pair of agents:

- ``echo`` requests handled by agent A itself (no ``to``), and routed to agent
  B (``"to": B``) with A and B on the lone Redis, on the cluster, and on the
  cluster with ``cluster_wait_replicas = 1`` (a ``WAIT 1`` after each node's
  writes of every pipeline: the cost of confirming each routed write on a
  replica). Throughput with 64 in flight, and round trips one at a time.
- The Redis Stream path alone on the cluster, in this process: batches of 100
  requests forwarded by A's cluster node to B and answered, vs bare redis-py's
  cluster client doing the same exchange over two streams (a pipeline of 100
  ``XADD``, ``XREADGROUP COUNT 100`` + a pipeline of ``XADD`` replies and
  ``XACK``, ``XREADGROUP COUNT 100`` + ``XACK``), the two streams on different
  slots as an agent's inbox and its sender's replies stream are.

Every reply is checked.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from contextlib import AsyncExitStack, ExitStack
from typing import Any

from localagent import Client
from localagent._cluster._signing import create_secret_file

from .._context import BenchContext, percentile
from .._model import AreaResult, Comparison, Figure
from . import Area
from ._routed import WINDOW, Requests, until_joined
from .cluster import _BareExchange, _joined, _node, _node_batches

__all__ = ["AREA"]

NAME, TITLE = "redis-cluster", "Redis Cluster (agents on a 3-shard cluster)"
#: Requests per batch on the stream path (and the XREADGROUP COUNT of both sides).
BATCH = 100


async def run(ctx: BenchContext) -> AreaResult:
    if shutil.which("redis-server") is None:
        return AreaResult.skip(NAME, TITLE, "no redis-server binary")
    try:
        import redis.asyncio.cluster  # noqa: F401
    except ImportError:
        return AreaResult.skip(NAME, TITLE, "redis-py is not installed (localagent[redis])")
    from localagent.testing import RedisClusterServer, RedisServer

    requests_count = ctx.size(6_000, 2_000)
    trips = ctx.size(600, 200)
    batches = ctx.size(60, 20)
    series: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        series.setdefault(name, []).append(value)

    secret = ctx.workdir / "cluster-secret"
    create_secret_file(secret)
    with ExitStack() as servers:
        ctx.progress("redis-cluster: starting a Redis Cluster and a lone Redis")
        cluster_server = servers.enter_context(
            RedisClusterServer(ctx.workdir / "redis-cluster", replicas=1)
        )
        lone = RedisServer(ctx.workdir / "redis-lone", durable=False)
        lone.start()
        servers.callback(lone.stop)
        await _routed(ctx, cluster_server.url, lone.url, secret, requests_count, trips, add)
        waits = _wait_calls(cluster_server)
        await _stream_path(ctx, cluster_server.url, secret, batches, add)
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=_comparisons(series),
        notes=[
            "private servers: a Redis Cluster of 3 primaries with 1 replica each, and a lone "
            "redis-server, no persistence; two `serve --cluster` subprocesses per setup, "
            "one WebSocket connection to A",
            f"per sample: {requests_count} echo requests {WINDOW} in flight, {trips} round "
            "trips one at a time, the setups alternating",
            "WAIT: cluster_wait_replicas = 1, a WAIT 1 after each node's writes of every "
            f"pipeline of routed writes ({waits} WAIT commands ran on the cluster's nodes)",
            f"stream path: in-process agents on the cluster vs redis-py's cluster client, "
            f"{batches} batches of {BATCH} per sample",
        ],
    )


def _wait_calls(server: Any) -> int:
    """``WAIT`` commands the cluster's nodes ran (``INFO commandstats``)."""
    total = 0
    for node in server.nodes:
        with server.client(node) as client:
            stats = client.info("commandstats").get("cmdstat_wait", {})
            total += int(stats.get("calls", 0))
    return total


async def _routed(
    ctx: BenchContext,
    cluster_url: str,
    lone_url: str,
    secret: Any,
    count: int,
    trips: int,
    add: Any,
) -> None:
    wait_env = {**ctx.env(), "LOCALAGENT_CLUSTER_WAIT_REPLICAS": "1"}
    setups: dict[str, tuple[str, dict[str, str] | None]] = {
        "lone": (lone_url, None),
        "cluster": (cluster_url, None),
    }
    setups["cluster wait"] = (cluster_url, wait_env)
    async with AsyncExitStack() as stack:
        pairs: dict[str, tuple[Requests, str]] = {}
        for name, (url, env) in setups.items():
            ctx.progress(f"redis-cluster: starting agents ({name})")
            cluster = f"bench-{secrets.token_hex(4)}"
            options = ["", "--redis", url, "--cluster", cluster]
            options += ["--cluster-secret-file", str(secret)]
            agent_a = stack.enter_context(ctx.agent(*options, env=env))
            agent_b = stack.enter_context(ctx.agent(*options, env=env))
            client = await stack.enter_async_context(Client(agent_a.url, agent_a.token))
            requests = Requests(client)
            stack.push_async_callback(requests.aclose)
            b_name = agent_b.url.removeprefix("ws://")
            await until_joined(requests, b_name)
            pairs[name] = (requests, b_name)
        ctx.progress("redis-cluster: warm-up")
        for requests, b_name in pairs.values():
            await requests.throughput(count // 10, b_name)
        await pairs["cluster"][0].throughput(count // 10, None)
        for repetition in range(ctx.repetitions):
            ctx.progress(f"redis-cluster: routed, {repetition + 1}/{ctx.repetitions}")
            add("local rate", await pairs["cluster"][0].throughput(count, None))
            for name, (requests, b_name) in pairs.items():
                add(f"{name} rate", await requests.throughput(count, b_name))
            for name, (requests, b_name) in pairs.items():
                times = await requests.round_trips(trips, b_name)
                add(f"{name} p50", percentile(times, 50) * 1000)
                add(f"{name} p99", percentile(times, 99) * 1000)


async def _stream_path(
    ctx: BenchContext, cluster_url: str, secret: Any, batches: int, add: Any
) -> None:
    import redis.asyncio.cluster

    ctx.progress("redis-cluster: stream path")
    async with AsyncExitStack() as stack:
        quiet = logging.getLogger("localagent.cluster")  # not its warning about the open Redis
        stack.callback(quiet.setLevel, quiet.level)
        quiet.setLevel(logging.ERROR)
        overrides = {"redis": cluster_url, "cluster": "bench-s", "cluster_secret_file": secret}
        members = [
            await stack.enter_async_context(
                ctx.in_process_agent(name, overrides=overrides, options=("no:fs", "no:exec"))
            )
            for name in ("a", "b")
        ]
        node_a, b_name = _node(members[0]), members[1].url.removeprefix("ws://")
        await _joined(node_a, _node(members[1]))

        def client(**options: Any) -> redis.asyncio.cluster.RedisCluster:
            return redis.asyncio.cluster.RedisCluster.from_url(cluster_url, **options)

        bare_client = client()
        reader, responder = client(socket_timeout=10.0), client(socket_timeout=10.0)
        for each in (bare_client, reader, responder):
            stack.push_async_callback(each.aclose)
        bare = _BareExchange(bare_client, reader, responder, "bench-bare:")  # type: ignore[arg-type]
        await bare.start()
        stack.push_async_callback(bare.aclose)
        await _node_batches(node_a, b_name, max(1, batches // 10))
        await bare.batches(max(1, batches // 10))
        for repetition in range(ctx.repetitions):
            ctx.progress(f"redis-cluster: stream path, {repetition + 1}/{ctx.repetitions}")
            add("stream agent", await _node_batches(node_a, b_name, batches))
            add("stream bare", await bare.batches(batches))


def _comparisons(series: dict[str, list[float]]) -> list[Comparison]:
    def rate(name: str, label: str) -> Figure:
        return Figure(label, "msg/s", series[f"{name} rate"])

    def ms(name: str, label: str) -> Figure:
        return Figure(label, "ms", series[name], False)

    return [
        Comparison(
            figure=rate("cluster", f"routed echo on the cluster, {WINDOW} in flight"),
            baseline=rate("local", "echo handled by A"),
            baseline_name="the same requests handled by the first agent",
        ),
        Comparison(
            figure=rate("cluster", "routed echo on the cluster"),
            baseline=rate("lone", "routed echo on one Redis"),
            baseline_name="the same routed requests with the agents on a lone Redis",
        ),
        Comparison(
            figure=rate("cluster wait", "routed echo on the cluster, WAIT 1"),
            baseline=rate("cluster", "routed echo on the cluster, no WAIT"),
            baseline_name="the same routed requests without WAIT",
        ),
        Comparison(
            figure=ms("cluster p50", "routed round trip p50, cluster"),
            baseline=ms("lone p50", "routed round trip p50, one Redis"),
            baseline_name="one at a time, agents on a lone Redis",
        ),
        Comparison(
            figure=ms("cluster p99", "routed round trip p99, cluster"),
            baseline=ms("lone p99", "routed round trip p99, one Redis"),
            baseline_name="one at a time, agents on a lone Redis",
        ),
        Comparison(
            figure=ms("cluster wait p50", "routed round trip p50, cluster, WAIT 1"),
            baseline=ms("cluster p50", "routed round trip p50, cluster, no WAIT"),
            baseline_name="one at a time, without WAIT",
        ),
        Comparison(
            figure=Figure(
                f"stream path on the cluster, batches of {BATCH}", "msg/s", series["stream agent"]
            ),
            baseline=Figure("redis-py cluster client streams", "msg/s", series["stream bare"]),
            baseline_name=f"bare redis-py RedisCluster request/reply over two streams, "
            f"COUNT {BATCH}",
        ),
    ]


AREA = Area(NAME, TITLE, run)
