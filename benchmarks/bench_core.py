"""Core LocalAgent benchmarks: the agent against a bare websockets server, in one run.

Everything is real: ``localagent serve`` and the bare echo server
(``python -m localagent._bench.bare_echo``, shared with ``localagent bench``) run as
subprocesses listening on 127.0.0.1, and this process drives both over real
sockets with the *same* client code (a raw websockets client using orjson), so
the ratios measure the server side. Runs are interleaved (agent, bare, agent,
bare, ...) so that the noise of a shared machine hits both alike, and every
figure is the median of ``--repetitions`` runs.

Measured:

1. Echo throughput: N ~100-byte ``echo`` requests pipelined on one connection
   (a reader task consumes the replies while the writer sends), unbatched.
   Target: agent/bare >= 0.6x.
2. ``ping`` round trip, one request in flight at a time: p50 and p99.
   Target: p50 agent/bare <= 1.3x (p99 is reported only).
3. Wall time of ``localagent plugins list`` next to ``python -c pass`` and
   ``pytest --version`` (reported only), with whether the packages had current
   ``.pyc`` files (``--compile`` writes them first).

Usage::

    .venv/bin/python benchmarks/bench_core.py              # full run (~1 minute)
    .venv/bin/python benchmarks/bench_core.py --quick      # smoke run (~15 s)
    .venv/bin/python benchmarks/bench_core.py --json results.json --compile
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from _common import AGENT, BenchError, Target, agent_server, percentile, table
from websockets.asyncio.client import ClientConnection, connect
from websockets.version import version as websockets_version

from localagent._bench.bare_echo import running_bare_echo

MESSAGE_SIZE = 100  # bytes per request frame
BARE = "bare"
#: Packages whose bytecode is reported and which ``--compile`` compiles.
PACKAGES = (
    "localagent",
    "localagent_hookspecs",
    "websockets",
    "click",
    "pluggy",
    "attr",
    "attrs",
    "platformdirs",
    "tomlkit",
    "orjson",
)


# -- servers ----------------------------------------------------------------


@contextmanager
def bare_server(env: dict[str, str]) -> Iterator[Target]:
    """Run ``python -m localagent._bench.bare_echo`` (it prints its port) until the block ends."""
    with running_bare_echo(env) as bare:
        yield Target(BARE, bare.url, "unused", bare.pid)


# -- the client (identical for both servers) -----------------------------------


def make_frames(message_type: str, count: int, first_id: int = 1) -> list[bytes]:
    """Encode ``count`` requests with consecutive ids, each about MESSAGE_SIZE bytes."""
    empty = len(orjson.dumps({"id": first_id + count, "type": message_type, "data": ""}))
    data = "x" * max(0, MESSAGE_SIZE - empty)
    return [
        orjson.dumps({"id": i, "type": message_type, "data": data})
        for i in range(first_id, first_id + count)
    ]


async def open_connection(target: Target) -> ClientConnection:
    return await connect(
        target.url,
        compression=None,
        additional_headers={"Authorization": f"Bearer {target.token}"},
    )


def process_cpu(pid: int) -> float | None:
    """CPU seconds process ``pid`` has used so far (Linux /proc; None elsewhere).

    Sums the nanosecond run times of its threads from ``schedstat``, falling
    back to ``stat`` (clock-tick resolution) where schedstat is missing.
    """
    try:
        run_ns = [
            int(path.read_text().split()[0])
            for path in Path(f"/proc/{pid}/task").glob("*/schedstat")
        ]
        if run_ns:
            return sum(run_ns) / 1e9
    except (OSError, ValueError, IndexError):
        pass  # a thread ended meanwhile, or no schedstat: use stat
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _check(frame: bytes | str, expected_id: int) -> None:
    reply = orjson.loads(frame)
    if reply.get("id") != expected_id or "result" not in reply:
        raise BenchError(f"expected a result for id {expected_id}, got {reply!r}")


async def pipelined(ws: ClientConnection, frames: Sequence[bytes], first_id: int) -> float:
    """Send every frame without waiting while a reader task takes the replies; msg/s."""

    async def read_replies() -> None:
        for expected in range(first_id, first_id + len(frames)):
            _check(await ws.recv(decode=False), expected)

    started = time.perf_counter()
    reader = asyncio.create_task(read_replies())
    try:
        for frame in frames:
            await ws.send(frame, text=True)
        await reader
    finally:
        reader.cancel()
    return len(frames) / (time.perf_counter() - started)


async def round_trips(ws: ClientConnection, frames: Sequence[bytes], first_id: int) -> list[float]:
    """One request in flight at a time; each round trip in microseconds."""
    samples: list[float] = []
    for expected, frame in enumerate(frames, first_id):
        started = time.perf_counter_ns()
        await ws.send(frame, text=True)
        reply = await ws.recv(decode=False)
        samples.append((time.perf_counter_ns() - started) / 1000)
        _check(reply, expected)
    return samples


@dataclass(frozen=True)
class Workload:
    echo_warmup: list[bytes]
    echo: list[bytes]
    ping_warmup: list[bytes]
    ping: list[bytes]

    @classmethod
    def create(cls, messages: int, pings: int) -> Workload:
        echo_warmup = max(500, messages // 10)
        ping_warmup = max(100, pings // 10)
        return cls(
            make_frames("echo", echo_warmup),
            make_frames("echo", messages, echo_warmup + 1),
            make_frames("ping", ping_warmup),
            make_frames("ping", pings, ping_warmup + 1),
        )


@dataclass(frozen=True)
class Throughput:
    rate: float  # replies per second
    server_us: float | None  # server CPU microseconds per request
    client_busy: float  # share of the wall time this (client) process was on a CPU


async def throughput_run(target: Target, work: Workload) -> Throughput:
    ws = await open_connection(target)
    try:
        await pipelined(ws, work.echo_warmup, 1)
        server_before, client_before = process_cpu(target.pid), time.process_time()
        rate = await pipelined(ws, work.echo, len(work.echo_warmup) + 1)
        server_after, client_after = process_cpu(target.pid), time.process_time()
    finally:
        await ws.close()
    server_us = None
    if server_before is not None and server_after is not None:
        server_us = (server_after - server_before) / len(work.echo) * 1e6
    wall = len(work.echo) / rate
    return Throughput(rate, server_us, (client_after - client_before) / wall)


async def latency_run(target: Target, work: Workload) -> tuple[float, float]:
    ws = await open_connection(target)
    try:
        await round_trips(ws, work.ping_warmup, 1)
        samples = await round_trips(ws, work.ping, len(work.ping_warmup) + 1)
    finally:
        await ws.close()
    return statistics.median(samples), percentile(samples, 99)


# -- command wall times ----------------------------------------------------------


def _script(name: str) -> list[str]:
    """The console script next to this interpreter, or ``python -m name``."""
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", name]


def cli_commands(config_dir: Path) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "localagent plugins list": [
            *_script("localagent"),
            "--config-dir",
            str(config_dir),
            "plugins",
            "list",
        ],
        "pytest --version": [*_script("pytest"), "--version"],
    }


def wall_time(command: Sequence[str], env: dict[str, str]) -> float:
    """Run ``command`` to completion; its wall time in milliseconds."""
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


# -- bytecode ---------------------------------------------------------------------


def package_dir(name: str) -> Path | None:
    """The directory of package ``name`` (found without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _has_current_pyc(source: Path) -> bool:
    pyc = Path(importlib.util.cache_from_source(str(source)))
    try:
        header = pyc.read_bytes()[:16]
    except OSError:
        return False
    if header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if int.from_bytes(header[4:8], "little") != 0:
        return True  # hash-based pyc: checked (or not) by the import system
    stat = source.stat()
    return (
        int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF
    )


def bytecode_status() -> dict[str, tuple[int, int]]:
    """Per package: (modules with a current .pyc, modules)."""
    status: dict[str, tuple[int, int]] = {}
    for name in PACKAGES:
        directory = package_dir(name)
        if directory is None:
            continue
        sources = [p for p in directory.rglob("*.py") if "__pycache__" not in p.parts]
        status[name] = (sum(_has_current_pyc(p) for p in sources), len(sources))
    return status


def compile_packages() -> None:
    directories = [str(d) for name in PACKAGES if (d := package_dir(name)) is not None]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *directories], check=True)


# -- the run ---------------------------------------------------------------------


@dataclass
class Results:
    throughput: dict[str, list[float]] = field(default_factory=lambda: {AGENT: [], BARE: []})
    server_us: dict[str, list[float]] = field(default_factory=lambda: {AGENT: [], BARE: []})
    client_busy: dict[str, list[float]] = field(default_factory=lambda: {AGENT: [], BARE: []})
    p50: dict[str, list[float]] = field(default_factory=lambda: {AGENT: [], BARE: []})
    p99: dict[str, list[float]] = field(default_factory=lambda: {AGENT: [], BARE: []})
    cli: dict[str, list[float]] = field(default_factory=dict)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def measure_servers(
    targets: Sequence[Target], work: Workload, repetitions: int, results: Results
) -> None:
    for rep in range(1, repetitions + 1):
        for target in targets:
            run = await throughput_run(target, work)
            results.throughput[target.name].append(run.rate)
            results.client_busy[target.name].append(run.client_busy * 100)
            if run.server_us is not None:
                results.server_us[target.name].append(run.server_us)
        for target in targets:
            p50, p99 = await latency_run(target, work)
            results.p50[target.name].append(p50)
            results.p99[target.name].append(p99)
        progress(
            f"  rep {rep}/{repetitions}: echo "
            + ", ".join(f"{t.name} {results.throughput[t.name][-1]:,.0f}/s" for t in targets)
            + "; ping p50 "
            + ", ".join(f"{t.name} {results.p50[t.name][-1]:.0f} us" for t in targets)
        )


def measure_cli(
    commands: dict[str, list[str]], env: dict[str, str], repetitions: int, results: Results
) -> None:
    for command in commands.values():  # one unmeasured run each: OS caches
        wall_time(command, env)
    results.cli = {label: [] for label in commands}
    for _ in range(repetitions):
        for label, command in commands.items():
            results.cli[label].append(wall_time(command, env))


def _spread(values: Sequence[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}-{format(max(values), fmt)}"


@dataclass(frozen=True)
class Metric:
    label: str
    values: dict[str, list[float]]
    fmt: str
    target: str = "-"
    check: Callable[[float], bool] | None = None
    show_ratio: bool = True


def render(results: Results, repetitions: int) -> tuple[str, dict[str, Any]]:
    """The printed tables and the summary for ``--json``."""
    rows: list[tuple[str, ...]] = [
        (
            "metric",
            "agent",
            "bare",
            "agent/bare",
            "paired",
            "target",
            "verdict",
            "agent range",
            "bare range",
        )
    ]
    summary: dict[str, Any] = {}
    metrics = [
        Metric(
            "echo throughput (msg/s)", results.throughput, ",.0f", ">= 0.60x", lambda r: r >= 0.6
        ),
        Metric("ping p50 (us)", results.p50, ".0f", "<= 1.30x", lambda r: r <= 1.3),
        Metric("ping p99 (us)", results.p99, ".0f"),
        Metric("server CPU per echo (us)", results.server_us, ".1f"),
        Metric("client CPU busy in echo (%)", results.client_busy, ".0f", show_ratio=False),
    ]
    for metric in metrics:
        values, fmt = metric.values, metric.fmt
        if not values[AGENT] or not values[BARE]:
            continue  # server CPU needs /proc
        agent, bare = statistics.median(values[AGENT]), statistics.median(values[BARE])
        ratio = agent / bare
        paired = [a / b for a, b in zip(values[AGENT], values[BARE], strict=True)]
        paired_ratio = statistics.median(paired)
        verdict = "-"
        if metric.check is not None:
            verdict = "PASS" if metric.check(paired_ratio) else "FAIL"
        rows.append(
            (
                metric.label,
                format(agent, fmt),
                format(bare, fmt),
                f"{ratio:.2f}x" if metric.show_ratio else "-",
                f"{paired_ratio:.2f}x" if metric.show_ratio else "-",
                metric.target,
                verdict,
                _spread(values[AGENT], fmt),
                _spread(values[BARE], fmt),
            )
        )
        summary[metric.label] = {
            "agent_median": agent,
            "bare_median": bare,
            "ratio_of_medians": ratio if metric.show_ratio else None,
            "median_paired_ratio": paired_ratio if metric.show_ratio else None,
            "paired_ratios": paired,
            "target": metric.target,
            "verdict": verdict,
            "agent": values[AGENT],
            "bare": values[BARE],
        }
    base = statistics.median(results.cli["python -c pass"])
    cli_rows: list[tuple[str, ...]] = [("command", "median ms", "range ms", "vs python -c pass")]
    for label, times in results.cli.items():
        median = statistics.median(times)
        cli_rows.append((label, f"{median:.1f}", _spread(times, ".1f"), f"{median / base:.1f}x"))
        summary[label] = {"median_ms": median, "ms": times, "vs_python": median / base}
    text = (
        f"Servers (median of {repetitions} repetitions; agent/bare = ratio of the medians; "
        "paired = median of\n  the per-repetition agent/bare ratios, which the verdict uses; "
        "ranges = min-max)\n"
        + table(rows)
        + f"\n\nCommand wall time (median of {repetitions})\n"
        + table(cli_rows)
    )
    return text, summary


def _describe_bytecode(status: dict[str, tuple[int, int]]) -> str:
    parts = [f"{name} {have}/{total}" for name, (have, total) in status.items()]
    return "modules with a current .pyc: " + ", ".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-r", "--repetitions", type=int, help="repetitions (default 5, quick 3)")
    parser.add_argument("-n", "--messages", type=int, help="pipelined echo requests per run")
    parser.add_argument("--pings", type=int, help="measured ping round trips per run")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument(
        "--compile", action="store_true", help="compileall the packages first (warm .pyc)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results to FILE")
    args = parser.parse_args(argv)
    quick = args.quick
    args.repetitions = args.repetitions or (3 if quick else 5)
    args.messages = args.messages or (5_000 if quick else 20_000)
    args.pings = args.pings or (500 if quick else 2_000)
    if min(args.repetitions, args.messages, args.pings) < 1:
        parser.error("--repetitions, --messages and --pings must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compile:
        progress("compiling the packages (python -m compileall -q) ...")
        compile_packages()
    bytecode = bytecode_status()
    load_before = os.getloadavg()
    env = {
        **os.environ,
        "LOCALAGENT_LOAD_PLUGINS": "",
    }
    results = Results()
    work = Workload.create(args.messages, args.pings)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="localagent-bench-") as tmp:
        config_dir = Path(tmp)
        env["LOCALAGENT_CONFIG_DIR"] = str(config_dir)
        env["LOCALAGENT_WORKSPACE"] = str(config_dir / "workspace")
        with agent_server(config_dir, env) as (agent, log_path), bare_server(env) as bare:
            progress(
                f"agent {agent.url}, bare {bare.url}: {args.repetitions} reps x "
                f"{args.messages} pipelined echo + {args.pings} pings"
            )
            asyncio.run(measure_servers((agent, bare), work, args.repetitions, results))
            agent_log = [
                line
                for line in log_path.read_text(errors="replace").splitlines()
                if not line.startswith(("LocalAgent ", "  "))  # the startup banner
            ]
        progress("timing commands ...")
        measure_cli(cli_commands(config_dir), env, args.repetitions, results)
    load_after = os.getloadavg()
    report, summary = render(results, args.repetitions)
    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "websockets": websockets_version,
        "orjson": orjson.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "repetitions": args.repetitions,
        "messages": args.messages,
        "pings": args.pings,
        "message_bytes": round(statistics.mean(len(frame) for frame in work.echo)),
        "compiled": args.compile,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "bytecode": {name: list(counts) for name, counts in bytecode.items()},
        "seconds": time.monotonic() - started,
    }
    print(
        f"\nPython {meta['python']} ({meta['implementation']}), websockets {meta['websockets']}, "
        f"orjson {meta['orjson']}, {meta['platform']}, {meta['cpus']} CPUs\n"
        f"{args.messages} pipelined echo requests of {meta['message_bytes']} bytes and "
        f"{args.pings} ping round trips per run; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {meta['seconds']:.0f} s\n"
    )
    print(report)
    dont_write = meta["PYTHONDONTWRITEBYTECODE"]
    print(
        f"\nBytecode ({'after --compile' if args.compile else 'as found'}): "
        f"{_describe_bytecode(bytecode)}; PYTHONDONTWRITEBYTECODE={dont_write or '(unset)'}"
    )
    missing = bytecode.get("localagent", (0, 0))
    if missing[0] < missing[1]:
        how = "and cannot cache it" if dont_write else "until it is cached"
        print(
            "  localagent runs from source without .pyc: every command compiles it "
            f"{how}; use --compile for warm numbers."
        )
    busy = statistics.median(results.client_busy[BARE])
    if busy >= 90:
        print(
            f"\nNote: the client process was on a CPU {busy:.0f}% of the time against the bare "
            "server, so\n  the bare throughput is partly client-bound and the throughput ratio "
            "flatters the agent;\n  'server CPU per echo' compares the server side directly."
        )
    if agent_log:
        print("\nThe agent logged:\n  " + "\n  ".join(agent_log[:20]))
    if args.json:
        args.json.write_bytes(
            orjson.dumps({"meta": meta, "results": summary}, option=orjson.OPT_INDENT_2)
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
