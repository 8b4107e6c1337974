"""Batching latency: the adaptive batcher against a fixed-interval batcher and no batching.

The batching plugin must not cost a lone message the wait a fixed-interval
batcher imposes. This script starts three real agents, each its own
subprocess on a free loopback port (this script in ``--serve`` mode):

- ``off``: no batching;
- ``adaptive``: the ``localagent-batching`` plugin with its defaults;
- ``fixed``: a fixed-interval batcher, as the project's seed document had
  it: every reply is queued and the queue is written when it holds
  ``--size`` messages or ``--interval`` seconds after its first message,
  whichever comes first.

Then, from this process, it measures ``ping`` round trips over real
WebSocket connections: one request at a time (idle), and ``--in-flight``
requests kept outstanding at once (under load). The agents are measured in
turn, round after round, so machine noise falls on all three alike; it
prints each one's p50 and p99 (median over the rounds) and the same-round
ratios against ``adaptive``.

Usage::

    .venv/bin/python bench/scripts/batching_latency.py
    .venv/bin/python bench/scripts/batching_latency.py --rounds 7 --pings 2000 --json latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from localagent_hookspecs import hookimpl
from websockets.asyncio.client import ClientConnection, connect

AGENTS = ("off", "adaptive", "fixed")


class FixedIntervalBatcher:
    """A plugin with the seed's batcher: size or timer, never sent at once."""

    def __init__(self, size: int, interval: float) -> None:
        self.size = size
        self.interval = interval

    @hookimpl
    def on_connect(self, connection: Any) -> None:
        size, interval = self.size, self.interval
        loop = asyncio.get_running_loop()
        queue: list[Mapping[str, Any]] = []
        timer: list[asyncio.TimerHandle] = []
        writes: set[asyncio.Task[None]] = set()

        def wrap(inner: Callable[[Mapping[str, Any]], Awaitable[None]]) -> Any:
            async def write(messages: list[Mapping[str, Any]]) -> None:
                if len(messages) == 1:
                    await inner(messages[0])
                else:
                    await inner({"type": "batch", "messages": messages})

            def flush() -> None:
                if timer:
                    timer.pop().cancel()
                if queue:
                    task = loop.create_task(write(queue[:]))
                    writes.add(task)
                    task.add_done_callback(writes.discard)
                    queue.clear()

            async def send(message: Mapping[str, Any]) -> None:
                queue.append(message)
                if len(queue) >= size:
                    flush()
                elif not timer:
                    timer.append(loop.call_later(interval, flush))

            return send

        connection.wrap_send(wrap)


async def serve(kind: str, size: int, interval: float) -> None:
    """Run one agent until stdin closes; print its URL and token as one JSON line."""
    import localagent

    plugins: dict[str, object] = {}
    if kind == "adaptive":
        from localagent_batching import Plugin as Batching

        plugins["batching"] = Batching()
    elif kind == "fixed":
        plugins["fixed-interval"] = FixedIntervalBatcher(size, interval)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    environ["LOCALAGENT_LOAD_PLUGINS"] = ""  # third-party plugins only when named here
    with tempfile.TemporaryDirectory() as directory:
        settings = localagent.load_settings(
            directory=Path(directory),
            environ=environ,
            overrides={"host": "127.0.0.1", "port": 0, "workspace": directory},
        )
        server = localagent.Server.create(
            settings, extra_plugins=plugins, environ=environ, strict=True
        )
        async with server:
            line = {"url": server.url, "token": server.token_file.get()}
            print(json.dumps(line), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def round_trips(ws: ClientConnection, count: int, in_flight: int) -> list[float]:
    """``count`` pings, ``in_flight`` outstanding at once; each round trip in µs."""
    samples: list[float] = []
    ids = iter(range(count))
    loop = asyncio.get_running_loop()
    replies = {number: loop.create_future() for number in range(count)}

    async def pinger() -> None:
        for number in ids:
            started = time.perf_counter()
            await ws.send(orjson.dumps({"id": number, "type": "ping"}), text=True)
            await replies[number]
            samples.append((time.perf_counter() - started) * 1e6)

    async def reader() -> None:
        answered = 0
        while answered < count:
            frame = orjson.loads(await ws.recv())
            for reply in frame["messages"] if frame.get("type") == "batch" else [frame]:
                replies[reply["id"]].set_result(reply)
                answered += 1

    read = asyncio.create_task(reader())
    await asyncio.gather(*(pinger() for _ in range(in_flight)))
    await read
    return samples


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@contextmanager
def running_agents(args: argparse.Namespace) -> Iterator[dict[str, dict[str, str]]]:
    """The three agents as subprocesses; their URL and token by kind. Stopped after."""
    agents: list[subprocess.Popen[str]] = []
    endpoints: dict[str, dict[str, str]] = {}
    try:
        for kind in AGENTS:
            command = [sys.executable, __file__, "--serve", kind]
            command += ["--size", str(args.size), "--interval", str(args.interval)]
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            agents.append(process)
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise SystemExit(f"the {kind} agent did not start")
            endpoints[kind] = json.loads(line)
        yield endpoints
    finally:
        for process in agents:
            if process.stdin is not None:
                process.stdin.close()  # its serve() returns
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def measure(
    endpoints: dict[str, dict[str, str]], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {
        kind: {"idle p50": [], "idle p99": [], "load p50": [], "load p99": []} for kind in AGENTS
    }
    for round_ in range(args.rounds):
        for kind in AGENTS:
            endpoint = endpoints[kind]
            headers = {"Authorization": f"Bearer {endpoint['token']}"}
            async with connect(endpoint["url"], additional_headers=headers, compression=None) as ws:
                await round_trips(ws, min(200, args.pings), 1)  # warm-up
                idle = await round_trips(ws, args.pings, 1)
                load = await round_trips(ws, args.pings * 4, args.in_flight)
            figures[kind]["idle p50"].append(percentile(idle, 50))
            figures[kind]["idle p99"].append(percentile(idle, 99))
            figures[kind]["load p50"].append(percentile(load, 50))
            figures[kind]["load p99"].append(percentile(load, 99))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    return figures


def report(figures: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "rounds": args.rounds,
        "pings": args.pings,
        "in_flight": args.in_flight,
        "size": args.size,
        "interval": args.interval,
        "figures": {},
    }
    print(
        f"ping round trips, µs: median over {args.rounds} rounds; idle = 1 in flight, "
        f"load = {args.in_flight} in flight; "
        f"fixed = size {args.size} or {args.interval * 1000:g} ms"
    )
    print(f"{'figure':<10}" + "".join(f"{kind:>12}" for kind in AGENTS) + "   ratios to adaptive")
    for name in ("idle p50", "idle p99", "load p50", "load p99"):
        medians = {kind: statistics.median(figures[kind][name]) for kind in AGENTS}
        ratios = {
            kind: statistics.median(
                other / mine
                for other, mine in zip(figures[kind][name], figures["adaptive"][name], strict=True)
            )
            for kind in ("off", "fixed")
        }
        print(
            f"{name:<10}"
            + "".join(f"{medians[kind]:>12,.0f}" for kind in AGENTS)
            + f"   off {ratios['off']:.2f}x, fixed {ratios['fixed']:.2f}x"
        )
        result["figures"][name] = {
            "samples_us": {kind: figures[kind][name] for kind in AGENTS},
            "median_us": medians,
            "same_round_ratio_to_adaptive": ratios,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=AGENTS, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the three agents")
    parser.add_argument("--pings", type=int, default=1000, help="idle pings per round")
    parser.add_argument("--in-flight", type=int, default=16, help="outstanding pings under load")
    parser.add_argument("--size", type=int, default=50, help="batch size of both batchers")
    parser.add_argument("--interval", type=float, default=0.005, help="fixed batcher's interval")
    parser.add_argument("--json", type=Path, help="write the samples and medians here")
    args = parser.parse_args()
    if args.serve:
        from localagent._loop import run

        # The agent's event loop, as `localagent serve` picks it (uvloop when installed).
        run(serve(args.serve, args.size, args.interval), os.environ.get("LOCALAGENT_LOOP", "auto"))
        return
    with running_agents(args) as endpoints:
        figures = asyncio.run(measure(endpoints, args))
    result = report(figures, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
