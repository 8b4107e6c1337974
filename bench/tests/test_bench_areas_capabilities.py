"""The bench areas ``files``, ``redis`` and ``subprocess``, run for real in quick mode.

No timing is asserted: only that each area measures what it says, with real
parts, and returns a well-formed result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from localagent_bench import AreaResult
from localagent_bench._context import BenchContext
from localagent_bench.areas import load_areas


def context(
    workdir: Path, redis_url: str | None = None, redis_missing: str | None = None
) -> BenchContext:
    return BenchContext(
        quick=True,
        repetitions=1,
        workdir=workdir,
        redis_url=redis_url,
        redis_missing=redis_missing,
    )


async def run_area(name: str, ctx: BenchContext) -> AreaResult:
    (area,) = load_areas([name])
    return await area.run(ctx)


def assert_well_formed(result: AreaResult, area: str, figures: list[str]) -> None:
    assert result.area == area
    assert result.error is None
    assert result.skipped is None
    assert [comparison.figure.name for comparison in result.comparisons] == figures
    for comparison in result.comparisons:
        assert comparison.baseline is not None
        assert comparison.baseline_name
        assert len(comparison.figure.samples) == 1
        assert comparison.figure.median > 0
        assert comparison.baseline.median > 0
        assert comparison.ratio is not None and comparison.grade is not None
    assert result.notes


async def test_files_area_reads_and_writes_real_files(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    result = await run_area("files", ctx)
    assert_well_formed(
        result,
        "files",
        [
            "fs.read 64 in flight",
            "fs.read 1 in flight",
            "fs.write 64 in flight",
            "fs.write 1 in flight",
        ],
    )
    assert {c.figure.unit for c in result.comparisons} == {"files/s"}
    written = sorted((ctx.workspace / "write").iterdir())
    assert len(written) == 256
    assert all(path.stat().st_size == 1024 for path in written)


async def test_redis_area_measures_and_deletes_its_keys(tmp_path: Path, redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.set("someone-else:key", b"kept")
        result = await run_area("redis", context(tmp_path, redis_url))
        assert_well_formed(
            result, "redis", ["kv 1 in flight", "kv 64 in flight", "kv.set batch of 64"]
        )
        assert [c.target for c in result.comparisons] == [None, ">= 0.5x", None]
        assert client.keys("*") == [b"someone-else:key"]
    finally:
        client.close()


async def test_redis_area_without_redis_is_skipped_with_the_reason(tmp_path: Path) -> None:
    ctx = context(tmp_path, None, redis_missing="no redis-server binary here")
    result = await run_area("redis", ctx)
    assert result.skipped == "no redis-server binary here"
    assert result.error is None and result.comparisons == ()
    assert (result.area, result.title) == ("redis", "Redis")


async def test_redis_area_without_redis_or_reason_still_says_why(tmp_path: Path) -> None:
    result = await run_area("redis", context(tmp_path))
    assert result.skipped


async def test_subprocess_area_runs_true_through_exec(tmp_path: Path) -> None:
    result = await run_area("subprocess", context(tmp_path))
    assert_well_formed(result, "subprocess", ["exec true 8 in flight", "exec true 1 in flight"])
    assert result.comparisons[0].target == ">= 0.7x"


@pytest.mark.parametrize("name", ["files", "redis", "subprocess"])
def test_area_is_registered(name: str) -> None:
    (area,) = load_areas([name])
    assert area.name == name and area.title
