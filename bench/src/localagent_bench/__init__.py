"""``localagent bench``: the performance guide's ten areas, measured for real.

Every area runs real parts (an agent subprocess on a free loopback port, real
files, real programs, a real Redis) beside a bare baseline in the same run,
and reports medians with min-max and same-run ratios. Every figure is measured:
an area that lacks a component says why it was skipped.

This is the ``localagent-bench`` distribution: it adds the ``bench`` command
to ``localagent`` through the entry-point group ``localagent.commands``
(:mod:`._cli`, which imports the rest only when the command runs).

Layout: :mod:`._model` (the result values), :mod:`._context` (what an area
gets: repetitions, a scratch directory, agent subprocesses), :mod:`.areas`
(one module per area, listed in ``areas.AREAS``), :mod:`._runner` (runs
areas, with off/on variants for installed optimization plugins),
:mod:`._render` (the table, Markdown and JSON), :mod:`._cli` (the command).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._model import AreaResult, BenchReport, Comparison, Figure, grade
    from ._runner import run_bench

__all__ = ["AreaResult", "BenchReport", "Comparison", "Figure", "grade", "run_bench"]

#: Where each name lives: imported on first use (PEP 562), so that ``localagent --help``,
#: which imports :mod:`._cli` for its help line, imports neither attrs nor the agent.
_LAZY = {
    **dict.fromkeys(("AreaResult", "BenchReport", "Comparison", "Figure", "grade"), "._model"),
    "run_bench": "._runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
