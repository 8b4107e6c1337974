"""Area ``memory``: does the agent's memory grow with the messages it serves, or with clients
that do not read?

Leaks: the agent runs in this process (``Server.create(port=0)``, built-in plugins
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

Clients that do not read: a ``localagent serve`` subprocess per repetition,
with ``server.max_pending_bytes`` set, gets :data:`SILENT_CLIENTS` raw
connections that each send one batch frame of large ``fs.read`` requests
(base64) and never read a reply, while a well-behaved client pings it for
:data:`SIEGE_SECONDS` (the agent slows them, and closes the heaviest while it is
over its budget). The figure is the growth of the agent's resident memory: its
peak (``VmHWM``) at the end, less its ``VmRSS`` before the attack, both from
``/proc/PID/status``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import attrs

from localagent import Client, Server, _codec
from localagent.testing import AgentProcess

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
#: Connections that send their requests and read nothing.
SILENT_CLIENTS = 4
#: How long they besiege the agent (less if it closes them all sooner).
SIEGE_SECONDS = 5.0

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


# -- clients that do not read ---------------------------------------------------------


@attrs.frozen
class Attack:
    """One workload of silent clients: each sends ``reads`` reads of a ``file_mib`` file."""

    reads: int
    file_mib: int
    budget_mib: int


@attrs.frozen
class Siege:
    """What one agent went through: RSS before and at its peak, connections it closed."""

    before_mib: float
    peak_mib: float
    shed: int
    pings: int

    @property
    def growth_mib(self) -> float:
        return self.peak_mib - self.before_mib


def _status_mib(pid: int, field: str) -> float:
    """``VmRSS`` or ``VmHWM`` of ``pid`` in MiB (``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _shed(agent: AgentProcess) -> int:
    """How many connections the agent's log says it closed for its outbound budget."""
    return sum("closing connection" in line and "max_pending_bytes" in line for line in agent.lines)


def _client_frame(payload: bytes) -> bytes:
    """A masked text frame; the mask is zeros, so the payload goes as it is."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


async def _silent_client(port: int, token: str, path: str, reads: int) -> asyncio.StreamWriter:
    """Connect, send one batch frame of ``reads`` reads of ``path``, and never read a reply.

    Its socket's receive buffer is small, and the stream stops reading once
    its own buffer holds 128 KiB, so the agent's writes back up at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"the agent refused a silent client: {head[:80]!r}")
    batch = {
        "type": "batch",
        "messages": [
            {"id": n, "type": "fs.read", "data": {"path": path, "encoding": "base64"}}
            for n in range(reads)
        ],
    }
    writer.write(_client_frame(_codec.dumps(batch)))
    await writer.drain()
    return writer


def _file_to_read(ctx: BenchContext, size_mib: int) -> str:
    """A file of random bytes in the agents' workspace (made once); its relative path."""
    path = f"unread-{size_mib}.bin"
    target = ctx.workspace / path
    if not target.exists():
        target.write_bytes(os.urandom(size_mib * MIB))
    return path


async def besiege(ctx: BenchContext, attack: Attack) -> Siege:
    """Run one agent with the budget through the attack; what its memory did."""
    path = _file_to_read(ctx, attack.file_mib)
    config = f"[server]\nmax_pending_bytes = {attack.budget_mib * MIB}\n"
    with ctx.agent(config) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        async with Client(agent.url, agent.token) as client:
            await client.request("fs.read", {"path": path, "encoding": "base64"})  # warm
            before = _status_mib(agent.pid, "VmRSS")
            silent = await asyncio.gather(
                *(
                    _silent_client(port, agent.token, path, attack.reads)
                    for _ in range(SILENT_CLIENTS)
                )
            )
            pings = 0
            try:
                deadline = time.monotonic() + SIEGE_SECONDS
                while _shed(agent) < SILENT_CLIENTS and time.monotonic() < deadline:
                    await client.request("ping", timeout=SIEGE_SECONDS)
                    pings += 1
                    await asyncio.sleep(0.01)  # a ping every 10 ms, not a busy loop
            finally:
                for writer in silent:
                    writer.transport.abort()
            peak = _status_mib(agent.pid, "VmHWM")
    return Siege(before, peak, _shed(agent), pings)


def siege_comparisons(sieges: list[Siege], attack: Attack) -> list[Comparison]:
    return [
        Comparison(
            figure=Figure(
                f"RSS growth, {SILENT_CLIENTS} clients not reading",
                "MiB",
                [siege.growth_mib for siege in sieges],
                False,
            )
        ),
        Comparison(
            figure=Figure(
                "peak RSS, clients not reading", "MiB", [siege.peak_mib for siege in sieges], False
            )
        ),
    ]


def siege_notes(sieges: list[Siege], attack: Attack) -> list[str]:
    reply_mb = attack.file_mib * MIB * 4 / 3 / 1e6
    return [
        f"clients not reading: per repetition, a fresh `localagent serve` with "
        f"server.max_pending_bytes = {attack.budget_mib} MiB; {SILENT_CLIENTS} connections "
        f"each send one batch frame of {attack.reads} fs.read of a {attack.file_mib} MiB file "
        f"(~{reply_mb:.1f} MB of base64 per reply) and read nothing, while a well-behaved "
        "client pings every 10 ms; growth = peak VmHWM once all are closed, less VmRSS "
        "before the attack",
        f"clients not reading: the agent closed {sum(s.shed for s in sieges)} of "
        f"{SILENT_CLIENTS * len(sieges)} with 1008 (over its outbound budget) and slowed the "
        f"others (one large reply built at a time) for {SIEGE_SECONDS:g} s; the well-behaved "
        f"client got {sum(s.pings for s in sieges)} pongs meanwhile",
    ]


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
    found = comparisons(outcome)
    found_notes = notes(outcome, warmup)
    if rss_bytes() is not None:  # /proc is there
        attack = Attack(
            reads=ctx.size(200, 40), file_mib=ctx.size(4, 1), budget_mib=ctx.size(64, 8)
        )
        sieges = []
        for repetition in range(ctx.repetitions):
            ctx.progress(
                f"memory: {SILENT_CLIENTS} clients not reading, "
                f"repetition {repetition + 1}/{ctx.repetitions}"
            )
            sieges.append(await besiege(ctx, attack))
        found += siege_comparisons(sieges, attack)
        found_notes += siege_notes(sieges, attack)
    else:
        found_notes.append("clients not reading: not measured, no /proc on this platform")
    return AreaResult(area=NAME, title=TITLE, comparisons=found, notes=found_notes)


AREA = Area(NAME, TITLE, run)
