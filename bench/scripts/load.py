"""Load: N concurrent authenticated connections to one agent, every request answered.

Starts a real ``localagent serve`` subprocess (built-in plugins only, its own
config dir and token) on a free loopback port, then for each N in
``--connections``: opens N WebSocket connections (all held open at once), has
every connection send ``--requests`` ``echo`` requests without waiting, and
reads every reply. A step passes when every connection opened and every
request got its own reply. The report gives the largest N that passed, and
messages/s at that N (requests answered / wall time from the first send to the
last reply). The client is one process on the same 2-core machine as the
agent, so both share the CPU; figures are noisy on a shared machine. The
agent's ``max_connections`` (256 by default) is raised to the largest N.

Usage::

    .venv/bin/python bench/scripts/load.py                      # 250 .. 2000 connections
    .venv/bin/python bench/scripts/load.py --connections 1000 --requests 50 --repeat 3
    .venv/bin/python bench/scripts/load.py --json load.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from localagent.testing import running_agent

#: Seconds one connection may take to get all its replies before they count as unanswered.
REPLY_TIMEOUT = 120.0


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def open_many(url: str, token: str, count: int, parallel: int) -> list[Any]:
    """Open ``count`` connections, ``parallel`` handshakes at a time; failures as exceptions."""
    gate = asyncio.Semaphore(parallel)
    headers = {"Authorization": f"Bearer {token}"}

    async def one() -> ClientConnection:
        async with gate:
            return await connect(
                url, additional_headers=headers, compression=None, open_timeout=60,
                ping_interval=None, max_queue=None,
            )  # fmt: skip

    return list(await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True))


async def exchange(ws: ClientConnection, first_id: int, requests: int) -> int:
    """Send ``requests`` echo requests, then read replies; return how many were answered."""
    ids = range(first_id, first_id + requests)
    for n in ids:
        await ws.send(orjson.dumps({"id": n, "type": "echo", "data": n}), text=True)
    expected = set(ids)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            while expected:
                reply = orjson.loads(await ws.recv())
                if reply.get("result") == {"data": reply.get("id")}:
                    expected.discard(reply["id"])
    except Exception:  # a timeout or a lost connection: what is left counts as unanswered
        pass
    return requests - len(expected)


async def step(url: str, token: str, pid: int, count: int, requests: int) -> dict[str, Any]:
    started = time.perf_counter()
    opened = await open_many(url, token, count, parallel=64)
    connect_seconds = time.perf_counter() - started
    sockets = [ws for ws in opened if isinstance(ws, ClientConnection)]
    errors = [repr(e) for e in opened if not isinstance(e, ClientConnection)]
    rss_connected = rss_mib(pid)
    ids = itertools.count(0, requests)
    started = time.perf_counter()
    answered = await asyncio.gather(*(exchange(ws, next(ids), requests) for ws in sockets))
    elapsed = time.perf_counter() - started
    rss_after = rss_mib(pid)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    total = count * requests
    done = sum(answered)
    return {
        "connections": count,
        "opened": len(sockets),
        "connect_errors": errors[:3],
        "requests": total,
        "answered": done,
        "unanswered": total - done,
        "seconds": elapsed,
        "messages_per_second": done / elapsed if elapsed else 0.0,
        "connect_seconds": connect_seconds,
        "agent_rss_mib_connected": rss_connected,
        "agent_rss_mib_after": rss_after,
        "ok": len(sockets) == count and done == total,
    }


async def run(args: argparse.Namespace, url: str, token: str, pid: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for count in args.connections:
        runs = [await step(url, token, pid, count, args.requests) for _ in range(args.repeat)]
        rates = [r["messages_per_second"] for r in runs]
        summary = {
            **runs[-1],
            "ok": all(r["ok"] for r in runs),
            "unanswered": sum(r["unanswered"] for r in runs),
            "messages_per_second_runs": rates,
            "messages_per_second": statistics.median(rates),
        }
        steps.append(summary)
        print(
            f"{count:>6} connections: opened {summary['opened']}, "
            f"{summary['answered']}/{summary['requests']} answered "
            f"({summary['unanswered']} unanswered over {args.repeat} run(s)), "
            f"median {summary['messages_per_second']:,.0f} msg/s "
            f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}), "
            f"agent RSS {summary['agent_rss_mib_connected']:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
        if not summary["ok"]:
            break
        best = summary
    return {"steps": steps, "largest_ok": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[250, 500, 1000, 1500, 2000],
        help="comma-separated connection counts to try, in order (stops at the first failure)",
    )
    parser.add_argument("--requests", type=int, default=20, help="requests per connection")
    parser.add_argument("--repeat", type=int, default=3, help="runs per connection count")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    limit = raise_fd_limit()
    needed = max(args.connections) * 2 + 100  # the agent holds one fd per connection
    if limit < needed:
        parser.error(f"the fd limit is {limit}; {needed} needed for {max(args.connections)}")
    with tempfile.TemporaryDirectory(prefix="localagent-load-") as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
        env |= {
            "LOCALAGENT_CONFIG_DIR": f"{root}/config",
            "LOCALAGENT_WORKSPACE": f"{root}/workspace",
            "LOCALAGENT_LOAD_PLUGINS": "",
            # Every connection of the largest step at once, past the default limit of 256.
            "LOCALAGENT_MAX_CONNECTIONS": str(max(args.connections) + 16),
        }
        with running_agent(env, "--log-level", "warning", config_dir=Path(root, "config")) as agent:
            results = asyncio.run(run(args, agent.url, agent.token, agent.pid))
            results["agent_alive_after"] = agent.process.poll() is None
    results |= {"fd_limit": limit, "requests_per_connection": args.requests, "cpus": os.cpu_count()}
    best = results["largest_ok"]
    if best:
        print(
            f"largest N with every request answered: {best['connections']} connections, "
            f"{best['messages_per_second']:,.0f} msg/s (median of {args.repeat})",
            file=sys.stderr,
        )
    else:
        print("no step passed", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0 if best else 1)


if __name__ == "__main__":
    main()
