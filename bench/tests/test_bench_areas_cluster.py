"""The bench area ``cluster``, run for real in quick mode (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import redis
from localagent_bench._context import BenchContext
from localagent_bench.areas import load_areas


async def test_the_cluster_area_measures_routed_and_stream_figures(
    tmp_path: Path, redis_url: str
) -> None:
    (area,) = load_areas(["cluster"])
    ctx = BenchContext(quick=True, repetitions=1, workdir=tmp_path, redis_url=redis_url)
    result = await area.run(ctx)
    assert result.error is None and result.skipped is None
    assert [comparison.figure.name for comparison in result.comparisons] == [
        "routed echo, 200 in flight, one Redis",
        "routed echo vs bare Streams, one Redis",
        "routed p50, 200 in flight",
        "routed p99, 200 in flight",
        "routed p50, one at a time",
        "routed p99, one at a time",
        "agents' CPU per routed echo",
        "A's CPU per routed echo",
        "B's CPU per routed echo",
        "client's CPU per routed echo",
        "MACs of a routed message",
        "stream path, batches of 100",
    ]
    assert result.comparisons[0].target == ">= 0.8x"
    for comparison in result.comparisons:
        assert comparison.baseline is not None
        assert len(comparison.figure.samples) == 1
        assert comparison.figure.median > 0 and comparison.baseline.median > 0
    assert result.comparisons[-1].target == ">= 0.5x"
    macs = result.comparisons[-2]
    assert macs.target == "<= 0.05x" and macs.ratio is not None and macs.ratio < 1
    client = redis.Redis.from_url(redis_url)
    assert client.keys("*bench-*") == []  # the run cleaned up after itself
    client.close()


async def test_without_redis_the_area_says_why(tmp_path: Path) -> None:
    (area,) = load_areas(["cluster"])
    ctx = BenchContext(quick=True, repetitions=1, workdir=tmp_path, redis_missing="no Redis here")
    result = await area.run(ctx)
    assert result.skipped == "no Redis here"
