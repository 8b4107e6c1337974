"""Area ``cleanup``: what is left behind after many connect/disconnect cycles.

An agent runs in this process (``Server.create(port=0)``, built-in plugins plus
the variant's ``-p`` options) and :class:`localagent.Client` connects to it over
a real loopback socket: each cycle opens a connection with the token, sends one
``ping``, checks the reply and closes. After a warm-up of a few cycles, and
again after the measured cycles, this process counts (after ``gc.collect()``)
the garbage collector's objects, its open file descriptors (``/proc/self/fd``)
and its asyncio tasks. Both counts are taken once the agent has finished
serving every closed connection (its ``connections`` and ``in_flight`` sets are
empty; at most :data:`SETTLE_TIMEOUT` seconds), so a connection in the middle
of closing is not counted as a leak.

The figures are the growth of each count, with no baseline: file descriptors
and tasks must not grow at all; the object count may move by a few (caches,
free lists, the event loop's internals), and only a growth of the order of
the number of cycles means something is kept per connection.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time

import attrs

from localagent import Client, Server

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA"]

NAME = "cleanup"
TITLE = "Cleanup"
WARMUP_CYCLES = 20
#: An object growth below ``cycles // OBJECT_NOISE_DIVISOR`` is counted as noise:
#: keeping one object per connection would add at least ``cycles``.
OBJECT_NOISE_DIVISOR = 10
#: Seconds the agent may take to finish serving the closed connections.
SETTLE_TIMEOUT = 5.0


@attrs.frozen
class Counts:
    """What this process holds at one moment."""

    objects: int
    fds: int | None
    tasks: int

    @classmethod
    def take(cls) -> Counts:
        gc.collect()
        return cls(len(gc.get_objects()), open_fds(), len(asyncio.all_tasks()))


def open_fds() -> int | None:
    """Open file descriptors of this process (``None`` without ``/proc/self/fd``)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


async def cycle(url: str, token: str) -> None:
    """Connect, one ``ping``, close."""
    async with Client(url, token) as client:
        reply = await client.request("ping")
    if reply != {"pong": True}:
        raise RuntimeError(f"unexpected ping reply: {reply!r}")


async def settle(server: Server) -> int:
    """Wait until the agent has finished serving every closed connection.

    Returns:
        How many connections it still serves after :data:`SETTLE_TIMEOUT`
        seconds (0 normally); they stay in the counts.
    """
    runtime = server.runtime
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while runtime.connections or runtime.in_flight:
        if time.monotonic() > deadline:
            return len(runtime.connections)
        await asyncio.sleep(0.001)  # the agent's connection handlers are finishing
    await asyncio.sleep(0)  # let the callbacks of those handlers' ends run
    return 0


@attrs.frozen
class Outcome:
    before: Counts
    after: Counts
    cycles: int
    seconds: float
    lingering: int  # connections the agent still served when the counts were taken

    @property
    def object_growth(self) -> int:
        return self.after.objects - self.before.objects

    @property
    def fd_growth(self) -> int | None:
        if self.before.fds is None or self.after.fds is None:
            return None
        return self.after.fds - self.before.fds

    @property
    def task_growth(self) -> int:
        return self.after.tasks - self.before.tasks


async def measure(server: Server, cycles: int) -> Outcome:
    url, token = server.url, server.token_file.get()
    for _ in range(WARMUP_CYCLES):
        await cycle(url, token)
    lingering = await settle(server)
    before = Counts.take()
    started = time.perf_counter()
    for _ in range(cycles):
        await cycle(url, token)
    seconds = time.perf_counter() - started
    lingering += await settle(server)
    return Outcome(before, Counts.take(), cycles, seconds, lingering)


def comparisons(outcome: Outcome) -> list[Comparison]:
    figures = [Figure("gc objects growth", "count", [outcome.object_growth], False)]
    if outcome.fd_growth is not None:
        figures.append(Figure("open fds growth", "count", [outcome.fd_growth], False))
    figures += [
        Figure("asyncio tasks growth", "count", [outcome.task_growth], False),
        Figure("connect/ping/close cycles", "cycles/s", [outcome.cycles / outcome.seconds]),
    ]
    return [Comparison(figure=figure) for figure in figures]


def _verdict(growth: int | None, allowed: int) -> str:
    if growth is None:
        return "not measured"
    return "ok" if growth <= allowed else "LEAK"


def notes(outcome: Outcome) -> list[str]:
    noise = outcome.cycles // OBJECT_NOISE_DIVISOR
    before, after = outcome.before, outcome.after
    found = [
        f"{outcome.cycles} cycles (localagent.Client: connect with the token, one ping, close) "
        f"after {WARMUP_CYCLES} warm-up cycles, against an in-process agent",
        f"open fds {before.fds} -> {after.fds}: {_verdict(outcome.fd_growth, 0)} (must not grow)",
        f"asyncio tasks {before.tasks} -> {after.tasks}: {_verdict(outcome.task_growth, 0)} "
        "(must not grow)",
        f"gc objects {before.objects} -> {after.objects}: "
        f"{_verdict(outcome.object_growth, noise)} (growth up to {noise}, a tenth of the "
        "cycles, counts as fluctuation; keeping one object per connection would add "
        f"{outcome.cycles} or more)",
        "counted after gc.collect(), once the agent had finished serving every closed "
        "connection; the counts are of this whole process (agent and client)",
    ]
    if outcome.lingering:
        found.append(
            f"LEAK: the agent still served {outcome.lingering} connection(s) "
            f"{SETTLE_TIMEOUT:g} s after their clients closed"
        )
    return found


async def run(ctx: BenchContext) -> AreaResult:
    cycles = ctx.size(1_000, 200)
    ctx.progress(f"cleanup: {cycles} connect/ping/close cycles")
    async with ctx.in_process_agent("cleanup-agent") as server:
        outcome = await measure(server, cycles)
    return AreaResult(
        area=NAME, title=TITLE, comparisons=comparisons(outcome), notes=notes(outcome)
    )


AREA = Area(NAME, TITLE, run)
