"""The record of the commands distributions add, kept beside the plugin cache's manifest.

Finding the commands of the entry-point group ``localagent.commands`` means
scanning every installed distribution through ``importlib.metadata``, and
``localagent --help`` then imports each command's module for its help line.
When the cache plugin is enabled, :func:`save_commands` records what that
found (each command's entry point, distribution and help text) in the cache
directory, and :func:`load_commands` gives it back to later starts, which
then neither scan nor import a command they do not run.

The record is ``commands-<crc>.json``, the CRC being :func:`commands_key`: a
checksum of the interpreter, of each ``sys.path`` entry with its modification
time, and of the name and ``entry_points.txt`` stamp of each ``*.dist-info``
and ``*.egg-info`` directory in those entries. Installing, upgrading or
removing a distribution changes it, so the next start scans again; the
record also stamps each command's module file, so editing a command's help
counts. Standard library only, no pathlib: every start that lists or runs an
installed command reads this.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["FORMAT", "CommandRecord", "commands_key", "load_commands", "save_commands"]

#: Bumped whenever the file's layout changes; another format is ignored.
FORMAT = 1
#: The record's file name is PREFIX + key + ".json".
PREFIX = "commands-"
#: A file modified this recently may change again unseen within the same timestamp tick:
#: a record depending on it is not written (as the plugin manifest's ``RACY_NS``).
RACY_NS = 50_000_000
_INFO_SUFFIXES = (".dist-info", ".egg-info")


class CommandRecord(NamedTuple):
    """One installed command as recorded: where it comes from and its help.

    Attributes:
        value: The entry point's ``module:attribute``.
        distribution: ``name version`` of the distribution that adds it.
        help: The command's ``help``, ``short_help``, ``hidden`` and
            ``deprecated``, as click has them (what ``--help`` shows of it).
    """

    value: str
    distribution: str
    help: dict[str, Any]


def _stamp(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return [stat.st_mtime_ns, stat.st_size]


def _newest(stamps: list[Any]) -> int:
    return max((stamp[0] for stamp in stamps if stamp), default=0)


def commands_key() -> tuple[str, int]:
    """The checksum of the installed distributions' metadata, as 8 hex digits, and the
    newest modification time (ns) that went into it."""
    parts: list[Any] = [sys.executable, sys.prefix, sys.version, FORMAT]
    newest = 0
    for entry in sys.path:
        directory = entry or "."
        stamp = _stamp(directory)
        parts.append([entry, stamp])
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith(_INFO_SUFFIXES):
                info = _stamp(os.path.join(directory, name, "entry_points.txt"))
                parts.append([name, info])
                newest = max(newest, _newest([info]))
        newest = max(newest, _newest([stamp]))
    crc = zlib.crc32(json.dumps(parts).encode())
    return f"{crc:08x}", newest


def _valid(document: Any) -> bool:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return False
    commands, files = document.get("commands"), document.get("files")
    return (
        isinstance(commands, dict)
        and all(
            isinstance(sources, list)
            and sources
            and all(
                isinstance(source, dict)
                and isinstance(source.get("value"), str)
                and isinstance(source.get("distribution"), str)
                and isinstance(source.get("help"), dict)
                for source in sources
            )
            for sources in commands.values()
        )
        and isinstance(files, list)
        and all(isinstance(item, list) and len(item) == 2 for item in files)
        and all(_stamp(path) == stamp for path, stamp in files)
    )


def load_commands(directory: str, key: str) -> dict[str, list[CommandRecord]] | None:
    """The recorded commands for ``key`` (:func:`commands_key`), or ``None`` if there is
    no such record, it cannot be read, or a command's module file changed since."""
    try:
        with open(os.path.join(directory, f"{PREFIX}{key}.json"), "rb") as file:
            document = json.loads(file.read())
    except (OSError, ValueError):
        return None
    if not _valid(document):
        return None
    return {
        name: [CommandRecord(s["value"], s["distribution"], s["help"]) for s in sources]
        for name, sources in document["commands"].items()
    }


def save_commands(
    directory: str, key: str, commands: Mapping[str, list[CommandRecord]], files: list[str]
) -> bool:
    """Record ``commands`` under ``key``, stamping ``files`` (the commands' modules), and
    remove the records of other keys; ``False`` if it was not written.

    Not written when the key changed since it was computed (a distribution was
    installed meanwhile) or when what it depends on was modified in the last 50 ms.
    """
    now_key, newest = commands_key()
    stamps = [[path, _stamp(path)] for path in sorted(set(files))]
    racy = time.time_ns() - RACY_NS
    if now_key != key or max(newest, _newest([s for _p, s in stamps])) >= racy:
        return False
    document = {
        "format": FORMAT,
        "commands": {
            name: [source._asdict() for source in sources] for name, sources in commands.items()
        },
        "files": stamps,
    }
    name = f"{PREFIX}{key}.json"
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=1)
        os.replace(temporary, os.path.join(directory, name))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return False
    with contextlib.suppress(OSError):
        for other in os.listdir(directory):
            if other.startswith(PREFIX) and other.endswith(".json") and other != name:
                os.unlink(os.path.join(directory, other))
    return True
