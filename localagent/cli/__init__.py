"""The ``localagent`` command line (click): a root group and a module per command group.

Heavy imports (websockets, the runtime) happen inside the commands that need
them, and each command's module is imported only when that command runs, so
``localagent --help`` and ``localagent plugins list`` start fast.
"""

from typing import TYPE_CHECKING, Any

from ._root import main

if TYPE_CHECKING:
    from ._serve import LOG_FORMAT

__all__ = ["LOG_FORMAT", "main"]


def __getattr__(name: str) -> Any:
    if name == "LOG_FORMAT":  # serve's, imported with its module only when asked for
        from ._serve import LOG_FORMAT

        return LOG_FORMAT
    raise AttributeError(f"module 'localagent.cli' has no attribute {name!r}")
