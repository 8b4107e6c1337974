"""Soak: a million messages through one agent process; memory, fds and tasks before and after.

The agent is a real ``localagent.Server`` (built-in plugins) in a subprocess
of this script, started with tracemalloc on (``--no-tracemalloc`` turns it
off) and one extra plugin, ``soak_probe``, that answers ``soak.stats`` with
the agent's own figures: traced memory (after ``gc.collect()``), open fds
(``/proc/self/fd``), asyncio tasks, connections and in-flight handlers. RSS is
read from ``/proc/PID/status`` by this script.

The load: ``--total`` echo requests in batch frames of ``--batch`` messages,
over ``--connections`` connections that are opened afresh for every round of
``--round`` messages and closed after it, so connection churn is part of the
soak. Every reply is checked. The first ``--warmup`` messages are the warm-up;
growth is measured from the end of the warm-up to the end of the run, with the
soak connections closed and one probe connection open both times. Target:
growth under 5 MB; fds and tasks back to the warm-up figures.

Usage::

    .venv/bin/python bench/scripts/soak.py                       # 1,000,000 messages
    .venv/bin/python bench/scripts/soak.py --total 200000 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

import localagent
from localagent import handles, hookimpl

MIB = 1 << 20


# -- the agent side (runs in the subprocess) ------------------------------------------


class SoakProbe:
    """Answers ``soak.stats`` with the agent process's own memory, fd and task figures."""

    def __init__(self) -> None:
        self.agent: Any = None

    @hookimpl
    def on_load(self, agent: Any) -> None:
        self.agent = agent

    @hookimpl(specname="on_message")
    @handles("soak.stats")
    def stats(self) -> dict[str, Any]:
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        runtime = self.agent
        return {
            "traced_bytes": traced,
            "fds": len(os.listdir("/proc/self/fd")),
            "tasks": len(asyncio.all_tasks()),
            "connections": len(runtime.connections),
            "in_flight": len(runtime.in_flight),
        }


async def serve_agent() -> None:
    async with localagent.Server.create(port=0, extra_plugins={"soak_probe": SoakProbe()}) as srv:
        print(f"{srv.url} {srv.token_file.get()}", flush=True)
        await srv.serve_forever()


# -- the driver --------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def open_ws(url: str, token: str) -> ClientConnection:
    return await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        max_queue=None,
        ping_interval=None,
    )


async def request(ws: ClientConnection, message_type: str) -> Any:
    await ws.send(orjson.dumps({"id": "probe", "type": message_type}), text=True)
    reply = orjson.loads(await ws.recv())
    return reply["result"]


async def drive(ws: ClientConnection, count: int, batch: int, window: int, first: int) -> int:
    """Send ``count`` echo requests in batch frames, ``window`` frames at a time; check replies."""
    answered = 0
    next_id = first
    end = first + count
    while next_id < end:
        expected = 0
        for _ in range(window):
            if next_id >= end:
                break
            size = min(batch, end - next_id)
            members = [{"id": n, "type": "echo", "data": n} for n in range(next_id, next_id + size)]
            await ws.send(orjson.dumps({"type": "batch", "messages": members}), text=True)
            next_id += size
            expected += size
        for _ in range(expected):
            reply = orjson.loads(await ws.recv())
            if reply.get("result") != {"data": reply.get("id")}:
                raise AssertionError(f"unexpected reply {reply!r}")
            answered += 1
    return answered


async def soak(args: argparse.Namespace, url: str, token: str, pid: int) -> dict[str, Any]:
    probe = await open_ws(url, token)
    samples: list[dict[str, Any]] = []

    async def sample(done: int, label: str) -> dict[str, Any]:
        # Closed connections finish their server-side cleanup a moment after the client's
        # close returns: wait (bounded) until only the probe connection is left.
        for _ in range(500):
            stats = await request(probe, "soak.stats")
            if stats["connections"] == 1 and stats["in_flight"] == 0:
                break
            await asyncio.sleep(0.02)
        point = {"messages": done, "label": label, "rss_bytes": rss_bytes(pid), **stats}
        samples.append(point)
        traced = stats["traced_bytes"]
        print(
            f"{done:>9,} msgs  RSS {point['rss_bytes'] / MIB:7.1f} MiB  "
            f"traced {'-' if traced is None else f'{traced / MIB:6.2f} MiB'}  "
            f"fds {stats['fds']}  tasks {stats['tasks']}  connections {stats['connections']}",
            file=sys.stderr,
            flush=True,
        )
        return point

    await sample(0, "start")
    done = 0
    started = time.perf_counter()
    warm: dict[str, Any] | None = None
    warm_at = 0.0
    next_report = args.warmup
    while done < args.total:
        this_round = min(args.round, args.total - done)
        share = this_round // args.connections
        sockets = [await open_ws(url, token) for _ in range(args.connections)]
        counts = [share] * args.connections
        counts[-1] += this_round - share * args.connections
        firsts = [done + i * share for i in range(args.connections)]
        answered = await asyncio.gather(
            *(
                drive(ws, n, args.batch, args.window, first)
                for ws, n, first in zip(sockets, counts, firsts, strict=True)
            )
        )
        await asyncio.gather(*(ws.close() for ws in sockets))
        if sum(answered) != this_round:
            raise AssertionError(f"{this_round - sum(answered)} requests unanswered")
        done += this_round
        if warm is None and done >= args.warmup:
            warm = await sample(done, "warm")
            warm_at = time.perf_counter()
            next_report = done + args.report_every
        elif done >= next_report or done >= args.total:
            await sample(done, "end" if done >= args.total else "")
            next_report += args.report_every
    elapsed = time.perf_counter() - started
    measured_seconds = time.perf_counter() - warm_at
    end = samples[-1]
    await probe.close()
    assert warm is not None
    traced_growth = (
        None if warm["traced_bytes"] is None else end["traced_bytes"] - warm["traced_bytes"]
    )
    return {
        "messages": done,
        "seconds": elapsed,
        "messages_per_second": done / elapsed,
        "messages_per_second_after_warmup": (done - warm["messages"]) / measured_seconds,
        "rss_growth_bytes": end["rss_bytes"] - warm["rss_bytes"],
        "traced_growth_bytes": traced_growth,
        "fds_back_to_warm": end["fds"] == warm["fds"],
        "tasks_back_to_warm": end["tasks"] == warm["tasks"],
        "samples": samples,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }


def start_agent(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-agent"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2:
        process.kill()
        raise SystemExit("the agent did not start")
    return process, line[0], line[1]


def main() -> None:
    if sys.argv[1:] == ["--serve-agent"]:
        asyncio.run(serve_agent())
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=1_000_000, help="messages in all")
    parser.add_argument("--warmup", type=int, default=100_000, help="messages of warm-up")
    parser.add_argument("--round", type=int, default=50_000, help="messages per connection round")
    parser.add_argument("--connections", type=int, default=4, help="connections per round")
    parser.add_argument("--batch", type=int, default=100, help="messages per batch frame")
    parser.add_argument("--window", type=int, default=10, help="batch frames sent before reading")
    parser.add_argument("--report-every", type=int, default=100_000, help="messages per sample")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS only (faster agent)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localagent-soak-") as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
        env |= {
            "LOCALAGENT_CONFIG_DIR": f"{root}/config",
            "LOCALAGENT_WORKSPACE": f"{root}/workspace",
            "LOCALAGENT_LOAD_PLUGINS": "",
        }
        if not args.no_tracemalloc:
            env["PYTHONTRACEMALLOC"] = "1"
        process, url, token = start_agent(env)
        try:
            results = asyncio.run(soak(args, url, token, process.pid))
        finally:
            process.terminate()
            process.wait(30)
    traced = results["traced_growth_bytes"]
    print(
        f"{results['messages']:,} messages in {results['seconds']:.0f} s "
        f"({results['messages_per_second']:,.0f} msg/s); after warm-up: RSS growth "
        f"{results['rss_growth_bytes'] / MIB:+.2f} MiB, traced growth "
        f"{'n/a' if traced is None else f'{traced / MIB:+.2f} MiB'}, "
        f"fds back: {results['fds_back_to_warm']}, tasks back: {results['tasks_back_to_warm']}",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = (
        results["fds_back_to_warm"]
        and results["tasks_back_to_warm"]
        and results["rss_growth_bytes"] < 5 * MIB
        and (traced is None or traced < 5 * MIB)
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
