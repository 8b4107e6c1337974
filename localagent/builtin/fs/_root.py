"""Confinement: opening what a client names inside the root, and nothing outside it.

:mod:`.._workspace` checks a path's form and its ``realpath`` against the
root; :class:`ConfinedRoot` then opens with ``O_NOFOLLOW`` on the final
component, reaches a file's parent directory through a verified descriptor
(for the ``*at`` system calls), and on Linux checks every opened descriptor
once more through ``/proc/self/fd``.
"""

from __future__ import annotations

import os
from contextlib import suppress
from typing import Final

from localagent_hookspecs import MessageError

from .. import _workspace
from ._errors import NOT_FOUND, OUTSIDE_WORKSPACE, os_error, refused

__all__ = ["O_DIR", "O_READ", "O_STAT", "O_TEMP", "ConfinedRoot", "lstat_at"]

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
O_READ: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | _CLOEXEC  # a FIFO never blocks
O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: For fs.stat: O_PATH (Linux) needs no read permission; elsewhere a non-blocking read open.
O_STAT: Final[int] = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | _CLOEXEC
O_TEMP: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in the directory ``dir_fd``; ``None`` if it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class ConfinedRoot:
    """The directory the plugin is confined to.

    Args:
        path: Its real path (``realpath``).

    Attributes:
        path: Its real path.
        proc_fd: Whether ``/proc/self/fd`` can tell where a descriptor is (Linux).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.proc_fd = os.path.isdir("/proc/self/fd")

    def resolve(self, parts: tuple[str, ...]) -> str:
        """The real path of the relative ``parts``, refused if it leaves the root."""
        try:
            return _workspace.resolve(self.path, parts)
        except _workspace.PathRefused as exc:
            raise refused(exc) from None

    def verify(self, fd: int, rel: str) -> None:
        """Check where an opened descriptor really is (Linux); closes the open race."""
        if not self.proc_fd:
            return
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if not _workspace.is_within(where, self.path):
            raise MessageError(OUTSIDE_WORKSPACE, f"path {rel!r} resolves outside the workspace")

    def open(self, real: str, rel: str, flags: int) -> int:
        """``os.open`` with errors mapped, then :meth:`verify`; the caller closes the fd."""
        try:
            fd = os.open(real, flags)
        except OSError as exc:
            raise os_error(exc, rel) from None
        try:
            self.verify(fd, rel)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_parent(
        self, parts: tuple[str, ...], rel: str, *, create: bool
    ) -> tuple[int, str, str]:
        """A verified descriptor of the parent directory of ``parts``, its real path, the name."""
        try:
            parent, name = _workspace.resolve_parent(self.path, parts)
        except _workspace.PathRefused as exc:
            raise refused(exc) from None
        fd = self.open_creating(parent, rel) if create else self.open(parent, rel, O_DIR)
        return fd, parent, name

    def open_creating(self, directory: str, rel: str) -> int:
        """Open ``directory`` (a real path inside the root), creating missing ones.

        Missing directories are made one at a time with ``mkdirat`` below the
        nearest existing, verified ancestor, and each is opened with
        ``O_NOFOLLOW``, so a concurrently planted symbolic link is refused
        rather than followed.
        """
        missing: list[str] = []
        path = directory
        while True:
            try:
                fd = self.open(path, rel, O_DIR)
                break
            except MessageError as error:
                if error.code != NOT_FOUND or path == self.path:
                    raise
            missing.append(os.path.basename(path))
            path = os.path.dirname(path)
        try:
            for name in reversed(missing):
                with suppress(FileExistsError):  # made concurrently: opened below, unfollowed
                    os.mkdir(name, 0o777, dir_fd=fd)
                child = os.open(name, O_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as exc:
            os.close(fd)
            raise os_error(exc, rel) from None
        return fd
