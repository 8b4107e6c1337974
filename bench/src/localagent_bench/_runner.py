"""Runs the areas: variants for installed optimization plugins, Redis, the environment."""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.util import cache_from_source
from pathlib import Path
from typing import Any

import attrs

from localagent import __version__
from localagent._plugins import _import, discover

from ._context import BenchContext
from ._model import AreaResult, BenchReport, Comparison
from .areas import load_areas

__all__ = ["BENCH_AREAS_ATTRIBUTE", "plugin_variants", "run_bench"]

#: An optimization plugin lists the areas it affects in this attribute
#: (e.g. ``bench_areas = ("websocket",)``); each such area then runs twice,
#: with the plugin off and on, in the same run.
BENCH_AREAS_ATTRIBUTE = "bench_areas"
#: Optionally, extra ``localagent serve`` arguments for the "on" runs, by mode:
#: ``{"": (...)}`` for the plain "NAME on" run, and each other key adds a run
#: "NAME on (MODE)", compared with "NAME off" too (e.g. the monitor's
#: ``{"every path": ("--set", "monitor.all_paths=true")}``).
BENCH_MODES_ATTRIBUTE = "bench_modes"
#: Optionally, figures to compare across the two runs, as ``(area, figure of
#: the "on" run, figure of the "off" run, label)``: for what the plugin changes
#: on both ends, e.g. batching's "a batching client, agent on" against "an
#: unbatched client, agent off".
BENCH_PAIRS_ATTRIBUTE = "bench_pairs"

#: A cross-run pair: (figure in the "on" run, figure in the "off" run, label).
Pair = tuple[str, str, str]


def _bench_plugins() -> Iterator[tuple[str, Any]]:
    """(name, plugin object) of every installed plugin that imports."""
    for spec in discover():
        try:
            yield spec.name, _import(spec.value)
        except Exception:  # a broken plugin is `plugins list`'s business, not the bench's
            continue


def plugin_variants() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Area name -> ``[(variant label, -p options), ...]`` for installed plugins."""
    variants: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    plugins = list(_bench_plugins())
    installed = {name for name, _plugin in plugins}
    for name, plugin in plugins:
        modes = {
            mode: args
            for mode, args in dict(getattr(plugin, BENCH_MODES_ATTRIBUTE, {})).items()
            if _enables_only(args, installed)  # a mode with a plugin not installed: left out
        }
        for area in getattr(plugin, BENCH_AREAS_ATTRIBUTE, ()):
            variants.setdefault(area, []).extend(
                [
                    (f"{name} off", ("-p", f"no:{name}")),
                    (f"{name} on", ("-p", name, *modes.get("", ()))),
                    *(
                        (f"{name} on ({mode})", ("-p", name, *args))
                        for mode, args in modes.items()
                        if mode
                    ),
                ]
            )
    return variants


def _enables_only(args: Sequence[str], installed: set[str]) -> bool:
    """Whether every ``-p NAME`` in ``args`` names an installed plugin."""
    return all(
        value in installed
        for option, value in itertools.pairwise(args)
        if option == "-p" and not value.startswith("no:")
    )


def plugin_pairs() -> dict[tuple[str, str], list[Pair]]:
    """``(plugin name, area)`` -> the plugin's cross-run pairs in that area."""
    pairs: dict[tuple[str, str], list[Pair]] = {}
    for name, plugin in _bench_plugins():
        for area, on_figure, off_figure, label in getattr(plugin, BENCH_PAIRS_ATTRIBUTE, ()):
            pairs.setdefault((name, area), []).append((on_figure, off_figure, label))
    return pairs


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"localagent": __version__}
    names = ("localagent-bench", "localagent-hookspecs", "websockets", "pluggy", "msgspec", "redis")
    for name in (*names, "click"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _pyc_present() -> dict[str, Any]:
    """Whether the localagent package had current ``.pyc`` files when the run started."""
    import localagent

    package = Path(localagent.__file__).resolve().parent
    sources = list(package.rglob("*.py"))
    compiled = 0
    for source in sources:
        cached = Path(cache_from_source(str(source)))
        if cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime:
            compiled += 1
    return {
        "localagent_modules": len(sources),
        "localagent_modules_with_pyc": compiled,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
    }


def environment(quick: bool, repetitions: int, loop: str = "auto") -> dict[str, Any]:
    """Everything a reader needs to judge the figures."""
    return {
        "versions": _versions(),
        "python": {
            "version": sys.version,
            "implementation": platform.python_implementation(),
            "build": list(platform.python_build()),
            "executable": sys.executable,
        },
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "pyc": _pyc_present(),
        "quick": quick,
        "repetitions": repetitions,
        "loop": _loop_in_use(loop),
    }


def _loop_in_use(loop: str) -> str:
    """The loop agent subprocesses run on for the ``--loop`` choice."""
    from localagent._loop import loop_factory

    return "asyncio" if loop_factory(loop) is None else "uvloop"


async def _redis(
    redis_url: str | None, workdir: Path, stack: list[Callable[[], None]]
) -> tuple[str | None, str | None]:
    """A Redis for the ``redis`` area: the given URL, or a private redis-server, or why not."""
    from localagent.testing import RedisServer

    if redis_url is not None:
        try:
            import redis.asyncio
        except ImportError:
            return None, "redis-py is not installed (pip install 'localagent[redis]')"
        client = redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=2)
        try:
            await client.ping()
        except Exception as exc:
            return None, f"no Redis reachable at {redis_url}: {exc}"
        finally:
            await client.aclose()
        return redis_url, None
    try:
        import redis
    except ImportError:
        return None, "redis-py is not installed (pip install 'localagent[redis]')"
    if shutil.which("redis-server") is None:
        return None, "no redis-server binary to start a private Redis, and no --redis URL given"
    server = RedisServer(workdir / "redis", durable=False)
    server.start()
    stack.append(server.stop)
    return server.url, None


def run_bench(
    names: Sequence[str] = (),
    *,
    quick: bool = False,
    repetitions: int | None = None,
    redis_url: str | None = None,
    progress: Callable[[str], None] = lambda text: None,
    loop: str = "auto",
) -> BenchReport:
    """Run the named areas (all when empty) and return the report.

    Raises:
        ValueError: An unknown area name.
    """
    areas = load_areas(list(names))
    repetitions = repetitions or (3 if quick else 5)
    env = environment(quick, repetitions, loop)
    variants = plugin_variants()
    pairs = plugin_pairs()
    started = time.perf_counter()
    results: list[AreaResult] = []
    cleanups: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="localagent-bench-") as tmp:
        workdir = Path(tmp)

        async def run_all() -> None:
            redis: tuple[str | None, str | None] = (None, "the redis area was not requested")
            if any(area.name in ("redis", "pooling", "cluster") for area in areas):
                redis = await _redis(redis_url, workdir, cleanups)
            for area in areas:
                for label, options in variants.get(area.name, [(None, ())]):
                    ctx = BenchContext(
                        quick=quick,
                        repetitions=repetitions,
                        workdir=workdir / f"{area.name}-{len(results)}",
                        plugin_options=options,
                        redis_url=redis[0],
                        redis_missing=redis[1],
                        progress=progress,
                        loop=loop,
                    )
                    ctx.workdir.mkdir()
                    progress(f"{area.title}{f' ({label})' if label else ''} ...")
                    try:
                        result = await area.run(ctx)
                    except Exception as exc:
                        result = AreaResult(
                            area=area.name, title=area.title, error=f"{type(exc).__name__}: {exc}"
                        )
                    results.append(result if label is None else _with_variant(result, label))
                results.extend(_on_vs_off(results, area.name, pairs))

        try:
            asyncio.run(run_all())
        finally:
            for cleanup in reversed(cleanups):
                cleanup()
    return BenchReport(environment=env, results=results, seconds=time.perf_counter() - started)


def _on_vs_off(
    results: Sequence[AreaResult],
    area: str,
    pairs: Mapping[tuple[str, str], Sequence[Pair]] | None = None,
) -> list[AreaResult]:
    """For each plugin run off and on in ``area``: its figures on, against off, same run.

    ``pairs`` (see :data:`BENCH_PAIRS_ATTRIBUTE`) add rows that compare one
    figure of the "on" run with another of the "off" run.
    """
    by_variant = {r.variant: r for r in results if r.area == area and r.variant}
    compared = []
    for variant, on in by_variant.items():
        if variant.endswith(" on"):
            plugin = variant.removesuffix(" on")
        elif variant.endswith(")") and " on (" in variant:  # "NAME on (MODE)"
            plugin = variant.split(" on (", 1)[0]
        else:
            continue
        off = by_variant.get(f"{plugin} off")
        if off is None or on.error or off.error or on.skipped or off.skipped:
            continue
        off_figures = {c.figure.name: c.figure for c in off.comparisons}
        comparisons = [
            Comparison(
                figure=c.figure,
                baseline=off_figures[c.figure.name],
                baseline_name=f"{plugin} off (same run)",
            )
            # A figure with several baselines is compared with its off self once.
            for c in {c.figure.name: c for c in on.comparisons}.values()
            if c.figure.name in off_figures
        ]
        on_figures = {c.figure.name: c.figure for c in on.comparisons}
        notes = [f"every figure of the '{variant}' run against the '{plugin} off' run"]
        for on_name, off_name, label in (pairs or {}).get((plugin, area), ()):
            if on_name in on_figures and off_name in off_figures:
                comparisons.append(
                    Comparison(
                        figure=attrs.evolve(on_figures[on_name], name=label),
                        baseline=off_figures[off_name],
                        baseline_name=f"{plugin} off: {off_name} (same run)",
                    )
                )
                notes.append(f"{label}: '{on_name}' with {plugin} on, against '{off_name}' off")
        compared.append(
            AreaResult(
                area=area,
                title=on.title,
                variant=f"{variant} vs off",
                comparisons=comparisons,
                notes=notes,
            )
        )
    return compared


def _with_variant(result: AreaResult, label: str) -> AreaResult:
    return attrs.evolve(result, variant=label)
