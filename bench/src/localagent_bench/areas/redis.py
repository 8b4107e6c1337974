"""Area ``redis``: ``kv`` through an agent on Redis vs bare redis-py asyncio.

The agent subprocess runs with ``--redis`` (its store auto-pipelines the
commands that concurrent requests issue); :class:`~localagent.Client` drives it
over one WebSocket connection. Each pattern is measured beside the same
pattern with redis-py asyncio talking to the same Redis from this process,
agent and bare samples alternating:

- one at a time: ``kv.set`` then ``kv.get`` vs ``SET`` then ``GET``;
- 64 in flight over one connection vs 64 concurrent commands on a pool of 64;
- a batch frame of 64 ``kv.set`` messages vs a pipeline of 64 ``SET``, one
  batch (or pipeline) at a time, the 64 replies collected.

An op is one set or one get. Every get is checked, and so is what each batch
wrote. Keys carry a prefix unique to the run and are deleted at the end: the
Redis may be the user's own (``localagent bench --redis URL``).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import TYPE_CHECKING, Any

import attrs

from localagent import Client, _codec
from localagent._stores import KEY_PREFIX

from .._context import BenchContext, Call, in_flight
from .._model import AreaResult, Comparison, Figure
from . import Area

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["AREA"]

NAME, TITLE = "redis", "Redis"
#: Requests in flight, concurrent commands, and messages per batch or pipeline.
WINDOW = 64
#: Seconds a batch may take before the area gives up (the agent died).
BATCH_TIMEOUT = 30.0


@attrs.frozen
class _Sizes:
    """Per sample: set+get pairs one at a time, pairs 64 in flight, batches of 64."""

    pairs: int
    concurrent_pairs: int
    batches: int

    def scaled(self, factor: float) -> _Sizes:
        return _Sizes(*(max(1, int(size * factor)) for size in attrs.astuple(self)))


@attrs.define
class _Workload:
    """The agent's client, the bare redis-py client, the run's key prefix, the sizes."""

    agent: Client
    bare: redis.asyncio.Redis
    prefix: str
    sizes: _Sizes
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    def key(self, name: object) -> str:
        """A kv key (as the agent names it)."""
        return f"{self.prefix}{name}"

    # -- set + get, one at a time or concurrently -------------------------------------

    def agent_pair(self) -> Call:
        async def call(index: int) -> None:
            # A key per call: with a shared key, a call stalled while others ran
            # (a reconnect, say) reads another call's value and fails the check.
            key = self.key(index)
            await self.agent.request("kv.set", {"key": key, "value": index})
            reply = await self.agent.request("kv.get", {"key": key})
            if reply != {"found": True, "value": index}:
                raise RuntimeError(f"kv.get of {key} returned {reply!r}, not {index}")

        return call

    def bare_pair(self) -> Call:
        async def call(index: int) -> None:
            key = KEY_PREFIX + self.key(index)
            await self.bare.set(key, _codec.dumps(index))
            raw = await self.bare.get(key)
            if raw is None or _codec.loads(raw) != index:
                raise RuntimeError(f"GET {key} returned {raw!r}, not {index}")

        return call

    async def agent_pairs(self, window: int) -> float:
        count = self.sizes.pairs if window == 1 else self.sizes.concurrent_pairs
        return 2 * await in_flight(count, window, self.agent_pair())

    async def bare_pairs(self, window: int) -> float:
        count = self.sizes.pairs if window == 1 else self.sizes.concurrent_pairs
        return 2 * await in_flight(count, window, self.bare_pair())

    # -- batches and pipelines -----------------------------------------------------------

    async def agent_batch(self, number: int) -> None:
        """One batch frame of ``WINDOW`` kv.set messages; wait for every reply."""
        ids = [f"batch-{next(self._ids)}" for _ in range(WINDOW)]
        messages = [
            {"id": msg_id, "type": "kv.set", "data": {"key": self.key(f"b{n}"), "value": number}}
            for n, msg_id in enumerate(ids)
        ]
        await self.agent.send_raw(_codec.dumps({"type": "batch", "messages": messages}))
        waiting = set(ids)
        async with asyncio.timeout(BATCH_TIMEOUT):
            while waiting:
                reply: Any = await self.agent.events.get()
                msg_id = reply.get("id") if isinstance(reply, dict) else None
                if msg_id not in waiting or reply.get("result") != {"ok": True}:
                    raise RuntimeError(f"unexpected reply to a batch frame: {reply!r}")
                waiting.discard(msg_id)

    async def bare_pipeline(self, number: int) -> None:
        """One pipeline of ``WINDOW`` SET commands."""
        async with self.bare.pipeline(transaction=False) as pipe:
            for n in range(WINDOW):
                pipe.set(KEY_PREFIX + self.key(f"p{n}"), _codec.dumps(number))
            results = await pipe.execute()
        if results != [True] * WINDOW:
            raise RuntimeError(f"a pipeline of SET returned {results!r}")

    async def agent_batches(self) -> float:
        started = time.perf_counter()
        for number in range(self.sizes.batches):
            await self.agent_batch(number)
        rate = self.sizes.batches * WINDOW / (time.perf_counter() - started)
        await self.check_batch("b", self.sizes.batches - 1)
        return rate

    async def bare_pipelines(self) -> float:
        started = time.perf_counter()
        for number in range(self.sizes.batches):
            await self.bare_pipeline(number)
        rate = self.sizes.batches * WINDOW / (time.perf_counter() - started)
        await self.check_batch("p", self.sizes.batches - 1)
        return rate

    async def check_batch(self, kind: str, number: int) -> None:
        """Redis holds what the last batch or pipeline wrote."""
        keys = [KEY_PREFIX + self.key(f"{kind}{n}") for n in range(WINDOW)]
        values = await self.bare.mget(keys)
        if any(raw is None or _codec.loads(raw) != number for raw in values):
            raise RuntimeError(f"Redis does not hold what the last {kind!r} batch wrote")

    async def check_store(self) -> None:
        """The agent's kv store is this Redis (a value it sets is there)."""
        key = self.key("check")
        await self.agent.request("kv.set", {"key": key, "value": "redis"})
        raw = await self.bare.get(KEY_PREFIX + key)
        if raw is None or _codec.loads(raw) != "redis":
            raise RuntimeError("the agent's kv store is not the Redis being measured")


async def _sample(workload: _Workload) -> dict[str, float]:
    """One sample of every series, agent and bare alternating."""
    return {
        "single agent": await workload.agent_pairs(1),
        "single bare": await workload.bare_pairs(1),
        "concurrent agent": await workload.agent_pairs(WINDOW),
        "concurrent bare": await workload.bare_pairs(WINDOW),
        "batch agent": await workload.agent_batches(),
        "batch bare": await workload.bare_pipelines(),
    }


async def delete_keys(client: redis.asyncio.Redis, prefix: str) -> int:
    """Delete every key this run wrote (and only those); how many there were."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{KEY_PREFIX}{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += await client.delete(*batch)
            batch = []
    if batch:
        deleted += await client.delete(*batch)
    return deleted


def _comparisons(series: dict[str, list[float]]) -> list[Comparison]:
    bare = "bare redis-py"
    rows = (
        (
            "single",
            "kv 1 in flight",
            "redis-py 1 at a time",
            f"{bare}, one at a time",
            None,
        ),
        (
            "concurrent",
            f"kv {WINDOW} in flight",
            f"redis-py {WINDOW} concurrent",
            f"{bare}, {WINDOW} concurrent",
            ">= 0.5x",
        ),
        (
            "batch",
            f"kv.set batch of {WINDOW}",
            f"redis-py pipeline of {WINDOW}",
            f"{bare}, pipeline of {WINDOW}",
            None,
        ),
    )
    return [
        Comparison(
            figure=Figure(name, "ops/s", series[f"{series_name} agent"]),
            baseline=Figure(bare_name, "ops/s", series[f"{series_name} bare"]),
            baseline_name=bare_what,
            target=target,
        )
        for series_name, name, bare_name, bare_what, target in rows
    ]


async def run(ctx: BenchContext) -> AreaResult:
    if ctx.redis_url is None:
        return AreaResult.skip(NAME, TITLE, ctx.redis_missing or "no Redis")
    try:
        import redis.asyncio
    except ImportError:
        return AreaResult.skip(NAME, TITLE, "redis-py is not installed (localagent[redis])")
    sizes = _Sizes(
        pairs=ctx.size(1_200, 300),
        concurrent_pairs=ctx.size(5_000, 1_600),
        batches=ctx.size(160, 50),
    )
    prefix = f"bench-{secrets.token_hex(6)}:"
    pool = redis.asyncio.BlockingConnectionPool.from_url(ctx.redis_url, max_connections=WINDOW)
    bare = redis.asyncio.Redis.from_pool(pool)
    series: dict[str, list[float]] = {}
    try:
        with ctx.agent("", "--redis", ctx.redis_url) as agent:
            async with Client(agent.url, agent.token) as client:
                workload = _Workload(client, bare, prefix, sizes.scaled(0.1))
                await workload.check_store()
                ctx.progress("redis: warm-up")
                await _sample(workload)
                workload.sizes = sizes
                for repetition in range(ctx.repetitions):
                    ctx.progress(f"redis: kv patterns, {repetition + 1}/{ctx.repetitions}")
                    for name, value in (await _sample(workload)).items():
                        series.setdefault(name, []).append(value)
    finally:
        try:
            await delete_keys(bare, prefix)
        finally:
            await bare.aclose()
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=_comparisons(series),
        notes=[
            "an op is one set or one get; the agent on --redis over one WebSocket connection, "
            "redis-py on the same Redis from the bench process",
            f"per sample: {sizes.pairs} set+get pairs one at a time, "
            f"{sizes.concurrent_pairs} pairs {WINDOW} in flight, "
            f"{sizes.batches} batches of {WINDOW} sets",
            f"redis-py asyncio: {WINDOW} concurrent commands on a pool of {WINDOW} connections; "
            f"one non-transactional pipeline of {WINDOW} SET at a time",
            f"keys under {KEY_PREFIX}{prefix}, deleted afterwards",
        ],
    )


AREA = Area(NAME, TITLE, run)
