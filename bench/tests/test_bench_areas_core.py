"""The bench's core areas (websocket, errors, memory, cleanup), run for real in quick mode.

Each test runs one area's ``run`` against real agents and checks the shape of
what it reports; no figure's value is asserted, except the counts the cleanup
area must find unchanged.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import orjson
from localagent_bench import AreaResult, Comparison, bare_echo
from localagent_bench._bare import running_bare_echo
from localagent_bench._context import BenchContext
from localagent_bench.areas import load_areas
from websockets.asyncio.client import connect

import localagent
from localagent.testing import stop_process

HAS_PROC = os.path.exists("/proc/self/status")


async def _run(name: str, tmp_path: Path) -> AreaResult:
    (area,) = load_areas([name])
    workdir = tmp_path / "bench"
    workdir.mkdir()
    result = await area.run(BenchContext(quick=True, repetitions=1, workdir=workdir))
    assert result.area == name
    assert result.error is None and result.skipped is None
    assert result.comparisons and result.notes
    for comparison in result.comparisons:
        assert comparison.figure.samples and all(map(math.isfinite, comparison.figure.samples))
    return result


def _by_name(result: AreaResult) -> dict[str, Comparison]:
    return {comparison.figure.name: comparison for comparison in result.comparisons}


def _assert_positive_against_baseline(comparison: Comparison) -> None:
    assert comparison.baseline is not None and comparison.baseline_name
    assert comparison.figure.median > 0 and comparison.baseline.median > 0
    assert comparison.ratio is not None and comparison.grade is not None


async def test_bare_echo_answers_requests_and_not_one_way_messages() -> None:
    with running_bare_echo(os.environ) as bare:
        async with connect(bare.url, compression=None) as ws:
            await ws.send(orjson.dumps({"type": "echo", "data": "one-way"}), text=True)
            await ws.send(orjson.dumps({"id": 7, "type": "echo", "data": "x"}), text=True)
            assert orjson.loads(await ws.recv()) == {"id": 7, "result": {"data": "x"}}
            await ws.send(orjson.dumps({"id": 8, "type": "ping"}), text=True)
            assert orjson.loads(await ws.recv()) == {"id": 8, "result": {"pong": True}}
    assert bare.process.returncode is not None  # stopped when the block ended


def test_the_bare_echo_script_imports_nothing_a_bare_server_would_not() -> None:
    """Its start is the baseline of ``serve`` to listening: attrs, click, pluggy or the
    agent's own modules in it would flatter the ratio."""
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", bare_echo.MODULE],
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip().isdigit()
    finally:
        stop_process(process)
    _out, err = process.communicate()
    imported = {line.rpartition("|")[2].strip() for line in err.splitlines() if "|" in line}
    assert {"websockets.asyncio.server", "msgspec", "localagent._codec"} <= imported
    heavy = {"attr", "attrs", "click", "pluggy", "localagent_hookspecs", "localagent.testing"}
    assert not heavy & imported
    assert not {name for name in imported if name.startswith("localagent_bench.")} - {
        "localagent_bench.bare_echo"
    }


async def test_websocket_area_compares_every_figure_with_bare_websockets(tmp_path: Path) -> None:
    figures = _by_name(await _run("websocket", tmp_path))
    expected = {
        "one-way throughput",
        "echo throughput, pipelined, unbatched",
        "ping round trip p50",
        "ping round trip p99",
        "fresh connect p50",
        "fresh connect p99",
    }
    assert expected <= set(figures)
    for comparison in figures.values():
        _assert_positive_against_baseline(comparison)
    assert figures["echo throughput, pipelined, unbatched"].figure.higher_is_better
    assert not figures["fresh connect p99"].figure.higher_is_better


async def test_errors_area_compares_raising_plugin_with_echo(tmp_path: Path) -> None:
    result = await _run("errors", tmp_path)
    figures = _by_name(result)
    assert {
        "0 % raising throughput",
        "10 % raising throughput",
        "10 % raising throughput, vs none raising",
        "junk frames throughput",
    } <= set(figures)
    log_lines = figures.pop("log lines for 100,000 junk frames (--log-level debug)")
    assert log_lines.baseline is None
    # A few lines per kind of bad input (a first line, the counts at exit), not 100,000.
    assert 0 < log_lines.figure.median < 50
    per_raise = figures.pop("agent CPU per raise (paired)", None)  # /proc: Linux only
    assert per_raise is None or per_raise.baseline is None
    for comparison in figures.values():
        _assert_positive_against_baseline(comparison)
    baseline = figures["10 % raising throughput"].baseline
    assert baseline is not None and baseline.name == "echo throughput"
    assert not figures["10 % raising throughput"].paired
    # The target figure is paired: B against the mean of the A and A' around it.
    target = figures["10 % raising throughput, vs none raising"]
    assert target.paired and target.baseline is not None
    assert target.baseline.name.startswith("0 % raising, mean of the runs just before and after")
    assert len(target.baseline.samples) == len(target.figure.samples)
    assert any("173 %" in note for note in result.notes)
    assert (tmp_path / "bench" / "plugin-site" / "localagent_bench_raise.py").exists()


async def test_memory_area_reports_growth_and_a_verdict(tmp_path: Path) -> None:
    assert not tracemalloc.is_tracing()
    result = await _run("memory", tmp_path)
    figures = _by_name(result)
    assert {
        "tracemalloc growth after warm-up",
        "tracemalloc growth per message",
        "tracemalloc peak during the run",
        "echo throughput under tracemalloc",
    } <= set(figures)
    assert all(comparison.baseline is None for comparison in figures.values())
    assert figures["tracemalloc peak during the run"].figure.median > 0
    assert figures["echo throughput under tracemalloc"].figure.median > 0
    assert result.notes[0].startswith(("verdict: no leak", "verdict: possible leak"))
    assert not tracemalloc.is_tracing()  # stopped again
    if HAS_PROC:  # the part with clients that do not read measures the agent in /proc
        assert figures["RSS growth, 4 clients not reading"].figure.unit == "MiB"
        assert figures["peak RSS, clients not reading"].figure.median > 0
        assert any("with 1008" in note and "slowed the others" in note for note in result.notes)


async def test_cleanup_area_finds_no_fd_or_task_left_behind(tmp_path: Path) -> None:
    result = await _run("cleanup", tmp_path)
    figures = _by_name(result)
    assert {
        "gc objects growth",
        "open fds growth",
        "asyncio tasks growth",
        "connect/ping/close cycles",
    } <= set(figures)
    assert all(comparison.baseline is None for comparison in figures.values())
    assert figures["open fds growth"].figure.median == 0
    assert figures["asyncio tasks growth"].figure.median == 0
    assert figures["connect/ping/close cycles"].figure.median > 0
    assert not any(note.startswith("LEAK") for note in result.notes)


async def test_hot_reload_times_each_toggle_of_echo_on_a_running_agent(
    localagent_agent: localagent.Server, localagent_config_dir: Path
) -> None:
    from localagent_bench.areas.plugin_loading import hot_reload

    server = localagent_agent
    samples = await hot_reload(server.url, server.token_file.get(), localagent_config_dir, 2)
    assert {kind: len(ms) for kind, ms in samples.items()} == {"disable": 2, "enable": 2}
    assert all(ms > 0 for values in samples.values() for ms in values)
    info = server.runtime.plugins.info("echo")
    assert info is not None and info.registered  # left enabled
