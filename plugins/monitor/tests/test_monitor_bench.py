"""``localagent bench`` runs the monitor off, on, and on for every path, in the same run."""

from __future__ import annotations

from localagent_bench._model import AreaResult, Comparison, Figure
from localagent_bench._runner import _on_vs_off, plugin_variants
from localagent_monitor import Plugin


def test_the_bench_runs_three_variants_in_the_declared_areas() -> None:
    assert Plugin.bench_areas == ("websocket", "errors")
    variants = plugin_variants()
    for area in Plugin.bench_areas:
        monitor = {label: options for label, options in variants[area] if "monitor" in label}
        assert monitor == {
            "monitor off": ("-p", "no:monitor"),
            "monitor on": ("-p", "monitor"),  # the endpoints on the agent's port
            "monitor on (every path)": ("-p", "monitor", "--set", "monitor.all_paths=true"),
        }


def _result(variant: str, rate: float) -> AreaResult:
    figure = Figure("echo throughput", "msg/s", [rate])
    return AreaResult(
        area="websocket",
        title="WebSocket",
        variant=variant,
        comparisons=[Comparison(figure=figure)],
    )


def test_every_on_mode_is_compared_with_off() -> None:
    results = [
        _result("monitor off", 100.0),
        _result("monitor on", 98.0),
        _result("monitor on (every path)", 80.0),
    ]
    compared = {row.variant: row for row in _on_vs_off(results, "websocket")}
    assert set(compared) == {"monitor on vs off", "monitor on (every path) vs off"}
    (every,) = compared["monitor on (every path) vs off"].comparisons
    assert every.ratio is not None and round(every.ratio, 2) == 0.8
    assert every.baseline_name == "monitor off (same run)"
