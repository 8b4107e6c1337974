"""The ``[plugins.exec]`` table, and the allow-list it resolves to when the agent starts."""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Mapping
from typing import Annotated

import msgspec

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MAX_PER_CONNECTION",
    "DEFAULT_PASS_ENV",
    "DEFAULT_TIMEOUT",
    "NAME",
    "ExecSettings",
    "resolve_allow_list",
]

logger = logging.getLogger("localagent.builtin.exec")

#: The plugin's name: its ``[plugins.exec]`` table and its key in ``connection.state``.
NAME = "exec"

DEFAULT_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TERM")
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT = 1 << 20
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_MAX_PER_CONNECTION = 2


def _names(name: str, value: tuple[str, ...]) -> None:
    for item in value:
        if not item or "\0" in item:
            raise ValueError(f"{name}: {item!r} must be a non-empty string without NUL")


class ExecSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[plugins.exec]`` table.

    Attributes:
        allow: Program names (looked up on ``PATH`` at load) or absolute paths
            that ``argv[0]`` may name. Empty: nothing may run.
        timeout: Seconds a run may take; a request may ask for less.
        max_output: Bytes kept per stream (stdout, stderr); the rest is discarded.
        env: Variables added to (or overriding) the passed-through ones.
        pass_env: Names of the agent's environment variables the program sees.
        max_concurrent: Runs at once across all connections; more wait.
        max_per_connection: Runs at once per connection; more wait.
    """

    allow: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    max_output: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_OUTPUT
    env: Mapping[str, str] = msgspec.field(default_factory=dict)
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    max_concurrent: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_CONCURRENT
    max_per_connection: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_PER_CONNECTION

    def __post_init__(self) -> None:
        _names("allow", self.allow)
        for entry in self.allow:
            if "/" in entry and not os.path.isabs(entry):
                raise ValueError(f"allow: {entry!r} must be a program name or an absolute path")
        if not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        for name, text in self.env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"env: {name!r} is not a variable name")
            if "\0" in text:
                raise ValueError(f"env: the value of {name} holds a NUL byte")
        _names("pass_env", self.pass_env)


def _is_program(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def resolve_allow_list(allow: tuple[str, ...], search_path: str | None) -> dict[str, str | None]:
    """Map each allow-list entry to the absolute path to run, or ``None`` if unusable.

    A name is looked up in the absolute directories of ``search_path`` only: a
    relative entry such as ``.`` would make the answer depend on the current
    directory. An absolute entry is used as written (not through
    ``realpath``: a venv's ``python`` is a symlink that must keep its name).
    """
    directories = (search_path if search_path is not None else os.defpath).split(os.pathsep)
    absolute = os.pathsep.join(d for d in directories if os.path.isabs(d))
    programs: dict[str, str | None] = {}
    for entry in allow:
        if os.path.isabs(entry):
            found: str | None = entry if _is_program(entry) else None
        else:
            found = shutil.which(entry, path=absolute) if absolute else None
        if found is None:
            logger.warning(
                "[plugins.%s] allow: %r is not an executable program%s; requests for it are "
                "refused",
                NAME,
                entry,
                "" if os.path.isabs(entry) else " on PATH",
            )
        programs[entry] = found
    return programs
