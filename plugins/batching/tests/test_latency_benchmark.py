"""bench/scripts/batching_latency.py runs its three real agents and reports every figure.

No speed is asserted, only what the fixed-interval batcher must do by
construction: a lone ping's reply waits for its timer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "scripts" / "batching_latency.py"


def test_the_latency_benchmark_reports_the_three_agents(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    interval = 0.1
    command = [sys.executable, str(SCRIPT), "--rounds", "1", "--pings", "10"]
    command += ["--interval", str(interval), "--json", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "ratios to adaptive" in finished.stdout
    result = json.loads(out.read_text())
    assert set(result["figures"]) == {"idle p50", "idle p99", "load p50", "load p99"}
    for figure in result["figures"].values():
        assert set(figure["median_us"]) == {"off", "adaptive", "fixed"}
        assert all(value > 0 for value in figure["median_us"].values())
        assert set(figure["same_round_ratio_to_adaptive"]) == {"off", "fixed"}
    # The fixed batcher holds a lone reply until its timer fires.
    assert result["figures"]["idle p50"]["median_us"]["fixed"] >= interval * 1e6
