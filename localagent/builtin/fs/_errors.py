"""The ``fs`` plugin's error codes, and how an ``OSError`` becomes one."""

from __future__ import annotations

import errno
import os
import stat
from typing import Final

from localagent_hookspecs import MessageError

from .. import _workspace
from .._args import BAD_REQUEST

__all__ = [
    "ERROR_CODES",
    "EXISTS",
    "IO_ERROR",
    "IS_A_DIRECTORY",
    "NOT_A_DIRECTORY",
    "NOT_A_FILE",
    "NOT_EMPTY",
    "NOT_FOUND",
    "NOT_TEXT",
    "OUTSIDE_WORKSPACE",
    "PERMISSION_DENIED",
    "TOO_LARGE",
    "file_kind",
    "os_error",
    "refused",
    "require_file",
]

OUTSIDE_WORKSPACE: Final = "outside_workspace"
NOT_FOUND: Final = "not_found"
IS_A_DIRECTORY: Final = "is_a_directory"
NOT_A_DIRECTORY: Final = "not_a_directory"
NOT_A_FILE: Final = "not_a_file"
NOT_EMPTY: Final = "not_empty"
EXISTS: Final = "exists"
PERMISSION_DENIED: Final = "permission_denied"
TOO_LARGE: Final = "too_large"
NOT_TEXT: Final = "not_text"
IO_ERROR: Final = "io_error"

#: Every error code the plugin replies with (``bad_request`` comes from ``_args``).
ERROR_CODES: Final = (
    BAD_REQUEST,
    OUTSIDE_WORKSPACE,
    NOT_FOUND,
    IS_A_DIRECTORY,
    NOT_A_DIRECTORY,
    NOT_A_FILE,
    NOT_EMPTY,
    EXISTS,
    PERMISSION_DENIED,
    TOO_LARGE,
    NOT_TEXT,
    IO_ERROR,
)

_ERRNO_CODES: Final = {
    errno.ENOENT: NOT_FOUND,
    errno.EISDIR: IS_A_DIRECTORY,
    errno.ENOTDIR: NOT_A_DIRECTORY,
    errno.ENOTEMPTY: NOT_EMPTY,
    errno.EEXIST: EXISTS,
    errno.EACCES: PERMISSION_DENIED,
    errno.EPERM: PERMISSION_DENIED,
    errno.EROFS: PERMISSION_DENIED,
    errno.ELOOP: OUTSIDE_WORKSPACE,
    errno.ENAMETOOLONG: BAD_REQUEST,
    errno.EFBIG: TOO_LARGE,
}


def os_error(exc: OSError, rel: str) -> MessageError:
    """A coded error for ``exc`` that names only the client's relative path."""
    code = _ERRNO_CODES.get(exc.errno or 0, IO_ERROR)
    if code == OUTSIDE_WORKSPACE:  # ELOOP: O_NOFOLLOW met a link the checks did not see
        reason = "a symbolic link loops, or appeared while the path was being opened"
    elif exc.errno:
        reason = os.strerror(exc.errno)
    else:
        reason = type(exc).__name__
    return MessageError(code, f"{rel}: {reason}")


def refused(exc: _workspace.PathRefused) -> MessageError:
    """``outside_workspace``, for a path the workspace rules refuse."""
    return MessageError(OUTSIDE_WORKSPACE, str(exc))


def file_kind(mode: int) -> str:
    """What ``fs.list`` and ``fs.stat`` call a file of ``mode``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def require_file(mode: int, rel: str) -> None:
    """Refuse anything but a regular file (``is_a_directory``, ``not_a_file``)."""
    if stat.S_ISDIR(mode):
        raise MessageError(IS_A_DIRECTORY, f"{rel}: is a directory")
    if not stat.S_ISREG(mode):
        raise MessageError(NOT_A_FILE, f"{rel}: not a regular file ({file_kind(mode)})")
