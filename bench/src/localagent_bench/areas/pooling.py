"""Area ``pooling``: connection pools, WebSocket and Redis, against a connection per use.

Run with the ``pooling`` plugin off and on (``bench_areas``), same run. Every
figure is measured beside its baseline, alternating, in the same variant:

- WebSocket, ``pooling on`` only (the pool is the plugin's
  ``localagent_pooling.ClientPool``; the agent is a ``localagent serve``
  subprocess): a pooled acquire vs opening a fresh connection (handshake with
  the token), p50 of each; then 50 concurrent callers sending ``ping``
  requests through the pool vs each opening a connection per request.
- kv on Redis through the agent (``--redis``), both variants: 50 callers in
  flight on one WebSocket connection doing ``kv.set`` + ``kv.get``, vs
  redis-py with a new connection per operation (50 concurrent callers), and
  vs bare redis-py pipelines of 50 commands, one pipeline at a time. With the
  plugin on, the store has the plugin's tuned pool and auto-pipelines; off, it
  is redis-py's plain pool, one round trip per command.
"""

from __future__ import annotations

import secrets
import statistics
import time
from typing import Any

from localagent import Client, _codec
from localagent._stores import KEY_PREFIX

from .._context import BenchContext, in_flight, plugin_option_values
from .._model import AreaResult, Comparison, Figure
from . import Area
from .redis import delete_keys

__all__ = ["AREA"]

NAME, TITLE = "pooling", "Connection pooling"
#: Concurrent callers in the caller figures; commands per bare pipeline.
CALLERS = 50


# -- WebSocket ------------------------------------------------------------------------


async def _connect_times(url: str, token: str, count: int) -> list[float]:
    """Open ``count`` fresh connections one after another; seconds each open took."""
    times = []
    for _ in range(count):
        client = Client(url, token, direct=True)
        started = time.perf_counter()
        await client.open()
        times.append(time.perf_counter() - started)
        await client.aclose()
    return times


async def _acquire_times(pool: Any, count: int) -> list[float]:
    """Acquire and release a pooled connection ``count`` times; seconds each acquire took."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client = await pool.acquire()
        times.append(time.perf_counter() - started)
        pool.release(client)
    return times


def _check_pong(reply: Any) -> None:
    if reply != {"pong": True}:
        raise RuntimeError(f"ping returned {reply!r}")


async def _pooled_callers(pool: Any, count: int) -> float:
    async def call(index: int) -> None:
        _check_pong(await pool.request("ping"))

    return await in_flight(count, CALLERS, call)


async def _fresh_callers(url: str, token: str, count: int) -> float:
    async def call(index: int) -> None:
        async with Client(url, token, direct=True) as client:
            _check_pong(await client.request("ping"))

    return await in_flight(count, CALLERS, call)


async def _websocket(ctx: BenchContext) -> tuple[list[Comparison], list[str]]:
    try:
        from localagent_pooling import ClientPool
    except ImportError:
        return [], ["the WebSocket pool figures need localagent-pooling installed"]
    connects, acquires = ctx.size(300, 100), ctx.size(5_000, 2_000)
    pooled_requests, fresh_requests = ctx.size(10_000, 3_000), ctx.size(600, 200)
    series: dict[str, list[float]] = {}
    with ctx.agent("") as agent:
        token = agent.token
        async with ClientPool(agent.url, token, min_size=CALLERS // 5, max_size=CALLERS) as pool:
            ctx.progress("pooling: warm-up")
            await _connect_times(agent.url, token, 5)
            await _acquire_times(pool, 100)
            await _pooled_callers(pool, 500)
            await _fresh_callers(agent.url, token, 50)
            for repetition in range(ctx.repetitions):
                ctx.progress(f"pooling: WebSocket, {repetition + 1}/{ctx.repetitions}")
                samples = {
                    "connect": statistics.median(await _connect_times(agent.url, token, connects)),
                    "acquire": statistics.median(await _acquire_times(pool, acquires)),
                    "pooled": await _pooled_callers(pool, pooled_requests),
                    "fresh": await _fresh_callers(agent.url, token, fresh_requests),
                }
                for name, value in samples.items():
                    series.setdefault(name, []).append(value)
            stats = pool.stats()
    comparisons = [
        Comparison(
            figure=Figure("pooled acquire p50", "µs", [s * 1e6 for s in series["acquire"]], False),
            baseline=Figure("fresh connect p50", "µs", [s * 1e6 for s in series["connect"]], False),
            baseline_name="a fresh connection (handshake with the token), same run",
            target="<= 50 µs and >= 20x",
        ),
        Comparison(
            figure=Figure(f"{CALLERS} callers, pooled", "req/s", series["pooled"]),
            baseline=Figure(f"{CALLERS} callers, a connection each", "req/s", series["fresh"]),
            baseline_name="a connection per request, same run",
            target=">= 10x",
        ),
    ]
    notes = [
        f"per sample: {connects} fresh connects, {acquires} pooled acquires (p50 of each); "
        f"{pooled_requests} pooled pings and {fresh_requests} pings on a connection each, "
        f"{CALLERS} callers",
        f"the pool: min_size {CALLERS // 5}, max_size {CALLERS}; at the end {stats.size} "
        f"connections, {stats.created} created, {stats.replaced} replaced",
    ]
    return comparisons, notes


# -- kv on Redis --------------------------------------------------------------------------


async def _agent_kv(client: Client, prefix: str, pairs: int) -> float:
    """``pairs`` kv.set + kv.get with ``CALLERS`` in flight; ops/s."""

    async def call(index: int) -> None:
        key = f"{prefix}{index}"  # a key per call, as in the redis area
        await client.request("kv.set", {"key": key, "value": index})
        reply = await client.request("kv.get", {"key": key})
        if reply != {"found": True, "value": index}:
            raise RuntimeError(f"kv.get of {key} returned {reply!r}, not {index}")

    return 2 * await in_flight(pairs, CALLERS, call)


async def _connection_per_op(url: str, prefix: str, ops: int) -> float:
    """``ops`` SET commands, each on a new redis-py connection, ``CALLERS`` concurrent; ops/s."""
    import redis.asyncio

    async def call(index: int) -> None:
        connection = redis.asyncio.Redis.from_url(url, single_connection_client=True)
        try:
            key = f"{KEY_PREFIX}{prefix}{index}"
            if not await connection.set(key, _codec.dumps(index)):
                raise RuntimeError(f"SET {key} failed")
        finally:
            await connection.aclose()

    return await in_flight(ops, CALLERS, call)


async def _pipelined(bare: Any, prefix: str, pipelines: int) -> float:
    """``pipelines`` pipelines of ``CALLERS`` commands (SET and GET halves), one at a time."""
    half = CALLERS // 2
    started = time.perf_counter()
    for number in range(pipelines):
        async with bare.pipeline(transaction=False) as pipe:
            for n in range(half):
                pipe.set(f"{KEY_PREFIX}{prefix}p{n}", _codec.dumps(number))
            for n in range(half):
                pipe.get(f"{KEY_PREFIX}{prefix}p{n}")
            results = await pipe.execute()
        if results[half:] != [_codec.dumps(number)] * half:
            raise RuntimeError("a pipeline did not read back what it wrote")
    return pipelines * 2 * half / (time.perf_counter() - started)


async def _kv(ctx: BenchContext) -> tuple[list[Comparison], list[str]]:
    if ctx.redis_url is None:
        return [], [f"kv on Redis skipped: {ctx.redis_missing or 'no Redis'}"]
    try:
        import redis.asyncio
    except ImportError:
        return [], ["kv on Redis skipped: redis-py is not installed (localagent[redis])"]
    pairs, per_op, pipelines = ctx.size(5_000, 1_500), ctx.size(1_500, 400), ctx.size(400, 150)
    prefix = f"bench-{secrets.token_hex(6)}:"
    bare = redis.asyncio.Redis.from_url(ctx.redis_url)
    series: dict[str, list[float]] = {}
    try:
        with ctx.agent("", "--redis", ctx.redis_url) as agent:
            async with Client(agent.url, agent.token, direct=True) as client:
                ctx.progress("pooling: kv warm-up")
                await _agent_kv(client, prefix, 200)
                await _connection_per_op(ctx.redis_url, prefix, 50)
                await _pipelined(bare, prefix, 20)
                for repetition in range(ctx.repetitions):
                    ctx.progress(f"pooling: kv on Redis, {repetition + 1}/{ctx.repetitions}")
                    samples = {
                        "agent": await _agent_kv(client, prefix, pairs),
                        "per op": await _connection_per_op(ctx.redis_url, prefix, per_op),
                        "pipelined": await _pipelined(bare, prefix, pipelines),
                    }
                    for name, value in samples.items():
                        series.setdefault(name, []).append(value)
    finally:
        try:
            await delete_keys(bare, prefix)
        finally:
            await bare.aclose()
    agent_name = f"kv via the agent, {CALLERS} in flight"
    comparisons = [
        Comparison(
            figure=Figure(agent_name, "ops/s", series["agent"]),
            baseline=Figure(
                f"redis-py, a connection per op, {CALLERS} callers", "ops/s", series["per op"]
            ),
            baseline_name="redis-py, a new connection per operation, same run",
            target=">= 10x (pooling on)",
        ),
        Comparison(
            figure=Figure(f"{agent_name} (vs pipelined)", "ops/s", series["agent"]),
            baseline=Figure(f"redis-py pipelines of {CALLERS}", "ops/s", series["pipelined"]),
            baseline_name=f"bare redis-py, pipelines of {CALLERS}, same run",
            target=">= 0.5x (pooling on)",
        ),
    ]
    notes = [
        f"kv: an op is one kv.set or kv.get; per sample {pairs} set+get pairs through the agent, "
        f"{per_op} SETs on a connection each, {pipelines} pipelines of {CALLERS}",
        f"keys under {KEY_PREFIX}{prefix}, deleted afterwards",
    ]
    return comparisons, notes


async def run(ctx: BenchContext) -> AreaResult:
    on = "pooling" in plugin_option_values(ctx.plugin_options)
    comparisons: list[Comparison] = []
    notes: list[str] = []
    if on:
        ws_comparisons, ws_notes = await _websocket(ctx)
        comparisons += ws_comparisons
        notes += ws_notes
    else:
        notes.append("the WebSocket pool figures are measured in the 'pooling on' run")
    kv_comparisons, kv_notes = await _kv(ctx)
    comparisons += kv_comparisons
    notes += kv_notes
    if not comparisons:
        return AreaResult.skip(NAME, TITLE, "; ".join(notes))
    return AreaResult(area=NAME, title=TITLE, comparisons=comparisons, notes=notes)


AREA = Area(NAME, TITLE, run)
