"""What running agents tell the CLI: a status file each, in the config dir's ``agents/``.

A running agent writes ``agents/<pid>.json`` (mode 0600, replaced atomically)
whenever its plugin set or its connections change, and removes it when it
stops. ``localagent plugins list`` reads the files of the agents still alive
to say which plugins each one runs, which version it loaded (stale when the
installed one differs), and which connections a connection-scoped plugin does
not apply to. ``localagent plugins rescan`` touches ``agents/rescan``, which
the agents watch. Nothing here listens or accepts input from another process:
the files hold no secret, and only the user who owns the config dir can write
there. Standard library only, and no pathlib: ``plugins list`` imports this
module, and pathlib (with the modules it pulls in) costs more than the rest of
the listing's own work.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AGENTS_DIR",
    "RESCAN_FILE",
    "agents_dir",
    "read_statuses",
    "remove_status",
    "request_rescan",
    "write_status",
]

#: The directory of the status files, inside the config dir.
AGENTS_DIR = "agents"
#: The file ``plugins rescan`` touches (its change makes the agents look again).
RESCAN_FILE = "rescan"


def agents_dir(config_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(config_dir), AGENTS_DIR)


def _status_path(config_dir: str | os.PathLike[str], pid: int) -> str:
    return os.path.join(agents_dir(config_dir), f"{pid}.json")


def write_status(config_dir: str | os.PathLike[str], status: Mapping[str, Any]) -> None:
    """Write this process's status file (atomically, mode 0600).

    Raises:
        OSError: The file cannot be written.
    """
    directory = agents_dir(config_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pid = os.getpid()
    tmp = os.path.join(directory, f".{pid}.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(status, file)
    os.replace(tmp, _status_path(config_dir, pid))


def remove_status(config_dir: str | os.PathLike[str]) -> None:
    """Remove this process's status file, if it is there."""
    with contextlib.suppress(OSError):
        os.unlink(_status_path(config_dir, os.getpid()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, though not ours to trust
    return True


def read_statuses(config_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The status of every agent running on ``config_dir`` (by pid), dead ones left out.

    A file whose process is gone (an agent killed without its shutdown) is
    removed; one that cannot be read or parsed is skipped.
    """
    directory = agents_dir(config_dir)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        stem, _dot, suffix = name.partition(".")
        if suffix != "json" or not stem.isdigit():
            continue
        path = os.path.join(directory, name)
        if not _alive(int(stem)):
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        try:
            with open(path, encoding="utf-8") as file:
                status = json.loads(file.read())
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and status.get("pid") == int(stem):
            found.append(status)
    return found


def request_rescan(config_dir: str | os.PathLike[str]) -> str:
    """Touch ``agents/rescan``: the agents running on ``config_dir`` look for plugins again."""
    directory = agents_dir(config_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, RESCAN_FILE)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.utime(path)
    return path
