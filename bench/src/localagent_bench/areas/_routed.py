"""Routed vs local ``echo`` through two ``serve --cluster`` agents on the Redis at a URL.

:func:`measure_routed` starts agents A and B on ``redis_url`` and drives
them over one WebSocket connection to A, alternating in each repetition:
``echo`` handled by A, the same addressed to B (``"to": B``), and bare
redis-py doing the request/reply over two streams with the same number in
flight and the same read batch (:class:`~._streams.StreamPingPong`). It
also times round trips one at a time, each request's latency under load,
and, where ``/proc`` tells, the CPU each agent spends per message. The
Redis URL is a parameter: one Redis, or another deployment, same figures.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

from localagent import Client, _codec
from localagent._cluster._node import READ_BATCH

from .._context import BenchContext, in_flight, percentile
from .._model import Comparison, Figure
from ._streams import StreamPingPong

__all__ = ["WINDOW", "Requests", "measure_routed", "routed_comparisons"]

#: Requests in flight over the WebSocket connection (and in the bare exchange).
WINDOW = 200
#: Seconds a request may take before the area gives up.
PATIENCE = 30.0


class Requests:
    """Raw ``echo`` requests, with or without ``to``, over one :class:`Client`.

    Replies are matched by string id and checked; each request's latency is
    kept in :attr:`latencies` (seconds) until cleared.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.latencies: list[float] = []
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            item = await self.client.events.get()
            msg_id = item.get("id") if type(item) is dict else None
            future = self._waiting.pop(msg_id, None) if isinstance(msg_id, str) else None
            if future is not None and not future.done():
                future.set_result(item)

    async def echo(self, value: int, to: str | None) -> None:
        msg_id = f"r{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        message: dict[str, Any] = {"id": msg_id, "type": "echo", "data": value}
        if to is not None:
            message["to"] = to
        started = time.perf_counter()
        await self.client.send_raw(_codec.dumps(message))
        async with asyncio.timeout(PATIENCE):
            reply = await future
        self.latencies.append(time.perf_counter() - started)
        if reply.get("result") != {"data": value}:
            raise RuntimeError(f"echo {value} to {to or 'A'} returned {reply!r}")

    async def throughput(self, count: int, to: str | None) -> float:
        """Messages per second with :data:`WINDOW` in flight."""

        async def call(index: int) -> None:
            await self.echo(index, to)

        return await in_flight(count, WINDOW, call)

    async def round_trips(self, count: int, to: str | None) -> list[float]:
        """``count`` requests one at a time: their round trips (seconds)."""
        self.latencies.clear()
        for index in range(count):
            await self.echo(index, to)
        return list(self.latencies)

    async def aclose(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``None`` without ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Cpu:
    """CPU microseconds per message of some processes over a measured stretch."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._before: list[float | None] = []

    def start(self) -> None:
        self._before = [cpu_seconds(pid) for pid in self.pids]

    def per_message(self, count: int) -> float | None:
        total = 0.0
        for pid, before in zip(self.pids, self._before, strict=True):
            after = cpu_seconds(pid)
            if before is None or after is None:
                return None
            total += after - before
        return total / count * 1e6


async def until_joined(requests: Requests, b_name: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while True:  # B joins within a second or so of listening
        try:
            await requests.echo(0, b_name)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def measure_routed(
    ctx: BenchContext, redis_url: str, cluster: str, secret: Path, prefix: str
) -> dict[str, list[float]]:
    """Samples of the routed figures on the Redis at ``redis_url``, by series name.

    Series: ``local rate``, ``routed rate``, ``bare rate`` (msg/s);
    ``local|routed load p50|p99`` (ms, each request's latency at
    :data:`WINDOW` in flight); ``local|routed p50|p99`` (ms, one at a time);
    ``local cpu``, ``routed cpu`` (µs of the agents' CPU per message, when
    ``/proc`` tells), and ``local|routed cpu A|B|client`` (each process's).
    The bare exchange's streams start with ``prefix``.
    """
    count = ctx.size(10_000, 3_000)
    trips = ctx.size(1_000, 300)
    series: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            series.setdefault(name, []).append(value)

    options = ["", "--redis", redis_url, "--cluster", cluster]
    options += ["--cluster-secret-file", str(secret)]
    bare = StreamPingPong(redis_url, prefix, window=WINDOW, batch=READ_BATCH)
    await bare.start()
    try:
        with ctx.agent(*options) as agent_a, ctx.agent(*options) as agent_b:
            b_name = agent_b.url.removeprefix("ws://")
            cpu_local, cpu_routed = _Cpu([agent_a.pid]), _Cpu([agent_a.pid, agent_b.pid])
            # Each process apart: A, B, and the client (this process).
            apart = {"A": agent_a.pid, "B": agent_b.pid, "client": os.getpid()}
            cpu_apart = {who: _Cpu([pid]) for who, pid in apart.items()}
            async with Client(agent_a.url, agent_a.token) as client:
                requests = Requests(client)
                try:
                    await until_joined(requests, b_name)
                    ctx.progress("cluster: warm-up")
                    await requests.throughput(count // 10, b_name)
                    await requests.throughput(count // 10, None)
                    await bare.run(count // 10)
                    for repetition in range(ctx.repetitions):
                        ctx.progress(f"cluster: routed, {repetition + 1}/{ctx.repetitions}")
                        for to, kind, cpu in (
                            (None, "local", cpu_local),
                            (b_name, "routed", cpu_routed),
                        ):
                            requests.latencies.clear()
                            cpu.start()
                            for each in cpu_apart.values():
                                each.start()
                            add(f"{kind} rate", await requests.throughput(count, to))
                            add(f"{kind} cpu", cpu.per_message(count))
                            for who, each in cpu_apart.items():
                                add(f"{kind} cpu {who}", each.per_message(count))
                            add(f"{kind} load p50", percentile(requests.latencies, 50) * 1000)
                            add(f"{kind} load p99", percentile(requests.latencies, 99) * 1000)
                        add("bare rate", await bare.run(count))
                        for to, kind in ((None, "local"), (b_name, "routed")):
                            times = await requests.round_trips(trips, to)
                            add(f"{kind} p50", percentile(times, 50) * 1000)
                            add(f"{kind} p99", percentile(times, 99) * 1000)
                finally:
                    await requests.aclose()
    finally:
        await bare.aclose()
    return series


def routed_comparisons(series: dict[str, list[float]], where: str) -> list[Comparison]:
    """The figures of :func:`measure_routed`'s ``series``, named for ``where`` ("one Redis")."""
    same = "the same requests handled by the first agent"
    comparisons = [
        Comparison(
            figure=Figure(
                f"routed echo, {WINDOW} in flight, {where}", "msg/s", series["routed rate"]
            ),
            baseline=Figure("echo handled by A", "msg/s", series["local rate"]),
            baseline_name=same,
            target=">= 0.8x",
        ),
        Comparison(
            figure=Figure(f"routed echo vs bare Streams, {where}", "msg/s", series["routed rate"]),
            baseline=Figure("redis-py XADD/XREADGROUP/XACK", "msg/s", series["bare rate"]),
            baseline_name=f"bare redis-py request/reply over two streams, {WINDOW} in flight, "
            f"COUNT {READ_BATCH}",
        ),
    ]
    for kind, title in (("load p", f"{WINDOW} in flight"), ("p", "one at a time")):
        for quantile in (50, 99):
            routed, local = series[f"routed {kind}{quantile}"], series[f"local {kind}{quantile}"]
            comparisons.append(
                Comparison(
                    figure=Figure(f"routed p{quantile}, {title}", "ms", routed, False),
                    baseline=Figure(f"local p{quantile}, {title}", "ms", local, False),
                    baseline_name=same,
                )
            )
    if "routed cpu" in series and "local cpu" in series:
        comparisons.append(
            Comparison(
                figure=Figure("agents' CPU per routed echo", "µs", series["routed cpu"], False),
                baseline=Figure("A's CPU per local echo", "µs", series["local cpu"], False),
                baseline_name="A and B together (routed) vs A alone (local), from /proc",
            )
        )
    # Each process apart; B does nothing for a local echo: its figure is set beside A's.
    for who, beside in (("A", "A"), ("B", "A"), ("client", "client")):
        routed_series, beside_series = f"routed cpu {who}", f"local cpu {beside}"
        if routed_series in series and beside_series in series:
            comparisons.append(
                Comparison(
                    figure=Figure(
                        f"{who}'s CPU per routed echo", "µs", series[routed_series], False
                    ),
                    baseline=Figure(
                        f"{beside}'s CPU per local echo", "µs", series[beside_series], False
                    ),
                    baseline_name=f"{beside}'s CPU per local echo, from /proc",
                )
            )
    return comparisons
