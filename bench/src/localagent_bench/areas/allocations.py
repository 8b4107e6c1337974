"""Frame allocations: what writing outbound batch frames allocates, measured with tracemalloc.

The path measured is the one the mempool plugin changes: from a batch frame
(a dict of 50 ~100-byte replies, built beforehand) to bytes handed to the
socket, through the connection's send path (encode, websockets framing,
transport write). An in-process agent serves one connection from a sink
subprocess that reads and discards every frame; this process calls the
connection's send path directly, frame after frame.

tracemalloc reports live and peak traced memory, not a running total of
allocations: for each frame the peak is reset, and the figure is the peak
above the memory traced before the frame, summed over the frames and given
per 10,000 messages. It counts the largest set of blocks alive at once while
one frame is written (the encoded bytes and websockets' framed copy, for
instance), which is what reusing a buffer removes.

tracemalloc keeps no count of blocks allocated and freed, so the block figure
is the traced blocks alive at the moment websockets hands the framed bytes
to the transport (the connection's real transport, behind a proxy that
counts before it writes), above those alive before the frame, for a sample
of the frames. Throughput is timed in a separate pass without tracemalloc.
"""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc
from typing import Any

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA"]

NAME = "allocations"
TITLE = "Frame allocations"
#: Messages per batch frame, and the approximate size of each.
PER_FRAME = 50
MESSAGE_SIZE = 100

#: The sink: ``python -c SINK URL``, the token in ``$LOCALAGENT_TOKEN``; says
#: "connected" once a ping was answered, then reads and drops every frame until
#: the agent closes the connection.
SINK = r"""
import asyncio, os, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url):
    headers = {"Authorization": f"Bearer {os.environ['LOCALAGENT_TOKEN']}"}
    async with connect(url, compression=None, additional_headers=headers, max_size=None) as ws:
        await ws.send('{"id": 0, "type": "ping"}')
        await ws.recv()  # answered: the agent is serving this connection
        print("connected", flush=True)
        try:
            while True:
                await ws.recv(decode=False)
        except ConnectionClosed:
            pass

asyncio.run(main(sys.argv[1]))
"""


def _frames(count: int) -> list[dict[str, Any]]:
    data = "x" * (MESSAGE_SIZE - len('{"id":0000000,"result":{"data":""}}'))
    return [
        {
            "type": "batch",
            "messages": [
                {"id": frame * PER_FRAME + n, "result": {"data": data}} for n in range(PER_FRAME)
            ],
        }
        for frame in range(count)
    ]


async def _traced_bytes(send: Any, frames: list[dict[str, Any]]) -> float:
    """Sum over frames of the traced peak above the start, per 10,000 messages."""
    total = 0
    tracemalloc.start()
    try:
        for frame in frames:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            await send(frame)
            total += tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return total / (len(frames) * PER_FRAME) * 10_000


class _CountingTransport:
    """A connection's real transport, counting the traced blocks alive as each frame is written."""

    def __init__(self, transport: Any, counts: list[int]) -> None:
        self._transport = transport
        self._counts = counts

    def write(self, data: Any) -> None:
        self._counts.append(len(tracemalloc.take_snapshot().traces))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _traced_blocks(ws: Any, send: Any, frames: list[dict[str, Any]]) -> float:
    """Blocks alive as each frame reaches the transport, above those before it, per 10k messages."""
    at_write: list[int] = []
    total = 0
    transport = ws.transport
    ws.transport = _CountingTransport(transport, at_write)
    tracemalloc.start()
    try:
        for frame in frames:
            before = len(tracemalloc.take_snapshot().traces)
            await send(frame)
            total += at_write.pop() - before
    finally:
        tracemalloc.stop()
        ws.transport = transport
    return total / (len(frames) * PER_FRAME) * 10_000


async def _rate(send: Any, frames: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for frame in frames:
        await send(frame)
    return len(frames) * PER_FRAME / (time.perf_counter() - started)


async def run(ctx: BenchContext) -> AreaResult:
    if tracemalloc.is_tracing():
        return AreaResult.skip(NAME, TITLE, "tracemalloc is already tracing in this process")
    count = ctx.size(2000, 400)
    sampled = count // 10  # a snapshot per frame is slow: the block figure takes a sample
    frames = _frames(count)
    traced: list[float] = []
    blocks: list[float] = []
    rates: list[float] = []
    async with ctx.in_process_agent("allocations-agent") as server:
        env = {**ctx.env(), "LOCALAGENT_TOKEN": server.token_file.get()}
        sink = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SINK,
            server.url,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            assert sink.stdout is not None
            if (await sink.stdout.readline()).strip() != b"connected":
                raise RuntimeError("the sink could not connect to the agent")
            (connection,) = server.runtime.connections  # the sink's, answered already
            send = connection.send_path
            await _rate(send, frames[: max(1, count // 10)])  # warm-up: pools fill
            for repetition in range(ctx.repetitions):
                ctx.progress(f"allocations: repetition {repetition + 1}/{ctx.repetitions}")
                traced.append(await _traced_bytes(send, frames))
                blocks.append(await _traced_blocks(connection._ws, send, frames[:sampled]))
                rates.append(await _rate(send, frames))
        finally:
            if sink.returncode is None:
                sink.kill()
            await sink.wait()
    messages = count * PER_FRAME
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=[
            Comparison(
                figure=Figure(
                    "traced bytes per 10k messages, batch frames",
                    "KiB",
                    [value / 1024 for value in traced],
                    False,
                )
            ),
            Comparison(
                figure=Figure(
                    "traced blocks per 10k messages, alive as each frame is written",
                    "blocks",
                    blocks,
                    False,
                )
            ),
            Comparison(figure=Figure("batch frames written", "msg/s", rates)),
        ],
        notes=[
            f"per repetition: {count:,} batch frames of {PER_FRAME} ~{MESSAGE_SIZE}-byte replies "
            f"({messages:,} messages) through the send path of one real connection, once under "
            "tracemalloc and once timed without it",
            "traced bytes: for each frame, tracemalloc's peak above the memory traced before "
            "it, summed",
            f"traced blocks: tracemalloc counts no blocks allocated and freed in between, so "
            f"this is the blocks alive as websockets writes each frame to the transport, above "
            f"those alive before the frame, over the first {sampled:,} frames",
        ],
    )


AREA = Area(NAME, TITLE, run)
