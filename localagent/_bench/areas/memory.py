"""Area ``memory``: does the agent's memory grow with the messages it serves?

The agent runs in this process (``Server.create(port=0)``, built-in plugins
plus the variant's ``-p`` options) with :mod:`tracemalloc` tracing, and a load
generator subprocess (websockets + msgspec) drives it over a real loopback
socket: batches of pipelined ``echo`` requests, every reply read and checked.
Because the client is another process, tracemalloc sees the agent's side only.

After a warm-up on the same connection, this process takes a baseline
(``gc.collect()``, tracemalloc's current size, RSS from ``/proc/self/status``),
lets the generator send the measured messages, and takes the same readings
again. The verdict is "no leak" when tracemalloc grew by less than
:data:`MAX_BYTES_PER_MESSAGE` per message and less than :data:`MAX_GROWTH_MIB`
in all; RSS is reported beside it (it also moves with the allocator's arenas).
There is no baseline library: the figures stand alone, and the verdict is in
the notes. tracemalloc slows the agent down; the throughput figure says by how much
it ran under it, not how fast the agent is.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc

import attrs

from ..._server import Server
from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from .._probes import rss_bytes
from . import Area

__all__ = ["AREA"]

NAME = "memory"
TITLE = "Memory"
MIB = 1 << 20
#: Requests the load generator sends before it reads their replies.
BATCH = 500
#: Verdict thresholds: growth after warm-up, per message and in all.
MAX_BYTES_PER_MESSAGE = 1.0
MAX_GROWTH_MIB = 2.0

#: The load generator: ``python -c LOAD_GENERATOR URL WARMUP COUNT BATCH``, the
#: token in ``$LOCALAGENT_TOKEN``. It prints ``warm`` after the warm-up, waits
#: for a line on stdin, sends COUNT requests, prints ``done SECONDS``, and
#: closes the connection after one more line on stdin.
LOAD_GENERATOR = r"""
import asyncio, os, sys, time
from websockets.asyncio.client import connect
from localagent import _codec

DATA = "x" * 60

async def burst(ws, first, count):
    for msg_id in range(first, first + count):
        await ws.send(_codec.dumps({"id": msg_id, "type": "echo", "data": DATA}), text=True)
    for msg_id in range(first, first + count):
        reply = _codec.loads(await ws.recv(decode=False))
        if reply.get("id") != msg_id or reply.get("result") != {"data": DATA}:
            raise SystemExit(f"unexpected reply to {msg_id}: {reply!r}")

async def drive(ws, first, count, batch):
    for start in range(first, first + count, batch):
        await burst(ws, start, min(batch, first + count - start))
    return first + count

async def main(url, warmup, count, batch):
    token = os.environ["LOCALAGENT_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, compression=None, additional_headers=headers) as ws:
        next_id = await drive(ws, 1, warmup, batch)
        print("warm", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = time.perf_counter()
        await drive(ws, next_id, count, batch)
        print(f"done {time.perf_counter() - started}", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


@attrs.frozen
class Reading:
    """Memory of this process at one moment, after a full collection."""

    traced: int
    peak: int
    rss: int | None

    @classmethod
    def take(cls) -> Reading:
        gc.collect()
        traced, peak = tracemalloc.get_traced_memory()
        return cls(traced, peak, rss_bytes())


@attrs.frozen
class Outcome:
    before: Reading
    after: Reading
    messages: int
    seconds: float

    @property
    def growth(self) -> int:
        return self.after.traced - self.before.traced

    @property
    def per_message(self) -> float:
        return self.growth / self.messages

    @property
    def rss_growth(self) -> int | None:
        if self.before.rss is None or self.after.rss is None:
            return None
        return self.after.rss - self.before.rss

    @property
    def leaks(self) -> bool:
        return self.per_message >= MAX_BYTES_PER_MESSAGE or self.growth >= MAX_GROWTH_MIB * MIB


async def _line(process: asyncio.subprocess.Process, expected: str) -> str:
    """The generator's next stdout line, which must start with ``expected``."""
    assert process.stdout is not None and process.stderr is not None
    line = (await process.stdout.readline()).decode().strip()
    if not line.startswith(expected):
        await process.wait()
        stderr = (await process.stderr.read()).decode(errors="replace").strip()
        raise RuntimeError(f"the load generator failed (expected {expected!r}): {stderr or line}")
    return line


async def _tell(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    process.stdin.write(b"\n")
    await process.stdin.drain()


async def drive(server: Server, ctx: BenchContext, warmup: int, count: int) -> Outcome:
    """Run the load generator against ``server``; readings after warm-up and after the run."""
    env = {**ctx.env(), "LOCALAGENT_TOKEN": server.token_file.get()}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOAD_GENERATOR,
        server.url,
        str(warmup),
        str(count),
        str(BATCH),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await _line(process, "warm")
        before = Reading.take()
        tracemalloc.reset_peak()
        await _tell(process)
        seconds = float((await _line(process, "done")).split()[1])
        after = Reading.take()
        await _tell(process)
        if await process.wait() != 0:
            raise RuntimeError(f"the load generator exited with status {process.returncode}")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return Outcome(before, after, count, seconds)


def comparisons(outcome: Outcome) -> list[Comparison]:
    figures = [
        Figure("tracemalloc growth after warm-up", "MiB", [outcome.growth / MIB], False),
        Figure("tracemalloc growth per message", "bytes/msg", [outcome.per_message], False),
        Figure("tracemalloc peak during the run", "MiB", [outcome.after.peak / MIB], False),
    ]
    if outcome.rss_growth is not None and outcome.after.rss is not None:
        figures += [
            Figure("RSS growth after warm-up", "MiB", [outcome.rss_growth / MIB], False),
            Figure("RSS after the run", "MiB", [outcome.after.rss / MIB], False),
        ]
    figures.append(
        Figure("echo throughput under tracemalloc", "msg/s", [outcome.messages / outcome.seconds])
    )
    return [Comparison(figure=figure) for figure in figures]


def notes(outcome: Outcome, warmup: int) -> list[str]:
    verdict = "possible leak" if outcome.leaks else "no leak"
    found = [
        f"verdict: {verdict}: tracemalloc grew {outcome.growth / MIB:+.3f} MiB "
        f"({outcome.per_message:+.3f} bytes/message) over {outcome.messages:,} messages after "
        f"a warm-up of {warmup:,}; 'no leak' means < {MAX_BYTES_PER_MESSAGE:g} byte/message "
        f"and < {MAX_GROWTH_MIB:g} MiB in all",
        f"in-process agent traced by tracemalloc, driven by a load-generator subprocess over "
        f"one connection: batches of {BATCH} pipelined ~100-byte echo requests, every reply "
        "checked; one long run (repetitions do not apply)",
    ]
    if outcome.rss_growth is None:
        found.append("RSS not measured: no /proc/self/status on this platform")
    else:
        found.append(
            "RSS includes the allocator's free arenas and tracemalloc's own tables, so it is "
            "reported but not used for the verdict"
        )
    return found


async def run(ctx: BenchContext) -> AreaResult:
    count = ctx.size(1_000_000, 100_000)
    warmup = ctx.size(50_000, 10_000)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        ctx.progress(f"memory: {count:,} messages through an in-process agent under tracemalloc")
        async with ctx.in_process_agent("memory-agent") as server:
            outcome = await drive(server, ctx, warmup, count)
    finally:
        if not tracing:
            tracemalloc.stop()
    return AreaResult(
        area=NAME, title=TITLE, comparisons=comparisons(outcome), notes=notes(outcome, warmup)
    )


AREA = Area(NAME, TITLE, run)
