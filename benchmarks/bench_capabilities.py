"""The built-in capabilities (exec, fs, kv) through a real agent, beside the bare libraries.

Everything is real: two ``localagent serve`` subprocesses (one on the embedded
memory store, one on a private ``redis-server`` started here), real programs,
real files, real Redis. Each figure is the median of ``--repetitions`` runs,
agent and bare interleaved, and every ratio compares the two in the same run.

Measured (ops/s):

1. ``exec`` of ``true`` with 8 requests in flight vs bare
   ``asyncio.create_subprocess_exec`` with 8 in flight in this process
   (target: agent/bare >= 0.7x).
2. ``fs.read`` of 1 KiB files (64 requests in flight) vs bare ``open().read()``.
3. ``kv.set`` + ``kv.get`` through the agent, one at a time and 64 in flight
   over one connection, on memory and on Redis, vs bare redis-py asyncio (one at
   a time, 64 concurrent commands, and a pipeline of 64). Target: the agent on
   Redis with 64 in flight >= 0.5x bare redis-py with 64 concurrent commands.

Usage::

    .venv/bin/python benchmarks/bench_capabilities.py [--quick] [-r N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio
from _common import agent_server, table

from localagent import Client
from localagent.testing import RedisServer

Call = Callable[[int], Awaitable[Any]]


async def in_flight(count: int, window: int, call: Call) -> float:
    """Run ``call(0..count-1)`` with ``window`` calls outstanding; return ops/s."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await call(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    return count / (time.perf_counter() - started)


# -- the workloads, agent side and bare side --------------------------------------------


async def bare_exec(_index: int) -> None:
    process = await asyncio.create_subprocess_exec(
        "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await process.communicate()
    if process.returncode != 0:
        raise RuntimeError("true failed")


def agent_exec(client: Client) -> Call:
    async def call(_index: int) -> None:
        reply = await client.request("exec", {"argv": ["true"]})
        if reply["exit_code"] != 0:
            raise RuntimeError(f"exec failed: {reply}")

    return call


def bare_read(paths: Sequence[Path]) -> Call:
    async def call(index: int) -> None:
        # Blocking on purpose: the baseline is a plain open().read() loop.
        with open(paths[index % len(paths)], encoding="utf-8") as file:  # noqa: ASYNC230
            if len(file.read()) != 1024:
                raise RuntimeError("short read")

    return call


def agent_read(client: Client, names: Sequence[str]) -> Call:
    async def call(index: int) -> None:
        reply = await client.request("fs.read", {"path": names[index % len(names)]})
        if len(reply["content"]) != 1024:
            raise RuntimeError("short read")

    return call


def agent_kv(client: Client) -> Call:
    async def call(index: int) -> None:
        key = f"bench:{index % 1000}"
        await client.request("kv.set", {"key": key, "value": index})
        if (await client.request("kv.get", {"key": key}))["value"] != index:
            raise RuntimeError("kv read back a different value")

    return call


def bare_kv(client: redis.asyncio.Redis) -> Call:
    async def call(index: int) -> None:
        key = f"localagent:kv:bench:{index % 1000}"
        await client.set(key, json.dumps(index))
        if json.loads(await client.get(key)) != index:
            raise RuntimeError("redis read back a different value")

    return call


def bare_kv_pipelined(client: redis.asyncio.Redis, batch: int) -> Call:
    """One call = ``batch`` set+get pairs in one pipeline (counts as ``batch`` ops)."""

    async def call(index: int) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(batch):
                key = f"localagent:kv:bench:{(index * batch + n) % 1000}"
                pipe.set(key, json.dumps(n))
                pipe.get(key)
            await pipe.execute()

    return call


# -- running it ----------------------------------------------------------------------------


def write_config(directory: Path, workspace: Path, redis_url: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "[agent]",
        f'workspace = "{workspace}"',
        *([f'redis = "{redis_url}"'] if redis_url else []),
        "[plugins.exec]",
        'allow = ["true"]',
        "max_concurrent = 8",
        "max_per_connection = 8",
    ]
    (directory / "config.toml").write_text("\n".join(lines) + "\n")


async def measure(
    memory_url: str,
    memory_token: str,
    redis_agent_url: str,
    redis_token: str,
    redis_url: str,
    files: Sequence[Path],
    sizes: dict[str, int],
    repetitions: int,
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    names = [path.name for path in files]
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=64)
    bare_redis = redis.asyncio.Redis(connection_pool=pool)
    async with (
        Client(memory_url, memory_token) as memory_agent,
        Client(redis_agent_url, redis_token) as redis_agent,
    ):
        n_exec, n_fs, n_kv = sizes["exec"], sizes["fs"], sizes["kv"]
        for _ in range(repetitions):
            record("exec/agent", await in_flight(n_exec, 8, agent_exec(memory_agent)))
            record("exec/bare", await in_flight(n_exec, 8, bare_exec))
            record("fs/agent", await in_flight(n_fs, 64, agent_read(memory_agent, names)))
            record("fs/bare", await in_flight(n_fs, 1, bare_read(files)))
            for window, label in ((1, "single"), (64, "64 in flight")):
                agent_calls = agent_kv(memory_agent)
                record(f"kv memory {label}/agent", 2 * await in_flight(n_kv, window, agent_calls))
                agent_calls = agent_kv(redis_agent)
                record(f"kv redis {label}/agent", 2 * await in_flight(n_kv, window, agent_calls))
                bare_calls = bare_kv(bare_redis)
                record(f"kv redis {label}/bare", 2 * await in_flight(n_kv, window, bare_calls))
            pipelined = bare_kv_pipelined(bare_redis, 64)
            record("kv redis pipeline 64/bare", 2 * 64 * await in_flight(n_kv // 64, 1, pipelined))
    await bare_redis.aclose()
    return samples


def render(samples: dict[str, list[float]]) -> str:
    median = {name: statistics.median(values) for name, values in samples.items()}
    rows = [("figure (ops/s)", "agent", "bare", "agent/bare", "target")]

    def row(label: str, agent: str, bare: str, target: str = "-") -> None:
        a, b = median.get(agent), median.get(bare)
        ratio = f"{a / b:.2f}x" if a and b else "-"
        rows.append((label, f"{a:,.0f}" if a else "-", f"{b:,.0f}" if b else "-", ratio, target))

    row("exec `true`, 8 in flight", "exec/agent", "exec/bare", ">= 0.70x")
    row("fs.read 1 KiB (bare: open().read())", "fs/agent", "fs/bare", "report")
    row("kv memory, one at a time (vs redis-py)", "kv memory single/agent", "kv redis single/bare")
    row("kv memory, 64 in flight (vs redis-py)", "kv memory 64 in flight/agent",
        "kv redis 64 in flight/bare")  # fmt: skip
    row("kv redis, one at a time", "kv redis single/agent", "kv redis single/bare", "report")
    row("kv redis, 64 in flight", "kv redis 64 in flight/agent", "kv redis 64 in flight/bare",
        ">= 0.50x")  # fmt: skip
    row("kv redis, 64 in flight vs bare pipeline", "kv redis 64 in flight/agent",
        "kv redis pipeline 64/bare", "report")  # fmt: skip
    return table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-r", "--repetitions", type=int, default=5, help="runs (default 5)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, 3 repetitions")
    parser.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    args = parser.parse_args(argv)
    repetitions = 3 if args.quick else args.repetitions
    scale = 0.2 if args.quick else 1.0
    sizes = {"exec": int(400 * scale), "fs": int(10_000 * scale), "kv": int(6_400 * scale)}
    with tempfile.TemporaryDirectory(prefix="localagent-bench-") as tmp:
        root = Path(tmp)
        workspace = root / "workspace"
        workspace.mkdir()
        files = []
        for n in range(200):
            path = workspace / f"file{n:03}.txt"
            path.write_text("x" * 1024)
            files.append(path)
        redis_server = RedisServer(root / "redis", durable=False)
        redis_server.start()
        env = {**os.environ, "LOCALAGENT_LOAD_PLUGINS": ""}
        try:
            write_config(root / "memory", workspace, None)
            write_config(root / "redis-agent", workspace, redis_server.url)
            with (
                agent_server(root / "memory", env) as (memory, _),
                agent_server(root / "redis-agent", env) as (on_redis, _),
            ):
                print(f"measuring, {repetitions} repetitions ...", file=sys.stderr)
                samples = asyncio.run(
                    measure(
                        memory.url,
                        memory.token,
                        on_redis.url,
                        on_redis.token,
                        redis_server.url,
                        files,
                        sizes,
                        repetitions,
                    )
                )
        finally:
            redis_server.stop()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of {repetitions} runs")
    print(render(samples))
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
