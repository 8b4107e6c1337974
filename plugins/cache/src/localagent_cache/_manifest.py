"""The manifest file: where it lives, what it is keyed on, reading, writing, clearing.

One JSON file per interpreter, ``plugins-<crc32 of the executable>.json`` in
:func:`cache_dir`. It is valid while nothing it depends on has changed:

- the interpreter (executable, prefix, version, bytecode tag) and the format;
- ``sys.path``: the same entries in the same order, each with the same
  modification time (installing, upgrading or uninstalling a distribution
  adds or removes entries of its directory, which changes its mtime);
- each plugin distribution's ``*.dist-info`` directory and its ``METADATA``
  and ``entry_points.txt`` (mtime and size);
- each plugin's sources: every file and directory of the module's top-level
  package (or the module file itself), so editing an editable plugin counts.

Everything is compared with ``os.stat``; nothing is imported to check it. A
file that is missing, unreadable, not JSON or not of the expected shape is
ignored (the caller rediscovers and writes a new one). JSON only: a cache
file is data, never code (no pickle).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the bootstrap protocol's types; nothing of localagent is imported at run time
    from localagent._bootstrap import Manifest, Observation, SpecRecord

__all__ = ["CACHE_DIR_VARIABLE", "FORMAT", "ManifestCache", "cache_dir"]

#: Overrides the cache directory (default: the platform's user cache dir).
CACHE_DIR_VARIABLE = "LOCALAGENT_CACHE_DIR"

#: Bumped whenever the file's layout changes; another format is ignored.
FORMAT = 1

#: A file modified this recently may change again within the same timestamp
#: tick unseen, so a manifest that depends on one is not written ("racy" in git).
RACY_NS = 50_000_000

#: ``[mtime_ns, size]`` of a path, or ``None`` if it does not exist.
Stamp = list[int] | None


def cache_dir() -> str:
    """``$LOCALAGENT_CACHE_DIR``, or ``localagent`` in the platform's user cache dir.

    Paths are ``str`` here: pathlib would cost more to import than this whole module.
    """
    override = os.environ.get(CACHE_DIR_VARIABLE)
    if override:
        return os.path.expanduser(override)
    import platformdirs  # only paid for when no override is set

    return platformdirs.user_cache_dir("localagent", appauthor=False)


def _stamp(path: str) -> Stamp:
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return [stat.st_mtime_ns, stat.st_size]


def _interpreter() -> list[str]:
    return [sys.executable, sys.prefix, sys.version, sys.implementation.cache_tag or ""]


def _path_stamps() -> list[list[Any]]:
    return [[entry, _stamp(entry or ".")] for entry in sys.path]


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _dist_info_files(distribution: str) -> Iterator[str]:
    """The first ``*.dist-info`` of ``distribution`` on ``sys.path``, and its two key files."""
    wanted = _normalize(distribution)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and _normalize(name.partition("-")[0]) == wanted:
                directory = os.path.join(entry or ".", name)
                yield directory
                yield os.path.join(directory, "METADATA")
                yield os.path.join(directory, "entry_points.txt")
                return


def _source_files(value: str) -> Iterator[str]:
    """Every file and directory of the top-level package of ``value`` (``module[:attr]``)."""
    from importlib.util import find_spec  # the write path only

    top = value.partition(":")[0].strip().partition(".")[0]
    try:
        spec = find_spec(top)  # a top-level name: finds it without importing it
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    if spec.submodule_search_locations is None:
        if spec.origin and os.path.isfile(spec.origin):
            yield spec.origin
        return
    for location in spec.submodule_search_locations:
        for directory, subdirectories, files in os.walk(location):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            yield directory
            yield from (os.path.join(directory, name) for name in sorted(files))


def _is_spec_record(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"name", "value", "distribution", "version"}
        and isinstance(value["name"], str)
        and isinstance(value["value"], str)
        and all(isinstance(value[key], str | None) for key in ("distribution", "version"))
    )


def _is_observation(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("enabled"), list)
        and all(isinstance(name, str) for name in value["enabled"])
        and isinstance(value.get("records"), list)
        and all(
            isinstance(record, dict) and isinstance(record.get("name"), str)
            for record in value["records"]
        )
    )


class ManifestCache:
    """The manifest of one interpreter in one cache directory.

    ``sys.path`` is stamped when the object is created, before discovery
    runs, so a distribution installed while discovery runs is never recorded
    as already seen.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        crc = zlib.crc32(f"{sys.executable}\0{sys.prefix}".encode())
        self.path = os.path.join(self.directory, f"plugins-{crc:08x}.json")
        self._paths = _path_stamps()

    def load(self) -> Manifest | None:
        """The manifest if it exists, is well-formed and nothing it depends on changed."""
        try:
            with open(self.path, "rb") as file:
                document = json.loads(file.read())
        except (OSError, ValueError):
            return None
        if not self._valid(document):
            return None
        return {
            "path": self.path,
            "plugins": document["plugins"],
            "observed": document["observed"],
        }

    def _valid(self, document: Any) -> bool:
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            return False
        if document.get("interpreter") != _interpreter() or document.get("paths") != self._paths:
            return False
        files = document.get("files")
        plugins = document.get("plugins")
        observed = document.get("observed")
        return (
            isinstance(files, list)
            and all(
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                for item in files
            )
            and isinstance(plugins, list)
            and all(_is_spec_record(record) for record in plugins)
            and (observed is None or _is_observation(observed))
            and all(_stamp(path) == stamp for path, stamp in files)
        )

    def save(self, plugins: Sequence[SpecRecord], observed: Observation | None = None) -> bool:
        """Write the manifest (atomically); ``False`` if it cannot be, or should not be, written.

        Not written when ``sys.path`` changed since this object was created, or
        when a file it depends on was modified in the last 50 ms (a change
        within the same timestamp tick could go unseen); the next start writes it.
        """
        if _path_stamps() != self._paths:
            return False
        paths: set[str] = set()
        for record in plugins:
            if record["distribution"]:
                paths.update(_dist_info_files(record["distribution"]))
        modules = [record["value"] for record in plugins]
        modules += [
            r["module"] for r in (observed or {"records": []})["records"] if r.get("module")
        ]
        for value in modules:
            paths.update(_source_files(value))
        files = [[path, _stamp(path)] for path in sorted(paths)]
        racy = time.time_ns() - RACY_NS
        stamps = [stamp for _entry, stamp in self._paths] + [stamp for _path, stamp in files]
        if any(stamp is not None and stamp[0] >= racy for stamp in stamps):
            return False
        document = {
            "format": FORMAT,
            "interpreter": _interpreter(),
            "paths": self._paths,
            "files": files,
            "plugins": list(plugins),
            "observed": observed,
        }
        return self._write(json.dumps(document, indent=1).encode())

    def _write(self, data: bytes) -> bool:
        temporary = os.path.join(
            self.directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp"
        )
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(data)
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return False
        return True

    def clear(self) -> int:
        """Remove every manifest in the cache directory (all interpreters), and the records
        of installed commands the CLI keeps there (``commands-*.json``); return how many."""
        removed = 0
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        for name in names:
            prefixes = ("plugins-", ".plugins-", "commands-", ".commands-")
            if name.startswith(prefixes) and name.endswith((".json", ".tmp")):
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    continue
                removed += 1
        return removed
