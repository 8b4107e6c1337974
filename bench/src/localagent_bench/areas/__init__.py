"""The areas of ``localagent bench``, in the order of the performance guide.

Each area is a module with an ``AREA`` value; :data:`AREAS` lists them. An
area's ``run`` gets a :class:`~localagent_bench._context.BenchContext` and
returns one :class:`~localagent_bench._model.AreaResult`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

import attrs

from .._context import BenchContext
from .._model import AreaResult

__all__ = ["AREAS", "Area", "load_areas"]


@attrs.frozen
class Area:
    """One area: a name for the command line, a title for the table, the measurement."""

    name: str
    title: str
    run: Callable[[BenchContext], Awaitable[AreaResult]]


#: Area names and the modules that implement them, in table order.
AREAS: tuple[tuple[str, str], ...] = (
    ("plugins", "plugin_loading"),
    ("websocket", "websocket"),
    ("memory", "memory"),
    ("allocations", "allocations"),
    ("files", "file_io"),
    ("redis", "redis"),
    ("pooling", "pooling"),
    ("cluster", "cluster"),
    ("redis-cluster", "redis_cluster"),
    ("subprocess", "subprocess"),
    ("errors", "errors"),
    ("config", "config"),
    ("logging", "logging"),
    ("cleanup", "cleanup"),
)


def load_areas(names: list[str] | None = None) -> list[Area]:
    """The areas to run (all when ``names`` is empty), importing only those.

    Raises:
        ValueError: An unknown name, with the known ones.
    """
    known = dict(AREAS)
    wanted = names or list(known)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(f"unknown area(s) {', '.join(unknown)}; known: {', '.join(known)}")
    areas = []
    for name in wanted:
        module = importlib.import_module(f"{__name__}.{known[name]}")
        area = module.AREA
        if not isinstance(area, Area) or area.name != name:
            raise RuntimeError(f"{module.__name__}.AREA must be Area(name={name!r}, ...)")
        areas.append(area)
    return areas
