"""Area ``websocket``: the agent's WebSocket endpoint vs a bare ``websockets`` server.

The agent is a ``localagent serve`` subprocess (built-in plugins, plus the
variant's ``-p`` options); the baseline is :mod:`localagent_bench.bare_echo`, a
``websockets`` server subprocess with the same codec (msgspec), the same reply
shape and compression off, which does nothing else (no token check, no
validation, no dispatch). Both are driven by the same raw websockets client code
in this process (``compression=None``, msgspec), agent and bare runs interleaved,
so the ratios measure the server side.

Measured, each agent vs bare:

- one-way throughput: N ~100-byte ``echo`` notifications (no ``id``, so no
  reply), then one ``ping`` request whose reply proves all N were read;
- echo throughput: N ~100-byte ``echo`` requests pipelined on one connection,
  unbatched (a reader task takes the replies while the writer sends);
- ``ping`` round trip p50 and p99, one request in flight at a time;
- fresh connect p50 and p99: open a connection with the token until the
  opening handshake is done (the close that follows is not timed);
- server CPU per one-way message and per echo (Linux ``/proc``): the server
  process's CPU time during those runs divided by N, which compares the servers
  even when the client is the bottleneck.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import attrs
from websockets.asyncio.client import ClientConnection, connect

from localagent import _codec

from .._bare import running_bare_echo
from .._context import BenchContext, percentile
from .._model import AreaResult, Comparison, Figure
from .._probes import process_cpu
from .._wsclient import pipelined, replies
from . import Area

__all__ = ["AREA"]

NAME = "websocket"
TITLE = "WebSocket"
BARE = "bare websockets (same codec and reply shape)"
#: Bytes per request frame.
MESSAGE_SIZE = 100
#: Requests per batch frame in the batched-client figure.
BATCH = 50


@attrs.frozen
class Target:
    """A server under test, as the client sees it."""

    url: str
    token: str
    pid: int


@attrs.frozen
class Sizes:
    """The workload of one repetition against one server."""

    messages: int
    warmup: int
    pings: int
    ping_warmup: int
    connects: int
    connect_warmup: int

    @classmethod
    def of(cls, ctx: BenchContext) -> Sizes:
        messages = ctx.size(20_000, 5_000)
        pings = ctx.size(2_000, 500)
        return cls(
            messages=messages,
            warmup=max(500, messages // 10),
            pings=pings,
            ping_warmup=max(50, pings // 10),
            connects=ctx.size(300, 100),
            connect_warmup=5,
        )


@attrs.define
class Samples:
    """One list of samples per figure, for one server."""

    one_way: list[float] = attrs.Factory(list)
    echo: list[float] = attrs.Factory(list)
    ping_p50: list[float] = attrs.Factory(list)
    ping_p99: list[float] = attrs.Factory(list)
    connect_p50: list[float] = attrs.Factory(list)
    connect_p99: list[float] = attrs.Factory(list)
    server_cpu_us: list[float] = attrs.Factory(list)
    client_busy: list[float] = attrs.Factory(list)
    one_way_server_cpu_us: list[float] = attrs.Factory(list)
    one_way_client_busy: list[float] = attrs.Factory(list)
    batched: list[float] = attrs.Factory(list)


# -- the client (identical for both servers) -----------------------------------


def make_frames(message_type: str, count: int, first_id: int = 1) -> list[bytes]:
    """``count`` requests with consecutive ids, each about MESSAGE_SIZE bytes."""
    empty = len(_codec.dumps({"id": first_id + count, "type": message_type, "data": ""}))
    data = "x" * max(0, MESSAGE_SIZE - empty)
    return [
        _codec.dumps({"id": i, "type": message_type, "data": data})
        for i in range(first_id, first_id + count)
    ]


def make_batches(count: int, size: int, first_id: int) -> list[bytes]:
    """``count`` batch frames of ``size`` ~100-byte echo requests, consecutive ids."""
    empty = len(_codec.dumps({"id": first_id + count * size, "type": "echo", "data": ""}))
    data = "x" * max(0, MESSAGE_SIZE - empty)
    return [
        _codec.dumps(
            {
                "type": "batch",
                "messages": [
                    {"id": first_id + n * size + k, "type": "echo", "data": data}
                    for k in range(size)
                ],
            }
        )
        for n in range(count)
    ]


def make_notifications(count: int) -> list[bytes]:
    """``count`` one-way ``echo`` messages (no ``id``), each about MESSAGE_SIZE bytes."""
    empty = len(_codec.dumps({"type": "echo", "data": ""}))
    frame = _codec.dumps({"type": "echo", "data": "x" * max(0, MESSAGE_SIZE - empty)})
    return [frame] * count


async def open_connection(target: Target) -> ClientConnection:
    return await connect(
        target.url,
        compression=None,
        additional_headers={"Authorization": f"Bearer {target.token}"},
    )


def _check(reply: Any, expected_id: int) -> None:
    if reply.get("id") != expected_id or "result" not in reply:
        raise RuntimeError(f"expected a result for id {expected_id}, got {reply!r}")


async def one_way(ws: ClientConnection, frames: Sequence[bytes], sync_id: int) -> float:
    """Send the notifications, then a ``ping`` whose reply must be the first frame back; msg/s."""
    started = time.perf_counter()
    for frame in frames:
        await ws.send(frame, text=True)
    await ws.send(_codec.dumps({"id": sync_id, "type": "ping"}), text=True)
    (reply,) = replies(await ws.recv(decode=False))
    _check(reply, sync_id)
    return len(frames) / (time.perf_counter() - started)


async def round_trips(ws: ClientConnection, frames: Sequence[bytes], first_id: int) -> list[float]:
    """One request in flight at a time; each round trip in microseconds."""
    samples: list[float] = []
    for expected, frame in enumerate(frames, first_id):
        started = time.perf_counter_ns()
        await ws.send(frame, text=True)
        frame = await ws.recv(decode=False)
        samples.append((time.perf_counter_ns() - started) / 1000)
        (reply,) = replies(frame)
        _check(reply, expected)
    return samples


async def connect_times(target: Target, count: int) -> list[float]:
    """Open ``count`` fresh connections one after another; handshake time of each in ms."""
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter_ns()
        ws = await open_connection(target)
        samples.append((time.perf_counter_ns() - started) / 1e6)
        await ws.close()
    return samples


async def _with_cpu(
    target: Target, count: int, run: Awaitable[float]
) -> tuple[float, float | None, float]:
    """Await ``run`` (a rate in msg/s); also the server CPU µs per message and client busy %."""
    server_before, client_before = process_cpu(target.pid), time.process_time()
    rate = await run
    server_after, client_after = process_cpu(target.pid), time.process_time()
    server_us = None
    if server_before is not None and server_after is not None:
        server_us = (server_after - server_before) / count * 1e6
    return rate, server_us, (client_after - client_before) * rate / count * 100


async def measure_throughput(target: Target, sizes: Sizes, into: Samples) -> None:
    """Warm-up, pipelined echo, then one-way, on one connection."""
    ws = await open_connection(target)
    try:
        await pipelined(ws, make_frames("echo", sizes.warmup), 1, _check)
        first = sizes.warmup + 1
        frames = make_frames("echo", sizes.messages, first)
        rate, server_us, busy = await _with_cpu(
            target, sizes.messages, pipelined(ws, frames, first, _check)
        )
        into.echo.append(rate)
        into.client_busy.append(busy)
        if server_us is not None:
            into.server_cpu_us.append(server_us)
        notifications = make_notifications(sizes.messages)
        sync_id = first + sizes.messages
        rate, server_us, busy = await _with_cpu(
            target, sizes.messages, one_way(ws, notifications, sync_id)
        )
        into.one_way.append(rate)
        into.one_way_client_busy.append(busy)
        if server_us is not None:
            into.one_way_server_cpu_us.append(server_us)
        # The client sends batch frames: logical messages/s (what reply batching serves).
        first = sync_id + 1
        batches = make_batches(sizes.messages // BATCH, BATCH, first)
        into.batched.append(await pipelined(ws, batches, first, _check, per_frame=BATCH))
    finally:
        await ws.close()


async def measure_latency(target: Target, sizes: Sizes, into: Samples) -> None:
    ws = await open_connection(target)
    try:
        await round_trips(ws, make_frames("ping", sizes.ping_warmup), 1)
        samples = await round_trips(
            ws, make_frames("ping", sizes.pings, sizes.ping_warmup + 1), sizes.ping_warmup + 1
        )
    finally:
        await ws.close()
    into.ping_p50.append(statistics.median(samples))
    into.ping_p99.append(percentile(samples, 99))


async def measure_connects(target: Target, sizes: Sizes, into: Samples) -> None:
    await connect_times(target, sizes.connect_warmup)
    samples = await connect_times(target, sizes.connects)
    into.connect_p50.append(statistics.median(samples))
    into.connect_p99.append(percentile(samples, 99))


async def measure(
    targets: Sequence[tuple[Target, Samples]], sizes: Sizes, ctx: BenchContext
) -> None:
    """Every repetition measures every server, alternating which one goes first."""
    for rep in range(ctx.repetitions):
        ordered = list(targets) if rep % 2 == 0 else list(reversed(targets))
        ctx.progress(f"websocket: repetition {rep + 1}/{ctx.repetitions}")
        for target, samples in ordered:
            await measure_throughput(target, sizes, samples)
        for target, samples in ordered:
            await measure_latency(target, sizes, samples)
        for target, samples in ordered:
            await measure_connects(target, sizes, samples)


# -- the result ----------------------------------------------------------------------


def _comparison(
    name: str,
    unit: str,
    agent: list[float],
    bare: list[float],
    *,
    higher_is_better: bool = True,
    target: str | None = None,
) -> Comparison:
    return Comparison(
        figure=Figure(name, unit, agent, higher_is_better),
        baseline=Figure(name, unit, bare, higher_is_better),
        baseline_name=BARE,
        target=target,
    )


def comparisons(agent: Samples, bare: Samples) -> list[Comparison]:
    found = [
        _comparison("one-way throughput", "msg/s", agent.one_way, bare.one_way),
        _comparison(
            "echo throughput, pipelined, unbatched",
            "msg/s",
            agent.echo,
            bare.echo,
            target=">= 0.6x",
        ),
        _comparison(
            f"echo throughput, client batch frames of {BATCH}",
            "msg/s",
            agent.batched,
            bare.batched,
        ),
        _comparison(
            "ping round trip p50",
            "µs",
            agent.ping_p50,
            bare.ping_p50,
            higher_is_better=False,
            target="<= 1.3x",
        ),
        _comparison(
            "ping round trip p99", "µs", agent.ping_p99, bare.ping_p99, higher_is_better=False
        ),
        _comparison(
            "fresh connect p50", "ms", agent.connect_p50, bare.connect_p50, higher_is_better=False
        ),
        _comparison(
            "fresh connect p99", "ms", agent.connect_p99, bare.connect_p99, higher_is_better=False
        ),
    ]
    for name, agent_cpu, bare_cpu in (
        ("server CPU per one-way message", agent.one_way_server_cpu_us, bare.one_way_server_cpu_us),
        ("server CPU per echo", agent.server_cpu_us, bare.server_cpu_us),
    ):
        if agent_cpu and bare_cpu:
            found.append(_comparison(name, "µs", agent_cpu, bare_cpu, higher_is_better=False))
    return found


def notes(sizes: Sizes, agent: Samples, bare: Samples) -> list[str]:
    found = [
        f"per repetition and server: {sizes.messages} pipelined echo requests and "
        f"{sizes.messages} one-way messages of ~{MESSAGE_SIZE} bytes (after {sizes.warmup} "
        f"warm-up echoes), {sizes.pings} ping round trips (after {sizes.ping_warmup}), "
        f"{sizes.connects} fresh connections (after {sizes.connect_warmup})",
        "one client, the same code for both servers (raw websockets, compression=None, "
        "msgspec); agent and bare runs alternate, the first server alternating per repetition",
        "the bare server checks no token, Origin or Host: the agent's connect time includes "
        "its handshake policy",
    ]
    for what, busy_samples, cpu_figure in (
        ("one-way", bare.one_way_client_busy, "server CPU per one-way message"),
        ("echo", bare.client_busy, "server CPU per echo"),
    ):
        busy = statistics.median(busy_samples)
        if busy >= 90:
            found.append(
                f"the client was on a CPU {busy:.0f}% of the {what} run against the bare "
                f"server: the bare {what} throughput is partly client-bound, so that ratio "
                f"flatters the agent; '{cpu_figure}' compares the servers directly"
            )
    return found


async def run(ctx: BenchContext) -> AreaResult:
    sizes = Sizes.of(ctx)
    agent, bare = Samples(), Samples()
    with ctx.agent() as agent_process, running_bare_echo(ctx.env()) as bare_process:
        targets = [
            (Target(agent_process.url, agent_process.token, agent_process.pid), agent),
            (Target(bare_process.url, "unused", bare_process.pid), bare),
        ]
        await measure(targets, sizes, ctx)
    return AreaResult(
        area=NAME,
        title=TITLE,
        comparisons=comparisons(agent, bare),
        notes=notes(sizes, agent, bare),
    )


AREA = Area(NAME, TITLE, run)
