"""Shows a :class:`~._model.BenchReport`: a rich table, Markdown, or JSON.

The table and the Markdown have the same columns: area (with its variant),
figure, the agent's median with unit and min-max, the baseline's name and
median, the same-run ratio, its grade and the target. Skipped and failed areas
are rows with their reason; every area's notes follow the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import IO

from rich.console import Console
from rich.table import Table

from ._model import AreaResult, BenchReport, Comparison, Figure

__all__ = [
    "COLUMNS",
    "area_label",
    "number",
    "print_table",
    "ratio_text",
    "render_json",
    "render_markdown",
    "summary",
    "table",
]

#: The column headings of the table and of the Markdown.
COLUMNS = (
    "area",
    "figure",
    "agent (median, min\N{EN DASH}max)",
    "baseline",
    "ratio",
    "grade",
    "target",
)

#: Width of the table when the output is not a terminal (a file, a pipe).
PLAIN_WIDTH = 160


def number(value: float) -> str:
    """``value`` with thousands separators; below 100, 3 significant digits at most."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    rounded = float(f"{value:.3g}")
    if abs(rounded) >= 100:
        return f"{value:,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ratio_text(ratio: float | None) -> str:
    """``"0.92x"``; ``"-"`` without a ratio."""
    if ratio is None:
        return "-"
    if 0.095 <= ratio < 100:
        return f"{ratio:.2f}x"
    return f"{number(ratio)}x"


def area_label(result: AreaResult) -> str:
    """The area's title with its variant, e.g. ``"WebSocket (batching on)"``."""
    return f"{result.title} ({result.variant})" if result.variant else result.title


def _spread(figure: Figure) -> str:
    low, high = number(figure.minimum), number(figure.maximum)
    return f"{number(figure.median)} {figure.unit} ({low}\N{EN DASH}{high})"


def _baseline(comparison: Comparison) -> str:
    if comparison.baseline is None:
        return "-"
    name = comparison.baseline_name or comparison.baseline.name
    return f"{name}: {number(comparison.baseline.median)} {comparison.baseline.unit}"


def _cells(comparison: Comparison) -> tuple[str, str, str, str, str, str]:
    return (
        comparison.figure.name,
        _spread(comparison.figure),
        _baseline(comparison),
        ratio_text(comparison.ratio),
        comparison.grade or "-",
        comparison.target or "-",
    )


def _status(result: AreaResult) -> str | None:
    """``"skipped: why"`` or ``"failed: what"``; ``None`` for an area that ran."""
    if result.error is not None:
        return f"failed: {result.error}"
    if result.skipped is not None:
        return f"skipped: {result.skipped}"
    if not result.comparisons:
        return "no figures"
    return None


def _rows(result: AreaResult) -> Iterator[tuple[str, ...]]:
    """The rows of one area: one per figure, or one with its status."""
    status = _status(result)
    if status is not None:
        yield (area_label(result), status, "", "", "", "", "")
        return
    for index, comparison in enumerate(result.comparisons):
        yield (area_label(result) if index == 0 else "", *_cells(comparison))


def summary(report: BenchReport) -> str:
    """One line about the run: mode, repetitions, CPUs, load, agents' loop, wall time."""
    env = report.environment
    load = " ".join(f"{value:.2f}" for value in env.get("load_average_at_start", ()))
    mode = "quick" if env.get("quick") else "full"
    return (
        f"localagent bench: {mode} run, {env.get('repetitions')} repetitions, "
        f"{env.get('cpu_count')} CPUs, load average at start {load or '?'}, "
        f"agents on {env.get('loop', '?')}, {report.seconds:.1f} s"
    )


def _notes(report: BenchReport) -> Iterator[tuple[str, str]]:
    for result in report.results:
        for note in result.notes:
            yield area_label(result), note


def table(report: BenchReport) -> Table:
    """The report as a rich table (notes not included: see :func:`print_table`)."""
    grid = Table(title=summary(report), title_justify="left")
    for column in COLUMNS:
        grid.add_column(column, justify="right" if column in ("ratio", "grade") else "left")
    for result in report.results:
        rows = list(_rows(result))
        failed = result.error is not None
        skipped = result.skipped is not None
        for index, row in enumerate(rows):
            grid.add_row(
                *row,
                style="red" if failed else "dim" if skipped else None,
                end_section=index == len(rows) - 1,
            )
    return grid


def print_table(report: BenchReport, file: IO[str]) -> None:
    """Print the rich table and the notes under it to ``file``."""
    console = Console(file=file, width=None if file.isatty() else PLAIN_WIDTH)
    console.print(table(report))
    notes = list(_notes(report))
    if notes:
        console.print("Notes:")
        for label, note in notes:
            console.print(f"  {label}: {note}", markup=False, highlight=False, soft_wrap=True)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: BenchReport) -> str:
    """The report as Markdown: a pipe table with the table's columns, then the notes."""
    lines = [
        summary(report),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|---:|---|---:|:---:|---|",
    ]
    for result in report.results:
        for row in _rows(result):
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |")
    notes = list(_notes(report))
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- **{_markdown_cell(label)}**: {note}" for label, note in notes]
    return "\n".join(lines) + "\n"


def render_json(report: BenchReport) -> str:
    """The report as JSON text (see ``schema.json``)."""
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
