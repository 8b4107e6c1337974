"""``localagent bench``: the performance guide's ten areas, measured for real.

Every area runs real parts (an agent subprocess on a free loopback port, real
files, real programs, a real Redis) beside a bare baseline in the same run,
and reports medians with min-max and same-run ratios. Every figure is measured:
an area that lacks a component says why it was skipped.

Layout: :mod:`._model` (the result values), :mod:`._context` (what an area
gets: repetitions, a scratch directory, agent subprocesses), :mod:`.areas`
(one module per area, listed in ``areas.AREAS``), :mod:`._runner` (runs
areas, with off/on variants for installed optimization plugins).
"""

from ._model import AreaResult, BenchReport, Comparison, Figure, grade
from ._runner import run_bench

__all__ = ["AreaResult", "BenchReport", "Comparison", "Figure", "grade", "run_bench"]
