"""Area ``plugins``: startup of ``plugins list``, ``--help`` and ``send``, and load times.

Wall time of ``python -m localagent plugins list`` and ``python -m localagent
--help`` (a subprocess with a fresh config directory, every installed plugin
enabled but those the variant turns off with ``-p no:NAME``) beside ``python
-c pass``, ``python -c "import click, pluggy"`` and ``python -m pytest
--version``, each run cold and warm:

- cold: ``PYTHONPYCACHEPREFIX`` is a new, empty directory for every run and
  nothing is written to it, so every module that is not frozen into the
  interpreter, the standard library's included, is compiled from source; the
  plugin cache (``LOCALAGENT_CACHE_DIR``) is a new, empty directory too;
- warm: ``PYTHONPYCACHEPREFIX`` and ``LOCALAGENT_CACHE_DIR`` are directories
  that earlier, unmeasured runs of the same command filled, so every module
  has its ``.pyc`` and the plugin manifest and the record of installed
  commands (when the cache plugin is installed and on) are current.

Every command runs in a directory of its own that nothing writes to: with
``python -m``, the working directory is on ``sys.path``, and the plugin
cache rightly treats a change there as a possible new plugin.

Then ``localagent serve`` from its start to "listening on" beside a bare
websockets server script (:mod:`localagent_bench.bare_echo`, which also runs
the event loop of ``serve``) from its start to printing its port, cold and
warm as above, interleaved. Then ``python -m localagent send ping`` to a
running agent beside ``python -c pass``, both warm. Then each plugin's
import and ``on_load`` time, as the startup banner of real agents started
through :meth:`BenchContext.agent` prints them. Then the hot-reload time
(:func:`hot_reload`): ``echo`` disabled and enabled again in the config of a
running agent, timed from the file's write to the first reply on an open
connection that shows it.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from localagent import Client, ReplyError
from localagent._config import set_plugin_enabled
from localagent._plugins import discover
from localagent.testing import stop_process

from .. import bare_echo
from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA", "COMMANDS", "banner_times", "hot_reload"]

#: (label, python arguments) of the commands timed; the last ones are the agent's.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python -c pass", ("-c", "pass")),
    ("python -c 'import click, pluggy'", ("-c", "import click, pluggy")),
    ("pytest --version", ("-m", "pytest", "--version")),
    ("localagent plugins list", ("-m", "localagent", "plugins", "list")),
    ("localagent --help", ("-m", "localagent", "--help")),
)
#: The agent's commands among :data:`COMMANDS`; each is compared with the baselines.
AGENT_COMMANDS = ("localagent plugins list", "localagent --help")

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


def _env(
    ctx: BenchContext,
    config_dir: Path,
    prefix: Path,
    cache: Path,
    *,
    write: bool,
    without: str | None = None,
) -> dict[str, str]:
    """The environment of one timed command: its own config dir, bytecode and plugin cache.

    ``without`` names a plugin to turn off for this command only.
    """
    env = ctx.env()
    env["LOCALAGENT_CONFIG_DIR"] = str(config_dir)
    env["LOCALAGENT_CACHE_DIR"] = str(cache)
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    enabled = [name for name in _enabled(ctx.plugin_options) if name != without]
    env["LOCALAGENT_LOAD_PLUGINS"] = ",".join(enabled)
    return env


def _enabled(plugin_options: tuple[str, ...]) -> list[str]:
    """Every installed plugin, but those a variant's ``-p no:NAME`` options turn off."""
    pairs = list(zip(plugin_options[::2], plugin_options[1::2], strict=False))
    off = {name[3:] for flag, name in pairs if flag == "-p" and name.startswith("no:")}
    on = {name for flag, name in pairs if flag == "-p" and not name.startswith("no:")}
    installed = {spec.name for spec in discover()}
    return sorted((installed | on) - off)


def _agent_env(ctx: BenchContext) -> dict[str, str]:
    """:meth:`BenchContext.env` with the plugin cache in the scratch directory, not the user's."""
    env = ctx.env()
    env["LOCALAGENT_CACHE_DIR"] = str(ctx.workdir / "cache-agents")
    return env


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


#: The extra baseline when the cache plugin is on: the same command with it off,
#: interleaved with the others (a same-run ratio that does not depend on the load
#: staying the same between the "cache off" and "cache on" variants).
#: The command timed a second time with the cache plugin off (its "cache off" baseline).
CACHE_OFF_OF = AGENT_COMMANDS[0]
CACHE_OFF = ("localagent plugins list, cache off", dict(COMMANDS)[CACHE_OFF_OF], "cache")


def _commands(ctx: BenchContext) -> list[tuple[str, tuple[str, ...], str | None]]:
    """(label, python arguments, plugin turned off) of the timed commands."""
    commands: list[tuple[str, tuple[str, ...], str | None]] = [
        (label, args, None) for label, args in COMMANDS
    ]
    if "cache" in _enabled(ctx.plugin_options):
        commands.append(CACHE_OFF)
    return commands


def _startup(ctx: BenchContext) -> dict[tuple[str, str], list[float]]:
    """(label, "cold"/"warm") -> milliseconds per repetition, commands interleaved."""
    cwd = ctx.workdir / "cwd"
    cwd.mkdir()
    commands = _commands(ctx)
    samples: dict[tuple[str, str], list[float]] = {}
    warm: dict[str, dict[str, str]] = {}
    for index, (label, args, without) in enumerate(commands):
        prefix = ctx.workdir / "pycache-warm" / str(index)
        cache = ctx.workdir / "cache-warm" / str(index)
        config = ctx.workdir / f"config-fill{index}"
        for _fill in range(2):  # the first run writes the .pyc files, the second the manifest
            _wall_ms(args, _env(ctx, config, prefix, cache, write=True, without=without), cwd)
        warm[label] = _env(ctx, config, prefix, cache, write=False, without=without)
    for repetition in range(ctx.repetitions):
        ctx.progress(f"plugins: startup, repetition {repetition + 1}/{ctx.repetitions}")
        for index, (label, args, without) in enumerate(commands):
            run_dir = ctx.workdir / f"run{repetition}-{index}"
            cold_prefix = run_dir / "pycache-cold"
            cold_prefix.mkdir(parents=True)
            cold = _env(
                ctx,
                run_dir / "config",
                cold_prefix,
                run_dir / "cache",
                write=False,
                without=without,
            )
            samples.setdefault((label, "cold"), []).append(_wall_ms(args, cold, cwd))
            samples.setdefault((label, "warm"), []).append(_wall_ms(args, warm[label], cwd))
    return samples


def _startup_comparisons(samples: dict[tuple[str, str], list[float]]) -> list[Comparison]:
    labels = list(dict.fromkeys(label for label, _cache in samples))
    comparisons = []
    for agent_label, cache in [(a, c) for a in AGENT_COMMANDS for c in ("cold", "warm")]:
        figure = Figure(f"{agent_label}, {cache}", "ms", samples[agent_label, cache], False)
        for label in labels:
            # "cache off" is the baseline of the same command only
            if label in AGENT_COMMANDS or (label == CACHE_OFF[0] and agent_label != CACHE_OFF_OF):
                continue
            comparisons.append(
                Comparison(
                    figure=figure,
                    baseline=Figure(f"{label}, {cache}", "ms", samples[label, cache], False),
                    baseline_name=f"{label} ({cache})",
                )
            )
    return comparisons


def _until_line(args: list[str], env: dict[str, str], cwd: Path, stream: str, text: str) -> float:
    """Milliseconds from starting ``args`` until a line of ``stream`` contains ``text``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
        text=True,
    )
    try:
        pipe = process.stdout if stream == "stdout" else process.stderr
        assert pipe is not None
        seen = []
        for line in pipe:
            seen.append(line)
            if text in line:
                return (time.perf_counter() - started) * 1000
        raise RuntimeError(f"{' '.join(args)} exited before {text!r}: {''.join(seen)}")
    finally:
        stop_process(process)


def _serve_start(ctx: BenchContext) -> list[Comparison]:
    """``serve`` to "listening on" vs the bare server script to its port, cold and warm."""
    cwd = ctx.workdir / "cwd"
    serve = [sys.executable, "-m", "localagent", "serve", "--port", "0"]
    bare = [sys.executable, "-m", bare_echo.MODULE]
    prefix = ctx.workdir / "pycache-serve"
    config = ctx.workdir / "config-serve"
    warm = _env(ctx, config, prefix, ctx.workdir / "cache-serve", write=True)
    warm["LOCALAGENT_WORKSPACE"] = str(ctx.workspace)
    for _fill in range(2):  # .pyc files, then the plugin manifest
        _until_line(serve, warm, cwd, "stderr", "listening on")
        _until_line(bare, warm, cwd, "stdout", "")
    warm["PYTHONDONTWRITEBYTECODE"] = "1"
    samples: dict[tuple[str, str], list[float]] = {}
    for repetition in range(ctx.repetitions):
        ctx.progress(f"plugins: serve start, repetition {repetition + 1}/{ctx.repetitions}")
        cold_prefix = ctx.workdir / f"pycache-serve-cold{repetition}"
        cold_prefix.mkdir()
        cold = {**warm, "PYTHONPYCACHEPREFIX": str(cold_prefix)}
        for kind, env in (("cold", cold), ("warm", warm)):
            for label, args, stream, text in (
                ("serve", serve, "stderr", "listening on"),
                ("bare", bare, "stdout", ""),
            ):
                ms = _until_line(args, env, cwd, stream, text)
                samples.setdefault((label, kind), []).append(ms)
    return [
        Comparison(
            figure=Figure(
                f"localagent serve to listening, {kind}", "ms", samples["serve", kind], False
            ),
            baseline=Figure(
                f"bare websockets server to listening, {kind}", "ms", samples["bare", kind], False
            ),
            baseline_name=f"a bare websockets server script ({kind})",
            target="<= 1.5x" if kind == "warm" else None,
        )
        for kind in ("cold", "warm")
    ]


def _send_ping(ctx: BenchContext) -> list[Comparison]:
    """Wall time of ``localagent send ping`` to a running agent, beside ``python -c pass``.

    Both run warm (an unmeasured run filled their ``.pyc`` first), interleaved.
    """
    cwd = ctx.workdir / "cwd"
    send = ("-m", "localagent", "send", "ping")
    samples: dict[str, list[float]] = {"send": [], "pass": []}
    with ctx.agent(env=_agent_env(ctx)) as agent:
        prefix = ctx.workdir / "pycache-send"
        env = _env(ctx, ctx.workdir / "config-send", prefix, ctx.workdir / "cache-send", write=True)
        env["LOCALAGENT_URL"] = agent.url
        env["LOCALAGENT_TOKEN"] = agent.token
        _wall_ms(send, env, cwd)
        _wall_ms(("-c", "pass"), env, cwd)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for repetition in range(ctx.repetitions):
            ctx.progress(f"plugins: send ping, repetition {repetition + 1}/{ctx.repetitions}")
            samples["send"].append(_wall_ms(send, env, cwd))
            samples["pass"].append(_wall_ms(("-c", "pass"), env, cwd))
    return [
        Comparison(
            figure=Figure("localagent send ping, warm", "ms", samples["send"], False),
            baseline=Figure("python -c pass, warm", "ms", samples["pass"], False),
            baseline_name="python -c pass (warm)",
        )
    ]


def _plugin_times(ctx: BenchContext) -> tuple[list[Comparison], int]:
    """A figure per plugin and time kind from the banners of fresh agents."""
    per_plugin: dict[tuple[str, str], list[float]] = {}
    for repetition in range(ctx.repetitions):
        ctx.progress(f"plugins: agent start {repetition + 1}/{ctx.repetitions}")
        with ctx.agent(env=_agent_env(ctx)) as agent:
            output = agent.output
        for name, times in banner_times(output).items():
            for kind, ms in times.items():
                per_plugin.setdefault((name, kind), []).append(ms)
    comparisons = [
        Comparison(
            figure=Figure(f"{name}: {'on_load' if kind == 'load' else 'import'}", "ms", ms, False)
        )
        for (name, kind), ms in per_plugin.items()
        if statistics.median(ms) > 0  # under the banner's 0.1 ms resolution: nothing to show
    ]
    return comparisons, len({name for name, _kind in per_plugin})


async def _echo_answers(client: Client) -> bool:
    try:
        await client.request("echo", 0, timeout=10)
    except ReplyError as exc:
        if exc.code != "unknown_type":
            raise
        return False
    return True


async def hot_reload(
    url: str, token: str, config_dir: Path, toggles: int, *, limit: float = 30.0
) -> dict[str, list[float]]:
    """Toggle ``echo`` off and on ``toggles`` times; milliseconds from write to effect.

    The clock starts when ``config.toml`` was written (as ``localagent plugins
    disable`` writes it) and stops at the first reply on a connection opened
    before, that shows the change (``unknown_type``, then an echo again); the
    client asks without pause meanwhile. Each write waits a random part of a
    second first, so that it falls at any point of the agent's polling period
    (right after a change was seen, the next look is a full period away).

    Returns:
        ``{"disable": [ms, ...], "enable": [ms, ...]}``.

    Raises:
        TimeoutError: A toggle took more than ``limit`` seconds.
    """
    samples: dict[str, list[float]] = {"disable": [], "enable": []}
    async with Client(url, token) as client:
        for _toggle in range(toggles):
            for kind, enabled in (("disable", False), ("enable", True)):
                await asyncio.sleep(random.random())  # a random phase, not I/O
                set_plugin_enabled(config_dir, "echo", enabled)
                started = time.perf_counter()
                async with asyncio.timeout(limit):
                    while await _echo_answers(client) is not enabled:
                        pass
                samples[kind].append((time.perf_counter() - started) * 1000)
    return samples


async def _hot_reload(ctx: BenchContext) -> list[Comparison]:
    ctx.progress("plugins: hot reload")
    with ctx.agent(env=_agent_env(ctx)) as agent:
        assert agent.config_dir is not None
        samples = await hot_reload(agent.url, agent.token, agent.config_dir, ctx.repetitions)
    return [
        Comparison(figure=Figure(f"hot reload: echo {kind}d to effect", "ms", ms, False))
        for kind, ms in samples.items()
    ]


async def run(ctx: BenchContext) -> AreaResult:
    """Time the commands cold and warm, then read the plugin times of fresh agents."""
    samples = _startup(ctx)
    serve = _serve_start(ctx)
    send = _send_ping(ctx)
    plugin_figures, plugins = _plugin_times(ctx)
    reload = await _hot_reload(ctx)
    return AreaResult(
        area="plugins",
        title="Plugin loading",
        comparisons=[*_startup_comparisons(samples), *serve, *send, *plugin_figures, *reload],
        notes=[
            "wall time of each command as a subprocess with a fresh config dir (lower is better)",
            "localagent plugins list runs with every installed plugin enabled but those the "
            "variant turns off; with the cache plugin on, 'localagent plugins list, cache off' "
            "is the same command with only the cache turned off, interleaved with the others",
            "cold: PYTHONPYCACHEPREFIX and the plugin cache are new empty directories for every "
            "run and no .pyc is written, so every module not frozen into the interpreter (the "
            "standard library's included) compiles from source",
            "warm: PYTHONPYCACHEPREFIX and the plugin cache are directories that earlier, "
            "unmeasured runs of the same command filled: every module has its .pyc, and the "
            "plugin manifest is current when the cache plugin is on",
            "localagent serve to listening: from the start of the process to its 'listening on' "
            "line, with the plugins of this variant and a fresh workspace; the bare script "
            "(localagent_bench.bare_echo: websockets, msgspec, the same event loop) from its "
            "start to printing its port; cold and warm as above, interleaved",
            "localagent send ping: one request to a running agent (built-in plugins), from "
            "start to exit, warm, interleaved with python -c pass",
            f"per-plugin import and on_load times of {plugins} plugin(s) come from the startup "
            f"banner of {ctx.repetitions} fresh agents (0.1 ms resolution, no baseline; "
            "a median of 0 is left out)",
            f"hot reload: echo disabled, then enabled, {ctx.repetitions} times in the "
            "config.toml of a running agent; from the write to the first reply on an open "
            "connection that shows it (server.watch_interval 0.5 s bounds the wait; no baseline)",
        ],
    )


AREA = Area("plugins", "Plugin loading", run)
