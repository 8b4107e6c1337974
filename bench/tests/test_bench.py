"""``localagent bench``: every area runs for real and reports well-formed results.

One ``localagent bench --quick`` over all areas runs once per session as a
real subprocess (real agents, files, programs, Redis); the tests check the
shape of what it reported, never how fast anything was.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
from click.testing import CliRunner
from localagent_bench._context import BenchContext
from localagent_bench._model import grade
from localagent_bench._render import number
from localagent_bench.areas import AREAS

from localagent.cli import main
from localagent.testing import free_port

#: A quick run of every area takes a few minutes with every plugin installed; this stops a hang.
RUN_TIMEOUT = 600

#: The session's bench run is set up inside the first test that needs it, so that test may take
#: the run's whole time; the suite's 120 s per-test limit would cut it short.
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 60)


@attrs.frozen
class BenchRun:
    """What one ``localagent bench`` subprocess produced."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None


def _bench_env(config_dir: Path) -> dict[str, str]:
    """The developer's environment without LOCALAGENT_* settings, like every test's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOCALAGENT_")}
    env["LOCALAGENT_CONFIG_DIR"] = str(config_dir)
    env["LOCALAGENT_LOAD_PLUGINS"] = ""
    return env


def _bench(directory: Path, *args: str, json_file: Path | None = None) -> BenchRun:
    """Run ``localagent bench ARGS`` in ``directory`` with stdout and stderr captured."""
    done = subprocess.run(
        [sys.executable, "-m", "localagent", "bench", *args],
        cwd=directory,
        env=_bench_env(directory / "config"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    report = None
    if json_file is not None and json_file.exists():
        report = json.loads(json_file.read_text(encoding="utf-8"))
    return BenchRun(done.returncode, done.stdout, done.stderr, report)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchRun]:
    """``localagent bench --quick --json FILE --markdown`` over every area, once."""
    directory = tmp_path_factory.mktemp("bench")
    json_file = directory / "bench.json"
    yield _bench(directory, "--quick", "--json", str(json_file), "--markdown", json_file=json_file)


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        files("localagent_bench").joinpath("schema.json").read_text(encoding="utf-8")
    )
    return loaded


def _report(run: BenchRun) -> dict[str, Any]:
    assert run.report is not None, f"no JSON was written:\n{run.stderr}"
    return run.report


def test_the_run_succeeds(full_run: BenchRun) -> None:
    assert full_run.returncode == 0, full_run.stdout + full_run.stderr


def test_the_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "localagent-bench/1"


def test_the_json_validates_against_the_schema(full_run: BenchRun, schema: dict[str, Any]) -> None:
    jsonschema.validate(_report(full_run), schema, cls=jsonschema.Draft202012Validator)


def test_the_schema_rejects_a_malformed_result(full_run: BenchRun, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    report = _report(full_run)
    area = next(result for result in report["results"] if result["comparisons"])
    for damage in ({"grade": "G"}, {"ratio": "0.9x"}, {"figure": {"name": "x"}}):
        broken = json.loads(json.dumps(report))
        target = next(r for r in broken["results"] if r["area"] == area["area"])
        target["comparisons"][0].update(damage)
        assert not validator.is_valid(broken), damage
    broken = json.loads(json.dumps(report))
    del broken["environment"]["cpu_count"]
    assert not validator.is_valid(broken)


def test_the_environment_is_recorded(full_run: BenchRun) -> None:
    environment = _report(full_run)["environment"]
    assert environment["quick"] is True
    assert environment["versions"]["localagent"]
    assert len(environment["load_average_at_start"]) == 3
    assert "localagent_modules_with_pyc" in environment["pyc"]
    assert environment["loop"] == ("uvloop" if find_spec("uvloop") else "asyncio")


def test_bench_agents_run_on_the_loop_asked_for(tmp_path: Path) -> None:
    ctx = BenchContext(quick=True, repetitions=1, workdir=tmp_path, loop="asyncio")
    assert ctx.env()["LOCALAGENT_LOOP"] == "asyncio"


def _check_figure(figure: dict[str, Any]) -> None:
    """Finite samples, a consistent summary (a growth figure may be negative or zero)."""
    assert figure["samples"], figure
    assert all(math.isfinite(sample) for sample in figure["samples"]), figure
    assert min(figure["samples"]) == figure["min"] <= figure["median"], figure
    assert figure["median"] <= figure["max"] == max(figure["samples"]), figure


def _check_comparison(comparison: dict[str, Any]) -> None:
    """A figure beside a baseline has a ratio and grade that follow from its values,
    or none when a value it would divide is at or below zero."""
    figure, baseline = comparison["figure"], comparison["baseline"]
    _check_figure(figure)
    if baseline is None:
        assert comparison["ratio"] is None and comparison["grade"] is None
        return
    _check_figure(baseline)
    if comparison["ratio"] is None:  # a difference of noisy figures came out at or below zero
        lowest = "min" if comparison["paired"] else "median"
        assert min(figure[lowest], baseline[lowest]) <= 0, comparison
        assert comparison["grade"] is None
        return
    assert figure["median"] > 0 and baseline["median"] > 0, comparison
    if comparison["paired"]:  # the median of the per-repetition ratios
        pairs = zip(figure["samples"], baseline["samples"], strict=True)
        ratio = statistics.median(value / base for value, base in pairs)
    else:
        ratio = figure["median"] / baseline["median"]
    assert comparison["ratio"] == pytest.approx(ratio)
    goodness = ratio if figure["higher_is_better"] else 1 / ratio
    assert comparison["grade"] == grade(goodness)


@pytest.mark.parametrize("name", [name for name, _module in AREAS])
def test_every_area_is_measured_or_says_why_not(full_run: BenchRun, name: str) -> None:
    results = [result for result in _report(full_run)["results"] if result["area"] == name]
    assert results, f"no result for area {name!r}"
    for result in results:
        assert result["error"] is None, f"{name}: {result['error']}"
        if result["skipped"] is not None:
            assert result["skipped"].strip(), f"{name}: skipped without a reason"
            assert not result["comparisons"]
            continue
        assert result["comparisons"], f"{name}: neither figures nor a skip reason"
        for comparison in result["comparisons"]:
            _check_comparison(comparison)


def test_markdown_has_a_header_row_and_a_row_per_figure(full_run: BenchRun) -> None:
    rows = [line for line in full_run.stdout.splitlines() if line.startswith("|")]
    assert rows[0].startswith("| area | figure | agent")
    assert set(rows[1]) <= set("|-: ")
    expected = sum(
        len(result["comparisons"]) if result["comparisons"] else 1
        for result in _report(full_run)["results"]
    )
    assert len(rows) - 2 == expected
    assert all(row.count(" | ") == rows[0].count(" | ") for row in rows[2:])


def _assert_no_progress(run: BenchRun) -> None:
    """Not a terminal: nothing but the output, no live status and no escape codes."""
    assert "\x1b[" not in run.stdout
    assert run.stderr == "", run.stderr


def test_no_progress_when_not_a_terminal(full_run: BenchRun) -> None:
    _assert_no_progress(full_run)
    allowed = ("|", "- ", "Notes:", "localagent bench: quick run")
    lines = [line for line in full_run.stdout.splitlines() if line]
    assert all(line.startswith(allowed) for line in lines), full_run.stdout


def test_the_table_goes_to_stdout_without_progress(tmp_path: Path) -> None:
    run = _bench(tmp_path, "config", "--quick", "-r", "1")
    assert run.returncode == 0, run.stderr
    _assert_no_progress(run)
    assert "Config loading" in run.stdout
    assert "grade" in run.stdout.splitlines()[2]


def test_json_to_stdout_is_only_json(tmp_path: Path) -> None:
    run = _bench(tmp_path, "config", "--quick", "-r", "1", "--json", "-")
    assert run.returncode == 0, run.stderr
    _assert_no_progress(run)
    assert json.loads(run.stdout)["schema"] == "localagent-bench/1"


def test_a_missing_redis_is_a_skip_with_the_reason(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    run = _bench(tmp_path, "redis", "--quick", "--redis", url, "--json", "-")
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)["results"]
    assert results  # one per variant when an installed plugin runs the area off and on
    for result in results:
        assert result["area"] == "redis"
        assert result["error"] is None
        assert result["comparisons"] == []
        assert "no Redis reachable" in result["skipped"], result["skipped"]


def test_an_unknown_area_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["bench", "config", "nope"])
    assert result.exit_code == 2
    assert "unknown area(s) nope" in result.output
    assert "Traceback" not in result.output


def test_an_unwritable_json_path_is_refused_before_the_run(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "bench.json"
    result = CliRunner().invoke(main, ["bench", "config", "--json", str(missing)])
    assert result.exit_code == 2
    assert "cannot write" in result.output
    assert "Traceback" not in result.output


def test_json_to_stdout_and_markdown_cannot_be_combined() -> None:
    result = CliRunner().invoke(main, ["bench", "config", "--json", "-", "--markdown"])
    assert result.exit_code == 2
    assert "choose one" in result.output


def test_the_help_lists_the_areas() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0
    for name, _module in AREAS:
        assert name in result.output


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (0.01234, "0.0123"), (1.5, "1.5"), (12.345, "12.3"), (63_512.7, "63,513")],
)
def test_numbers_are_shown_with_three_significant_digits_or_separators(
    value: float, text: str
) -> None:
    assert number(value) == text


def test_the_command_comes_from_this_distribution_and_the_readmes_install_has_it() -> None:
    (entry_point,) = entry_points(group="localagent.commands", name="bench")
    assert entry_point.value == "localagent_bench._cli:bench"
    assert entry_point.dist is not None and entry_point.dist.name == "localagent-bench"
    lock = (Path(__file__).resolve().parents[2] / "requirements.txt").read_text(encoding="utf-8")
    assert "-e ./bench" in lock.splitlines()  # the README's first command installs it


def test_the_core_package_holds_no_benchmark_harness() -> None:
    import localagent

    core = Path(localagent.__file__).resolve().parent
    assert not (core / "_bench").exists()
    harness = re.compile(r"^\s*(?:from|import) +(?:localagent_bench|rich)\b", re.MULTILINE)
    for source in core.rglob("*.py"):
        assert harness.search(source.read_text(encoding="utf-8")) is None, source
