"""The event loop ``localagent serve`` runs on: uvloop where it is installed, else asyncio's.

uvloop (libuv under asyncio's API) makes the loop's own work — scheduling
callbacks and tasks, socket reads and writes — cheaper; where the agent is the
bottleneck (kv through it with pooling and batching) it serves ~1.2x as many
requests (docs/performance.md#event-loop). Everything
the agent and its plugins use (websockets, redis-py, subprocesses, signals)
runs unchanged on either loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from .exceptions import ConfigError

__all__ = ["LOOPS", "loop_factory", "run", "running_loop_name"]

T = TypeVar("T")

#: The values of the ``[server] loop`` setting.
LOOPS: Final = ("auto", "asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``name`` asks for (``None``: asyncio's default).

    ``"auto"`` is uvloop when it can be imported, else asyncio's loop.

    Raises:
        ConfigError: ``"uvloop"`` was asked for and is not installed.
    """
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ConfigError(
                "loop = 'uvloop' but uvloop is not installed (pip install uvloop; "
                "not available on Windows); use loop = 'auto' or 'asyncio'"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """Run ``main`` to completion on a new loop of the kind ``name`` asks for."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the kind of loop running now."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.partition(".")[0] == "uvloop" else "asyncio"
