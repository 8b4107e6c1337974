"""The values a benchmark run produces: figures, comparisons, area results, the report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

__all__ = ["GRADES", "AreaResult", "BenchReport", "Comparison", "Figure", "grade"]

#: The grade scale, applied to the same-run ratio "agent vs bare baseline",
#: oriented so that 1.0 means "as good as the bare library" (for figures where
#: lower is better, the ratio is inverted first). Lowest ratio for each grade.
GRADES: tuple[tuple[str, float], ...] = (
    ("A", 0.90),
    ("B", 0.75),
    ("C", 0.50),
    ("D", 0.25),
    ("F", 0.0),
)


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    floats = tuple(float(value) for value in values)
    if not floats or not all(math.isfinite(value) for value in floats):
        raise ValueError(f"a figure needs one or more finite samples, not {floats!r}")
    return floats


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _comparisons(values: Iterable[Comparison]) -> tuple[Comparison, ...]:
    return tuple(values)


def grade(goodness: float) -> str:
    """The letter for a ratio where 1.0 means "as good as the baseline".

    A negative one (a difference of two noisy figures, e.g. a cost per raise
    that came out below zero) gets the lowest letter.
    """
    return next((letter for letter, lowest in GRADES if goodness >= lowest), GRADES[-1][0])


@attrs.frozen
class Figure:
    """One measured quantity: a sample per repetition.

    Attributes:
        name: What was measured, e.g. ``"echo throughput"``.
        unit: ``"msg/s"``, ``"ms"``, ``"µs"``, ``"MiB"``, ``"count"``, ...
        samples: One value per repetition.
        higher_is_better: Direction, for ratios and grades.
    """

    name: str
    unit: str
    samples: tuple[float, ...] = attrs.field(converter=_floats)
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def minimum(self) -> float:
        return float(min(self.samples))

    @property
    def maximum(self) -> float:
        return float(max(self.samples))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "samples": list(self.samples),
            "higher_is_better": self.higher_is_better,
        }


@attrs.frozen(kw_only=True)
class Comparison:
    """A figure of the agent, optionally beside the bare baseline of the same run.

    Attributes:
        figure: The agent's figure.
        baseline: The baseline's figure, measured in the same run (``None``
            when the area has no baseline, e.g. memory growth).
        baseline_name: What the baseline is, e.g. ``"bare websockets"``.
        target: The goal as text, e.g. ``">= 0.6x"`` (informational).
        paired: The i-th sample of the figure and of the baseline were measured
            together (one after the other, in the same repetition): the ratio
            is then the median of the per-repetition ratios, so a load that
            changes between repetitions moves both sides of each ratio alike.
    """

    figure: Figure
    baseline: Figure | None = None
    baseline_name: str | None = None
    target: str | None = None
    paired: bool = attrs.field(default=False)

    @paired.validator
    def _same_count(self, _attribute: Any, paired: bool) -> None:
        if paired and (
            self.baseline is None or len(self.baseline.samples) != len(self.figure.samples)
        ):
            raise ValueError("a paired comparison needs a baseline with a sample per sample")

    @property
    def ratio(self) -> float | None:
        """Agent median / baseline median, or the median of the per-repetition ratios
        when :attr:`paired`.

        ``None`` without a baseline, and when a value it would divide is not above
        zero: a figure that is a difference of two noisy measurements (e.g. the
        agent's CPU per raise) can come out at or below zero on a loaded machine,
        and a ratio of such values means nothing.
        """
        if self.baseline is None:
            return None
        if self.paired:
            pairs = list(zip(self.figure.samples, self.baseline.samples, strict=True))
            if not all(value > 0 and base > 0 for value, base in pairs):
                return None
            return float(statistics.median(value / base for value, base in pairs))
        if self.figure.median <= 0 or self.baseline.median <= 0:
            return None
        return self.figure.median / self.baseline.median

    @property
    def goodness(self) -> float | None:
        """The ratio oriented so that higher is better and 1.0 equals the baseline."""
        ratio = self.ratio
        if ratio is None:
            return None
        if self.figure.higher_is_better:
            return ratio
        return 1 / ratio if ratio else None

    @property
    def grade(self) -> str | None:
        goodness = self.goodness
        return None if goodness is None else grade(goodness)

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure.to_json(),
            "baseline": self.baseline.to_json() if self.baseline else None,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "grade": self.grade,
            "target": self.target,
            "paired": self.paired,
        }


@attrs.frozen(kw_only=True)
class AreaResult:
    """What one area produced (for one variant).

    Attributes:
        area: The area's name, e.g. ``"websocket"``.
        title: Human title, e.g. ``"WebSocket"``.
        variant: ``None``, or e.g. ``"batching off"`` / ``"batching on"``.
        comparisons: The figures.
        notes: Facts a reader needs (sizes, verdicts, how it was measured).
        skipped: Why the area did not run, if a component it needs is missing.
        error: What went wrong, if the area failed while running.
    """

    area: str
    title: str
    variant: str | None = None
    comparisons: tuple[Comparison, ...] = attrs.field(default=(), converter=_comparisons)
    notes: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    skipped: str | None = None
    error: str | None = None

    @classmethod
    def skip(cls, area: str, title: str, reason: str, variant: str | None = None) -> AreaResult:
        return cls(area=area, title=title, variant=variant, skipped=reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "title": self.title,
            "variant": self.variant,
            "skipped": self.skipped,
            "error": self.error,
            "notes": list(self.notes),
            "comparisons": [comparison.to_json() for comparison in self.comparisons],
        }


@attrs.frozen(kw_only=True)
class BenchReport:
    """A whole run: the environment it ran in and every area's results.

    Attributes:
        environment: Versions, CPU count, Python build, ``.pyc`` presence,
            load average at start, the options of the run.
        results: One entry per area (and per variant).
        seconds: Wall time of the run.
    """

    environment: dict[str, Any]
    results: Sequence[AreaResult]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "localagent-bench/1",
            "environment": self.environment,
            "seconds": self.seconds,
            "results": [result.to_json() for result in self.results],
        }
