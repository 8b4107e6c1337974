"""Area ``plugins``: startup of ``localagent plugins list``, and each plugin's load times.

Wall time of ``python -m localagent plugins list`` (a subprocess with a fresh
config directory) beside ``python -c pass`` and ``python -c "import click,
pluggy"``, each run cold and warm:

- cold: ``PYTHONPYCACHEPREFIX`` is a new, empty directory for every run and
  nothing is written to it, so every module that is not frozen into the
  interpreter, the standard library's included, is compiled from source;
- warm: ``PYTHONPYCACHEPREFIX`` is a directory that an earlier, unmeasured
  run of the same command filled, so every module has its ``.pyc``.

Then each plugin's import and ``on_load`` time, as the startup banner of
real agents started through :meth:`BenchContext.agent` prints them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA", "COMMANDS", "banner_times"]

#: (label, python arguments) of the commands timed; the last one is the agent's.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python -c pass", ("-c", "pass")),
    ("python -c 'import click, pluggy'", ("-c", "import click, pluggy")),
    ("localagent plugins list", ("-m", "localagent", "plugins", "list")),
)

_BANNER = re.compile(r"^\s*plugins: (.*)$", re.MULTILINE)
_ENTRY = re.compile(r"([\w.-]+)(?: \(([^)]*)\))?(?:, |$)")
_TIME = re.compile(r"(import|load) ([\d.]+) ms")


def banner_times(output: str) -> dict[str, dict[str, float]]:
    """``{plugin: {"import": ms, "load": ms}}`` from an agent's startup banner."""
    match = _BANNER.search(output)
    if match is None:
        return {}
    times: dict[str, dict[str, float]] = {}
    for name, details in _ENTRY.findall(match.group(1).strip()):
        times[name] = {kind: float(ms) for kind, ms in _TIME.findall(details)}
    return times


def _env(ctx: BenchContext, config_dir: Path, prefix: Path, *, write: bool) -> dict[str, str]:
    """The environment of one timed command: its own config dir and bytecode cache."""
    env = ctx.env()
    env["LOCALAGENT_CONFIG_DIR"] = str(config_dir)
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["LOCALAGENT_LOAD_PLUGINS"] = ",".join(_enabled(ctx.plugin_options))
    return env


def _enabled(plugin_options: tuple[str, ...]) -> list[str]:
    """The plugins a variant's ``-p NAME`` options enable (``-p no:NAME`` enables none)."""
    pairs = zip(plugin_options[::2], plugin_options[1::2], strict=False)
    return [name for flag, name in pairs if flag == "-p" and not name.startswith("no:")]


def _wall_ms(args: tuple[str, ...], env: dict[str, str], cwd: Path) -> float:
    """Milliseconds ``python ARGS`` took from start to exit."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} exited with {done.returncode}: {done.stderr}")
    return elapsed


def _startup(ctx: BenchContext) -> dict[tuple[str, str], list[float]]:
    """(label, "cold"/"warm") -> milliseconds per repetition, commands interleaved."""
    samples: dict[tuple[str, str], list[float]] = {}
    warm_prefixes = {}
    for index, (label, args) in enumerate(COMMANDS):
        prefix = ctx.workdir / "pycache-warm" / str(index)
        filling = _env(ctx, ctx.workdir / f"config-fill{index}", prefix, write=True)
        _wall_ms(args, filling, ctx.workdir)
        warm_prefixes[label] = prefix
    for repetition in range(ctx.repetitions):
        ctx.progress(f"plugins: startup, repetition {repetition + 1}/{ctx.repetitions}")
        for index, (label, args) in enumerate(COMMANDS):
            run_dir = ctx.workdir / f"run{repetition}-{index}"
            cold_prefix = run_dir / "pycache-cold"
            cold_prefix.mkdir(parents=True)
            cold = _env(ctx, run_dir / "config-cold", cold_prefix, write=False)
            samples.setdefault((label, "cold"), []).append(_wall_ms(args, cold, ctx.workdir))
            warm = _env(ctx, run_dir / "config-warm", warm_prefixes[label], write=False)
            samples.setdefault((label, "warm"), []).append(_wall_ms(args, warm, ctx.workdir))
    return samples


def _startup_comparisons(samples: dict[tuple[str, str], list[float]]) -> list[Comparison]:
    agent_label = COMMANDS[-1][0]
    comparisons = []
    for cache in ("cold", "warm"):
        figure = Figure(f"{agent_label}, {cache}", "ms", samples[agent_label, cache], False)
        for label, _args in COMMANDS[:-1]:
            comparisons.append(
                Comparison(
                    figure=figure,
                    baseline=Figure(f"{label}, {cache}", "ms", samples[label, cache], False),
                    baseline_name=f"{label} ({cache})",
                )
            )
    return comparisons


def _plugin_times(ctx: BenchContext) -> tuple[list[Comparison], int]:
    """A figure per plugin and time kind from the banners of fresh agents."""
    per_plugin: dict[tuple[str, str], list[float]] = {}
    for repetition in range(ctx.repetitions):
        ctx.progress(f"plugins: agent start {repetition + 1}/{ctx.repetitions}")
        with ctx.agent() as agent:
            output = agent.output
        for name, times in banner_times(output).items():
            for kind, ms in times.items():
                per_plugin.setdefault((name, kind), []).append(ms)
    comparisons = [
        Comparison(
            figure=Figure(f"{name}: {'on_load' if kind == 'load' else 'import'}", "ms", ms, False)
        )
        for (name, kind), ms in per_plugin.items()
    ]
    return comparisons, len({name for name, _kind in per_plugin})


async def run(ctx: BenchContext) -> AreaResult:
    """Time the commands cold and warm, then read the plugin times of fresh agents."""
    samples = _startup(ctx)
    plugin_figures, plugins = _plugin_times(ctx)
    return AreaResult(
        area="plugins",
        title="Plugin loading",
        comparisons=[*_startup_comparisons(samples), *plugin_figures],
        notes=[
            "wall time of each command as a subprocess with a fresh config dir (lower is better)",
            "cold: PYTHONPYCACHEPREFIX is a new empty directory for every run and nothing is "
            "written to it, so every module not frozen into the interpreter (the standard "
            "library's included) compiles from source",
            "warm: PYTHONPYCACHEPREFIX is a directory an earlier, unmeasured run of the same "
            "command filled, so every module has its .pyc",
            f"per-plugin import and on_load times of {plugins} plugin(s) come from the startup "
            f"banner of {ctx.repetitions} fresh agents (0.1 ms resolution, no baseline)",
        ],
    )


AREA = Area("plugins", "Plugin loading", run)
