"""One tool call's round trip: through ``localagent mcp``, a plain MCP SDK server, the WebSocket.

Same run, interleaved rounds, one MCP client SDK for both MCP servers:

- **bridge**: the official client -> ``localagent mcp`` (stdio) -> a real ``localagent serve``
  subprocess (WebSocket) -> its ``echo`` handler, and back;
- **plain**: the official client -> ``plain_echo_server.py`` (stdio), the SDK's low-level
  server with one echo tool answering in-process: an MCP tool call with nothing behind it,
  on asyncio's default loop as an SDK server runs by default (**plain-uvloop**: the same on
  uvloop, the loop the bridge runs on where uvloop is installed);
- **forward**: the same plain server, its echo tool sending each call to the agent's ``echo``
  over one WebSocket: the least any MCP bridge to the agent can cost (the bridge's own
  work is bridge - forward);
- **websocket**: ``localagent.Client`` -> the same agent's ``echo``: the agent alone.

Each round makes ``--calls`` sequential calls per target, in turn; the figure per target is
the median of the per-call times over all rounds (and p90). The ratio bridge/plain is what the
bridge adds over any MCP server on this SDK; bridge - websocket is what MCP costs.

    .venv/bin/python plugins/mcp/bench/roundtrip.py [--rounds 7] [--calls 200] [--json]

It changes nothing outside a temporary directory (its own agent config and workspace).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from localagent import Client
from localagent.testing import running_agent

HERE = Path(__file__).resolve().parent
PAYLOAD = {"text": "hello", "n": 1}


@asynccontextmanager
async def mcp_session(command: list[str], env: dict[str, str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()
        yield session


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    times: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(rounds: int, calls: int, workdir: Path) -> dict[str, Any]:
    config_dir = workdir / "config"
    env = {
        **os.environ,
        "LOCALAGENT_CONFIG_DIR": str(config_dir),
        "LOCALAGENT_WORKSPACE": str(workdir / "workspace"),
        "LOCALAGENT_LOAD_PLUGINS": "",  # the agent alone, whatever else is installed
    }
    with running_agent(env, config_dir=config_dir) as agent:
        bridge_env = {
            "LOCALAGENT_URL": agent.url,
            "LOCALAGENT_TOKEN": agent.token,
            "LOCALAGENT_CONFIG_DIR": str(config_dir),
        }
        async with AsyncExitStack() as stack:
            bridge = await stack.enter_async_context(
                mcp_session([sys.executable, "-m", "localagent", "mcp", "--poll", "0"], bridge_env)
            )
            plain = await stack.enter_async_context(
                mcp_session([sys.executable, str(HERE / "plain_echo_server.py")], {})
            )
            plain_uvloop = await stack.enter_async_context(
                mcp_session([sys.executable, str(HERE / "plain_echo_server.py"), "--uvloop"], {})
            )
            forward = await stack.enter_async_context(
                mcp_session(
                    [sys.executable, str(HERE / "plain_echo_server.py"), "--forward"], bridge_env
                )
            )
            client = await stack.enter_async_context(Client(agent.url, agent.token))
            targets: dict[str, Callable[[], Awaitable[Any]]] = {
                "bridge": lambda: bridge.call_tool("echo", PAYLOAD),
                "plain": lambda: plain.call_tool("echo", PAYLOAD),
                "plain-uvloop": lambda: plain_uvloop.call_tool("echo", PAYLOAD),
                "forward": lambda: forward.call_tool("echo", PAYLOAD),
                "websocket": lambda: client.request("echo", PAYLOAD),
            }
            for call in targets.values():  # warm-up
                await timed(call, 20)
            samples: dict[str, list[float]] = {name: [] for name in targets}
            per_round: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, call in targets.items():
                    times = await timed(call, calls)
                    samples[name] += times
                    per_round[name].append(statistics.median(times))
    figures: dict[str, dict[str, Any]] = {
        name: {
            "p50_us": round(statistics.median(times) * 1e6, 1),
            "p90_us": round(quantile(times, 0.9) * 1e6, 1),
            "round_p50s_us": [round(value * 1e6, 1) for value in per_round[name]],
        }
        for name, times in samples.items()
    }
    ratios = [b / p for b, p in zip(per_round["bridge"], per_round["plain"], strict=True)]
    ratios_uv = [b / p for b, p in zip(per_round["bridge"], per_round["plain-uvloop"], strict=True)]
    return {
        "rounds": rounds,
        "calls_per_round": calls,
        "figures": figures,
        "bridge_over_plain": round(figures["bridge"]["p50_us"] / figures["plain"]["p50_us"], 2),
        "bridge_over_plain_per_round": [round(r, 2) for r in ratios],
        "bridge_over_plain_uvloop": round(
            figures["bridge"]["p50_us"] / figures["plain-uvloop"]["p50_us"], 2
        ),
        "bridge_over_plain_uvloop_per_round": [round(r, 2) for r in ratios_uv],
        "bridge_over_forward": round(figures["bridge"]["p50_us"] / figures["forward"]["p50_us"], 2),
        "bridge_minus_websocket_us": round(
            figures["bridge"]["p50_us"] - figures["websocket"]["p50_us"], 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcp-bench-") as workdir:
        report = anyio.run(measure, args.rounds, args.calls, Path(workdir), backend="asyncio")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, figure in report["figures"].items():
        print(f"{name:<12} p50 {figure['p50_us']:>8.1f} us   p90 {figure['p90_us']:>8.1f} us")
    print(
        f"bridge / plain MCP server: {report['bridge_over_plain']}x "
        f"(per round: {report['bridge_over_plain_per_round']})"
    )
    print(
        f"bridge / plain MCP server on uvloop: {report['bridge_over_plain_uvloop']}x "
        f"(per round: {report['bridge_over_plain_uvloop_per_round']})"
    )
    print(f"bridge / minimal forwarder: {report['bridge_over_forward']}x")
    print(f"bridge - agent's WebSocket: {report['bridge_minus_websocket_us']} us")


if __name__ == "__main__":
    main()
