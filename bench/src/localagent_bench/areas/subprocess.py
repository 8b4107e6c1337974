"""Area ``subprocess``: ``exec`` of ``true`` through an agent vs bare asyncio subprocesses.

The agent subprocess allows ``true`` with 8 programs at once (``max_concurrent``
and ``max_per_connection``); :class:`~localagent.Client` sends ``exec``
requests over one WebSocket connection, 8 in flight and one at a time. The
baseline starts the same program in this process with
``asyncio.create_subprocess_exec(..., stdout=PIPE, stderr=PIPE)`` and
``communicate()``, 8 at once and one at a time. Every run's exit status is
checked. Agent and bare samples alternate.

The agent does more per run than the baseline: it validates the request,
filters the environment, starts the program in its own session and kills
what is left of its process group afterwards.
"""

from __future__ import annotations

import asyncio
import shutil

import attrs

from localagent import Client

from .._context import BenchContext, Call, in_flight
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA"]

NAME, TITLE = "subprocess", "Subprocesses"
PROGRAM = "true"
#: Programs at once: the agent's limits and the requests in flight.
WINDOW = 8
CONFIG = f"""\
[plugins.exec]
allow = ["{PROGRAM}"]
max_concurrent = {WINDOW}
max_per_connection = {WINDOW}
"""
WINDOWS = (WINDOW, 1)


def agent_exec(client: Client) -> Call:
    async def call(_index: int) -> None:
        reply = await client.request("exec", {"argv": [PROGRAM]})
        if reply["exit_code"] != 0 or reply["timed_out"]:
            raise RuntimeError(f"exec of {PROGRAM} failed: {reply!r}")

    return call


async def bare_exec(_index: int) -> None:
    process = await asyncio.create_subprocess_exec(
        PROGRAM, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{PROGRAM} exited with {process.returncode}")


@attrs.define
class _Workload:
    """The agent's client and the runs per sample for each window."""

    client: Client
    counts: dict[int, int]

    async def agent(self, window: int) -> float:
        return await in_flight(self.counts[window], window, agent_exec(self.client))

    async def bare(self, window: int) -> float:
        return await in_flight(self.counts[window], window, bare_exec)


async def _sample(workload: _Workload) -> dict[str, float]:
    """One sample of every series, agent and bare alternating."""
    series = {}
    for window in WINDOWS:
        series[f"agent {window}"] = await workload.agent(window)
        series[f"bare {window}"] = await workload.bare(window)
    return series


def _comparisons(series: dict[str, list[float]]) -> list[Comparison]:
    comparisons = []
    for window in WINDOWS:
        how = f"{window} at once" if window > 1 else "one at a time"
        comparisons.append(
            Comparison(
                figure=Figure(
                    f"exec {PROGRAM} {window} in flight", "runs/s", series[f"agent {window}"]
                ),
                baseline=Figure(
                    f"create_subprocess_exec {window} in flight", "runs/s", series[f"bare {window}"]
                ),
                baseline_name=f"bare create_subprocess_exec, {how}",
                target=">= 0.7x" if window == WINDOW else None,
            )
        )
    return comparisons


async def run(ctx: BenchContext) -> AreaResult:
    if shutil.which(PROGRAM) is None:
        return AreaResult.skip(NAME, TITLE, f"no {PROGRAM!r} program on PATH")
    counts = {WINDOW: ctx.size(800, 240), 1: ctx.size(300, 100)}
    series: dict[str, list[float]] = {}
    with ctx.agent(CONFIG) as agent:
        async with Client(agent.url, agent.token) as client:
            workload = _Workload(
                client, {window: max(WINDOW, n // 10) for window, n in counts.items()}
            )
            ctx.progress("subprocess: warm-up")
            await _sample(workload)
            workload.counts = counts
            for repetition in range(ctx.repetitions):
                ctx.progress(f"subprocess: exec {PROGRAM}, {repetition + 1}/{ctx.repetitions}")
                for name, value in (await _sample(workload)).items():
                    series.setdefault(name, []).append(value)
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=_comparisons(series),
        notes=[
            f"per sample: {counts[WINDOW]} runs {WINDOW} in flight, {counts[1]} one at a time; "
            f"the agent over one WebSocket connection, max_concurrent = {WINDOW}",
            "baseline: asyncio.create_subprocess_exec with stdout and stderr pipes, "
            "then communicate(), in the bench process",
            "the agent also filters the environment, starts a new session per run and "
            "kills its process group afterwards",
        ],
    )


AREA = Area(NAME, TITLE, run)
