"""Area ``errors``: what a plugin that raises costs, vs ``echo`` in the same agent.

A real plugin distribution is written to a scratch directory (a module whose
``on_message`` handler for ``bench.maybe_raise`` raises ``ValueError`` when the
request's data says so, plus a ``*.dist-info`` with ``METADATA`` and an
``entry_points.txt`` in group ``[localagent]``), put on the agent subprocess's
``PYTHONPATH`` and enabled with ``-p``. One agent serves both the plugin and
the built-in ``echo``, which is the baseline: the same payloads, the same reply
shape when nothing raises.

Measured, pipelined unbatched requests on one connection with every reply
checked (a raising request must come back as an ``internal_error`` reply):

- throughput with 0 % of the requests raising vs ``echo``;
- throughput with 10 % raising (every tenth) vs ``echo``, and vs 0 % raising
  (the target: at least 0.95x), paired: each repetition runs 0 %, 10 % and
  0 % raising one right after the other (A/B/A'), and the figure is the
  median of the repetitions' B / mean(A, A'), so that noise on a shared
  machine moves both sides of each ratio alike;
- junk frames (bad JSON, bad envelopes, unknown types, in turn) answered per
  second vs ``echo``, every error reply checked for its id and code;
- the agent's CPU per message in the same runs (Linux ``/proc``), which stays
  meaningful when the client is the bottleneck, and from the A/B/A' triples
  the agent's CPU per raise.

The agent logs the first failure of a kind with its traceback and counts the
repeats (a line per kind at most every 10 s), as it does in production: that
is part of the cost. Then, per repetition, a fresh agent at ``--log-level
debug`` (every line on) gets 100,000 junk frames: the log lines it writes
from the end of its start to its exit are counted.
"""

from __future__ import annotations

import os
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from websockets.asyncio.client import ClientConnection, connect

from localagent import _codec
from localagent.testing import AgentProcess

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from .._probes import process_cpu
from .._wsclient import pipelined
from . import Area

__all__ = ["AREA"]

NAME = "errors"
TITLE = "Error handling"
PLUGIN = "bench_raise"
MODULE = "localagent_bench_raise"
DISTRIBUTION = "localagent-bench-raise"
MESSAGE_TYPE = "bench.maybe_raise"
#: The line the agent logs for each failing handler.
BASELINE = "echo, no raising plugin (same agent)"
#: Bytes of padding in each request's data (frames are ~100 bytes).
PAD = 50
#: The overhead of try/except the seed claimed, in percent.
SEED_CLAIM_PCT = 173.0

PLUGIN_SOURCE = f'''
"""A bench plugin: answers like ``echo``, or raises ValueError when data["raise"] is true."""

from localagent_hookspecs import handles, hookimpl


@hookimpl(specname="on_message")
@handles("{MESSAGE_TYPE}")
def maybe_raise(message):
    data = message.data
    if data["raise"]:
        raise ValueError("raised on purpose by localagent bench")
    return {{"data": data}}
'''


@attrs.frozen
class Run:
    """One kind of workload: the message type and which requests raise."""

    label: str
    message_type: str
    every: int  # every n-th request raises (0: none)

    def raises(self, msg_id: int) -> bool:
        return self.every > 0 and msg_id % self.every == 0


ECHO = Run("echo", "echo", 0)
NONE_RAISING = Run("0 % raising", MESSAGE_TYPE, 0)
TEN_PCT_RAISING = Run("10 % raising", MESSAGE_TYPE, 10)
JUNK = Run("junk frames", "", 0)
RUNS = (ECHO, NONE_RAISING, TEN_PCT_RAISING, JUNK)
#: A, B, A': run one right after the other in each repetition, so that the target figure
#: (B against the mean of A and A') does not depend on the load staying the same.
PAIRED = (NONE_RAISING, TEN_PCT_RAISING, NONE_RAISING)
PAIRED_LABEL = "0 % raising, mean of the runs just before and after"
PAIRED_BASELINE = "0 % raising just before and after (same agent and repetition; paired)"
#: Junk frames sent to the agent whose log lines are counted.
LOGGED_JUNK = 100_000
UNKNOWN_TYPE = "bench.no_such_type"


def junk_frame(msg_id: int) -> bytes:
    """Bad JSON, a bad envelope, an unknown type, a non-object, in turn (~100 bytes each)."""
    kind = msg_id % 4
    pad = "x" * PAD
    if kind == 0:
        return b'{"id": %d, "type": "echo", "data": "%s' % (msg_id, pad.encode())  # cut short
    if kind == 1:
        return _codec.dumps({"id": msg_id, "type": "", "data": pad})
    if kind == 2:
        return _codec.dumps({"id": msg_id, "type": UNKNOWN_TYPE, "data": pad})
    return _codec.dumps([msg_id, pad])


def check_junk(reply: Any, msg_id: int) -> None:
    """The error reply ``junk_frame(msg_id)`` gets: its code, and its id where one was readable."""
    kind = msg_id % 4
    code = ("invalid_json", "invalid_message", "unknown_type", "invalid_message")[kind]
    expected_id = msg_id if kind in (1, 2) else None
    error = reply.get("error") if type(reply) is dict else None
    if reply.get("id") != expected_id or not isinstance(error, dict) or error.get("code") != code:
        raise RuntimeError(f"junk frame {msg_id}: expected {code} for {expected_id}, got {reply!r}")


@attrs.define
class Samples:
    rate: list[float] = attrs.Factory(list)
    server_us: list[float] = attrs.Factory(list)


def write_plugin(site: Path) -> Path:
    """Write the plugin module and its ``*.dist-info`` into ``site``; return ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    info = site / f"{DISTRIBUTION.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[localagent]\n{PLUGIN} = {MODULE}\n")
    return site


def plugin_env(ctx: BenchContext, site: Path) -> dict[str, str]:
    """:meth:`BenchContext.env` with ``site`` first on ``PYTHONPATH``."""
    env = ctx.env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def make_frames(run: Run, count: int, first_id: int) -> list[bytes]:
    if run is JUNK:
        return [junk_frame(msg_id) for msg_id in range(first_id, first_id + count)]
    return [
        _codec.dumps(
            {
                "id": msg_id,
                "type": run.message_type,
                "data": {"raise": run.raises(msg_id), "pad": "x" * PAD},
            }
        )
        for msg_id in range(first_id, first_id + count)
    ]


def check(reply: Any, expected_id: int, run: Run) -> None:
    """The reply for ``expected_id``: an ``internal_error`` if it raised, else a result."""
    if run is JUNK:
        return check_junk(reply, expected_id)
    if reply.get("id") != expected_id:
        raise RuntimeError(f"{run.label}: expected the reply to {expected_id}, got {reply!r}")
    if run.raises(expected_id):
        error = reply.get("error")
        if not isinstance(error, dict) or error.get("code") != "internal_error":
            raise RuntimeError(f"{run.label}: expected an internal_error reply, got {reply!r}")
    elif "result" not in reply:
        raise RuntimeError(f"{run.label}: expected a result, got {reply!r}")


async def pipelined_run(ws: ClientConnection, run: Run, count: int, first_id: int) -> float:
    """Pipeline ``count`` requests of ``run`` and check every reply; msg/s."""
    frames = make_frames(run, count, first_id)
    return await pipelined(ws, frames, first_id, lambda frame, msg_id: check(frame, msg_id, run))


@attrs.define
class Measured:
    """Every run's samples, and the second '0 % raising' run of each A/B/A' triple."""

    samples: dict[Run, Samples]
    again: Samples


async def measure(agent: AgentProcess, ctx: BenchContext, count: int) -> Measured:
    """Each repetition: one connection, a warm-up of every run, then ``echo``, the
    A/B/A' triple (0 %, 10 %, 0 % raising, one right after the other) and junk,
    in an order that rotates between repetitions."""
    samples = {run: Samples() for run in RUNS}
    again = Samples()
    warmup = max(200, count // 10)
    blocks: list[tuple[Run, ...]] = [(ECHO,), PAIRED, (JUNK,)]
    for rep in range(ctx.repetitions):
        ctx.progress(f"errors: repetition {rep + 1}/{ctx.repetitions}")
        ws = await connect(
            agent.url,
            compression=None,
            additional_headers={"Authorization": f"Bearer {agent.token}"},
        )
        try:
            next_id = 1
            for run in RUNS:
                await pipelined_run(ws, run, warmup, next_id)
                next_id += warmup
            shift = rep % len(blocks)
            for block in blocks[shift:] + blocks[:shift]:
                for position, run in enumerate(block):
                    into = again if block is PAIRED and position == 2 else samples[run]
                    before = process_cpu(agent.pid)
                    into.rate.append(await pipelined_run(ws, run, count, next_id))
                    after = process_cpu(agent.pid)
                    if before is not None and after is not None:
                        into.server_us.append((after - before) / count * 1e6)
                    next_id += count
        finally:
            await ws.close()
    return Measured(samples, again)


def _means(first: Sequence[float], second: Sequence[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(first, second, strict=True)]


def comparisons(measured: Measured, log_lines: list[float]) -> list[Comparison]:
    samples, again = measured.samples, measured.again
    echo = samples[ECHO]
    found = []
    for run in (NONE_RAISING, TEN_PCT_RAISING, JUNK):
        found.append(
            Comparison(
                figure=Figure(f"{run.label} throughput", "msg/s", samples[run].rate),
                baseline=Figure("echo throughput", "msg/s", echo.rate),
                baseline_name=BASELINE,
            )
        )
    ten, none = samples[TEN_PCT_RAISING], samples[NONE_RAISING]
    found.append(
        Comparison(
            figure=Figure("10 % raising throughput, vs none raising", "msg/s", ten.rate),
            baseline=Figure(PAIRED_LABEL + " throughput", "msg/s", _means(none.rate, again.rate)),
            baseline_name=PAIRED_BASELINE,
            target=">= 0.95x",
            paired=True,
        )
    )
    for run in (NONE_RAISING, TEN_PCT_RAISING, JUNK):
        if samples[run].server_us and echo.server_us:
            found.append(
                Comparison(
                    figure=Figure(
                        f"{run.label}, agent CPU per message",
                        "µs",
                        samples[run].server_us,
                        higher_is_better=False,
                    ),
                    baseline=Figure(
                        "echo, agent CPU per message", "µs", echo.server_us, higher_is_better=False
                    ),
                    baseline_name=BASELINE,
                )
            )
    paired_cpu = len(ten.server_us) == len(none.server_us) == len(again.server_us) > 0
    if paired_cpu:
        base = _means(none.server_us, again.server_us)
        found.append(
            Comparison(
                figure=Figure(
                    "10 % raising, agent CPU per message, vs none raising",
                    "µs",
                    ten.server_us,
                    False,
                ),
                baseline=Figure(PAIRED_LABEL + ", agent CPU per message", "µs", base, False),
                baseline_name=PAIRED_BASELINE,
                paired=True,
            )
        )
        every = TEN_PCT_RAISING.every
        per_raise = [(t - b) * every for t, b in zip(ten.server_us, base, strict=True)]
        found.append(
            Comparison(figure=Figure("agent CPU per raise (paired)", "µs", per_raise, False))
        )
    if log_lines:
        found.append(
            Comparison(
                figure=Figure(
                    f"log lines for {LOGGED_JUNK:,} junk frames (--log-level debug)",
                    "lines",
                    log_lines,
                    higher_is_better=False,
                )
            )
        )
    return found


def count_log_lines(ctx: BenchContext, site: Path) -> list[float]:
    """Per repetition: a fresh agent at DEBUG, 100,000 junk frames, the lines it logged after
    its start banner until it exited (the counts of what it left out come at exit)."""
    import asyncio

    lines: list[float] = []
    for rep in range(ctx.repetitions):
        ctx.progress(f"errors: log lines, repetition {rep + 1}/{ctx.repetitions}")
        args = ("-p", PLUGIN, "--log-level", "debug")
        with ctx.agent("", *args, env=plugin_env(ctx, site)) as agent:
            started = len(agent.lines)
            asyncio.run(_send_junk(agent, LOGGED_JUNK))
        lines.append(float(len(agent.lines) - started))
    return lines


async def _send_junk(agent: AgentProcess, count: int) -> None:
    ws = await connect(
        agent.url,
        compression=None,
        additional_headers={"Authorization": f"Bearer {agent.token}"},
    )
    try:
        await pipelined(ws, [junk_frame(n) for n in range(count)], 0, check_junk)
    finally:
        await ws.close()


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def notes(measured: Measured, count: int) -> list[str]:
    echo, none, ten, _junk = (measured.samples[run] for run in RUNS)
    implied = 1 / (1 + SEED_CLAIM_PCT / 100)
    vs_echo = _median(none.rate) / _median(echo.rate)
    ten_pct = _median(ten.rate) / _median(echo.rate)
    found = [
        f"{count} pipelined, unbatched ~100-byte requests per run and repetition, after a "
        f"warm-up of every run; every reply checked; plugin {PLUGIN!r} from a *.dist-info on "
        "PYTHONPATH, enabled with -p; '10 % raising ... vs none raising' and 'agent CPU per "
        "raise' are paired: in each repetition 0 %, 10 % and 0 % raising run one right after "
        "the other (A/B/A'), and each repetition's B is compared with the mean of its A and A'; "
        "the figure is the median of those ratios",
        f"the seed's claim of a {SEED_CLAIM_PCT:.0f} % try/except overhead would mean the "
        f"'0 % raising' throughput at {implied:.2f}x of echo (1 / {1 + SEED_CLAIM_PCT / 100:.2f}); "
        f"measured {vs_echo:.2f}x ({ten_pct:.2f}x with 10 % raising). The dispatcher's "
        "try/except wraps every handler, echo "
        "included, so '0 % raising' vs echo measures a third-party plugin's handler, not "
        "try/except (which costs nothing when nothing raises on Python 3.11+)",
    ]
    per_raise = (1 / _median(ten.rate) - 1 / _median(none.rate)) * TEN_PCT_RAISING.every * 1e6
    cost = f"each raise costs ~{per_raise:.0f} µs of wall time"
    if none.server_us and ten.server_us:
        cpu = (_median(ten.server_us) - _median(none.server_us)) * TEN_PCT_RAISING.every
        cost += f" and ~{cpu:.1f} µs of the agent's CPU"
    found.append(
        f"{cost} over a normal reply (from the medians): the exception, on_error, the error "
        "reply (the log is rate-limited: the first failure of a kind with its traceback, "
        "then a line per kind at most every 10 s with the number left out)"
    )
    return found


async def run(ctx: BenchContext) -> AreaResult:
    site = write_plugin(ctx.workdir / "plugin-site")
    count = ctx.size(20_000, 5_000)
    with ctx.agent("", "-p", PLUGIN, env=plugin_env(ctx, site)) as agent:
        measured = await measure(agent, ctx, count)
    log_lines = await _in_thread(count_log_lines, ctx, site)
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=comparisons(measured, log_lines),
        notes=notes(measured, count),
    )


async def _in_thread(function: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(function, *args)


AREA = Area(NAME, TITLE, run)
