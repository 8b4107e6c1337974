"""The bench runner's plugin variants (the 'on vs off' rows built from two real runs), and paired
comparisons."""

from __future__ import annotations

import json
from importlib.resources import files

import attrs
import jsonschema
import pytest
from localagent_bench._model import AreaResult, BenchReport, Comparison, Figure, grade
from localagent_bench._render import render_json, render_markdown
from localagent_bench._runner import _enables_only, _on_vs_off


def _result(variant: str, rate: float) -> AreaResult:
    figure = Figure("echo throughput", "msg/s", [rate, rate + 10])
    baseline = Figure("echo throughput", "msg/s", [100.0])
    return AreaResult(
        area="websocket",
        title="WebSocket",
        variant=variant,
        comparisons=[Comparison(figure=figure, baseline=baseline, baseline_name="bare")],
    )


def test_on_vs_off_compares_the_same_figures_of_the_two_runs() -> None:
    results = [_result("batching off", 100.0), _result("batching on", 800.0)]
    (compared,) = _on_vs_off(results, "websocket")
    assert compared.variant == "batching on vs off"
    (comparison,) = compared.comparisons
    assert comparison.figure.samples == (800.0, 810.0)
    assert comparison.baseline is not None and comparison.baseline.samples == (100.0, 110.0)
    assert comparison.baseline_name == "batching off (same run)"
    assert comparison.ratio is not None and round(comparison.ratio, 2) == round(805 / 105, 2)


def test_no_pair_no_row() -> None:
    assert _on_vs_off([_result("batching on", 1.0)], "websocket") == []
    failed = AreaResult(area="websocket", title="WebSocket", variant="batching off", error="x")
    assert _on_vs_off([failed, _result("batching on", 1.0)], "websocket") == []


def test_a_pair_compares_one_figure_on_with_another_off() -> None:
    def result(variant: str, batched: float, unbatched: float) -> AreaResult:
        return AreaResult(
            area="websocket",
            title="WebSocket",
            variant=variant,
            comparisons=[
                Comparison(figure=Figure("batched", "msg/s", [batched])),
                Comparison(figure=Figure("unbatched", "msg/s", [unbatched])),
            ],
        )

    results = [result("batching off", 90.0, 60.0), result("batching on", 500.0, 120.0)]
    pairs = {("batching", "websocket"): [("batched", "unbatched", "both ends vs neither")]}
    (compared,) = _on_vs_off(results, "websocket", pairs)
    by_name = {c.figure.name: c for c in compared.comparisons}
    assert by_name["batched"].ratio == 500.0 / 90.0
    paired = by_name["both ends vs neither"]
    assert paired.figure.samples == (500.0,) and paired.baseline is not None
    assert paired.baseline.samples == (60.0,)
    assert paired.baseline_name == "batching off: unbatched (same run)"
    assert _on_vs_off(
        results, "websocket", {("other", "websocket"): pairs[("batching", "websocket")]}
    )


def test_a_mode_that_enables_a_plugin_not_installed_is_left_out() -> None:
    installed = {"pooling", "batching"}
    assert _enables_only(("-p", "batching"), installed)
    assert _enables_only(("--monitor-port", "0", "-p", "no:mempool"), installed)
    assert not _enables_only(("-p", "batching", "-p", "mempool"), installed)


def test_a_paired_ratio_is_the_median_of_the_per_repetition_ratios() -> None:
    figure = Figure("B", "msg/s", [90.0, 50.0, 100.0])
    baseline = Figure("mean of A and A'", "msg/s", [100.0, 40.0, 100.0])
    assert Comparison(figure=figure, baseline=baseline).ratio == 0.9  # medians: 90 / 100
    paired = Comparison(figure=figure, baseline=baseline, paired=True)
    assert paired.ratio == 1.0  # median of 0.9, 1.25 and 1.0
    assert paired.to_json()["paired"] is True
    with pytest.raises(ValueError, match="a sample per sample"):
        Comparison(figure=figure, baseline=Figure("A", "msg/s", [1.0, 2.0]), paired=True)


def test_a_figure_at_or_below_zero_has_no_ratio_and_no_grade() -> None:
    """A difference of two noisy figures (the agent's CPU per raise) can come out
    negative on a loaded machine; set against a baseline it gets no ratio (the
    report's schema wants ratios >= 0) and the table still renders."""
    cost = Figure("cost per raise", "µs", [-0.4, -0.2, 0.1], False)
    echo = Figure("echo", "µs", [14.0, 14.2, 14.1], False)
    negative = Comparison(figure=cost, baseline=echo, baseline_name="echo")
    assert negative.ratio is None and negative.grade is None
    assert Comparison(figure=echo, baseline=cost, baseline_name="cost").ratio is None
    paired = Comparison(
        figure=Figure("cost per raise", "µs", [3.0, -0.2, 3.1], False),
        baseline=echo,
        baseline_name="monitor off",
        paired=True,
    )
    assert paired.ratio is None and paired.grade is None
    positive = attrs.evolve(paired, figure=Figure("cost per raise", "µs", [7.0, 7.1, 7.05], False))
    assert positive.ratio == pytest.approx(0.5) and positive.grade == "A"  # half the cost
    result = AreaResult(area="errors", title="Errors", comparisons=[negative, paired, positive])
    report = BenchReport(environment={}, results=[result], seconds=1.0)
    assert "cost per raise" in render_markdown(report)
    schema = json.loads(files("localagent_bench").joinpath("schema.json").read_text("utf-8"))
    whole = jsonschema.Draft202012Validator(schema)
    one = whole.evolve(schema=schema["$defs"]["comparison"])
    for comparison in json.loads(render_json(report))["results"][0]["comparisons"]:
        one.validate(comparison)
    assert grade(-0.2) == "F"  # grade() itself takes any number
