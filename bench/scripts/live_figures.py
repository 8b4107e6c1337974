"""Live figures: toggle-to-effect of a plugin on a running agent, and the dashboard's cost.

Two measurements, each against real agents (subprocesses of ``localagent
serve`` on free loopback ports, with config dirs of their own):

- **toggle to effect**: ``echo`` is disabled and enabled again ``--toggles``
  times on a running agent, by running the real CLI (``localagent plugins
  disable echo`` / ``enable echo``, a subprocess). The clock starts when the
  CLI starts and stops at the first reply, on a connection opened before,
  that shows the change (``unknown_type``, then an echo again); the client
  asks every 10 ms. Each toggle starts at a random point of the agent's
  polling period. (``localagent bench plugins`` times the same from the
  write of ``config.toml``, without the CLI's start.)
- **dashboard cost**: echo throughput (batches of 100 concurrent requests
  over one connection, ``--seconds`` per round) of an agent with the
  ``monitor`` plugin, while a dashboard polls ``/performance.json`` every
  second, against an agent without it; the two take turns, round after round
  (``--rounds``), in alternating order. Prints both medians and the median of
  the per-round ratios (on / off), and the same for the agent's CPU time per
  echo (``/proc/PID/stat``, Linux), which machine load disturbs less.

Usage::

    .venv/bin/python bench/scripts/live_figures.py
    .venv/bin/python bench/scripts/live_figures.py --toggles 10 --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from localagent import Client, ReplyError
from localagent.testing import AgentProcess, localagent_cmd, running_agent


def _env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    env["LOCALAGENT_LOAD_PLUGINS"] = ""
    env["LOCALAGENT_WORKSPACE"] = str(directory / "workspace")
    env["LOCALAGENT_CONFIG_DIR"] = str(directory / "config")
    return env


async def _echo_answers(client: Client) -> bool:
    try:
        await client.request("echo", 0, timeout=10)
    except ReplyError:
        return False
    return True


async def _toggles(
    agent: AgentProcess, env: dict[str, str], toggles: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"disable": [], "enable": []}
    async with Client(agent.url, agent.token) as client:
        for _toggle in range(toggles):
            for kind, enabled in (("disable", False), ("enable", True)):
                await asyncio.sleep(random.random())  # a random phase of the polling period
                started = time.perf_counter()
                cli = await asyncio.create_subprocess_exec(
                    *localagent_cmd("plugins", kind, "echo"), env=env, stdout=subprocess.DEVNULL
                )
                # The client asks every 10 ms, as a client of the agent would.
                while await _echo_answers(client) is not enabled:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                samples[kind].append((time.perf_counter() - started) * 1000)
                await cli.wait()
    return samples


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far, from ``/proc`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _echo_rate(agent: AgentProcess, seconds: float, dashboard: bool) -> tuple[float, float]:
    """Echo msg/s over ``seconds``, and the agent's CPU microseconds per echo."""
    port = agent.url.rsplit(":", 1)[1]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/performance.json",
        headers={"Authorization": f"Bearer {agent.token}"},
    )
    async with Client(agent.url, agent.token) as client:
        count, polled = 0, 0.0
        cpu = _cpu_seconds(agent.pid)
        started = time.perf_counter()
        while (now := time.perf_counter()) - started < seconds:
            await asyncio.gather(*(client.request("echo", n) for n in range(100)))
            count += 100
            if dashboard and now - polled >= 1.0:
                polled = now
                await asyncio.to_thread(lambda: urllib.request.urlopen(request).read())
        rate = count / (time.perf_counter() - started)
        return rate, (_cpu_seconds(agent.pid) - cpu) / count * 1e6


async def _cost(off: AgentProcess, on: AgentProcess, rounds: int, seconds: float) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    await _echo_rate(off, seconds, False)  # warm-up, not counted
    await _echo_rate(on, seconds, True)
    for round_ in range(rounds):
        order = [("off", off, False), ("on", on, True)]
        for name, agent, dashboard in order if round_ % 2 == 0 else reversed(order):
            rate, cpu_us = await _echo_rate(agent, seconds, dashboard)
            rates[name].append(rate)
            cpu[name].append(cpu_us)
    ratios = [a / b for a, b in zip(rates["on"], rates["off"], strict=True)]
    cpu_ratios = [a / b for a, b in zip(cpu["on"], cpu["off"], strict=True)]
    return {"rates": rates, "ratios": ratios, "cpu": cpu, "cpu_ratios": cpu_ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toggles", type=int, default=6, help="disable+enable pairs")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds of each")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per round")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="live-figures-"))
    env = _env(base / "toggle")
    with running_agent(
        env, "--log-level", "warning", config_dir=base / "toggle" / "config"
    ) as agent:
        toggles = asyncio.run(_toggles(agent, env, args.toggles))
    for kind, ms in toggles.items():
        print(
            f"toggle to effect, {kind} echo (CLI start to reply): "
            f"median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, max {max(ms):.0f} "
            f"(n={len(ms)})"
        )
    off_env, on_env = _env(base / "off"), _env(base / "on")
    with (
        running_agent(off_env, "--log-level", "warning", config_dir=base / "off" / "config") as off,
        running_agent(
            on_env, "--log-level", "warning", "-p", "monitor", config_dir=base / "on" / "config"
        ) as on,
    ):
        cost = asyncio.run(_cost(off, on, args.rounds, args.seconds))
    rates, ratios = cost["rates"], cost["ratios"]
    print(
        f"echo throughput, monitor off: median {statistics.median(rates['off']):.0f} msg/s; "
        f"on, dashboard polling: {statistics.median(rates['on']):.0f} msg/s; "
        f"median same-round ratio on/off {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}, n={len(ratios)})"
    )
    cpu, cpu_ratios = cost["cpu"], cost["cpu_ratios"]
    print(
        f"agent CPU per echo, monitor off: median {statistics.median(cpu['off']):.1f} us; "
        f"on: {statistics.median(cpu['on']):.1f} us; median same-round ratio on/off "
        f"{statistics.median(cpu_ratios):.3f} (range {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})"
    )


if __name__ == "__main__":
    main()
