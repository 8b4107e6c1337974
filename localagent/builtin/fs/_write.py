"""``fs.write``: a file written whole or not at all, inside the root.

The content goes to a temporary file next to the target, which is then
renamed over it (or linked to its name, when ``overwrite`` is false, so an
existing file is never replaced). A symbolic link in the workspace is
written through, to its target, only if that target is inside the root.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from contextlib import suppress
from typing import Any, Final, NamedTuple

from localagent_hookspecs import MessageError

from .. import _workspace
from .._args import BAD_REQUEST
from ._errors import EXISTS, IS_A_DIRECTORY, OUTSIDE_WORKSPACE, TOO_LARGE, os_error, require_file
from ._root import O_DIR, O_TEMP, ConfinedRoot, lstat_at

__all__ = ["FileWriter", "WriteRequest"]

#: errnos of ``link()`` on file systems without hard links (FAT, some FUSE mounts).
_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
)


class WriteRequest(NamedTuple):
    """A checked ``fs.write`` request."""

    parts: tuple[str, ...]
    content: str
    encoding: str
    fsync: bool
    parents: bool
    overwrite: bool


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


class FileWriter:
    """Writes files inside ``root``, at most ``max_bytes`` each."""

    def __init__(self, root: ConfinedRoot, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _payload(self, request: WriteRequest, rel: str) -> bytes:
        limit = self.max_bytes
        too_large = MessageError(
            TOO_LARGE,
            f"{rel}: content is larger than max_write_bytes ({limit})",
            details={"limit": limit},
        )
        content = request.content
        if request.encoding == "text":
            if len(content) > limit:  # every character is at least one byte
                raise too_large
            try:
                payload = content.encode("utf-8")
            except UnicodeEncodeError:
                raise MessageError(
                    BAD_REQUEST, f"fs.write: {rel}: content is not valid Unicode text"
                ) from None
        else:
            if len(content) // 4 * 3 - 2 > limit:
                raise too_large
            try:
                payload = base64.b64decode(content, validate=True)
            except ValueError:  # binascii.Error, or non-ASCII characters
                raise MessageError(
                    BAD_REQUEST, f"fs.write: {rel}: content is not valid base64"
                ) from None
        if len(payload) > limit:
            raise too_large
        return payload

    def write(self, request: WriteRequest) -> dict[str, Any]:
        """Write ``request.content`` to its path atomically; ``{"path", "size"}``.

        Raises:
            MessageError: ``too_large``, ``exists``, ``outside_workspace``, ... (docs/fs.md).
        """
        rel = _workspace.display(request.parts)
        payload = self._payload(request, rel)
        dir_fd, parent, name = self.root.open_parent(request.parts, rel, create=request.parents)
        try:
            existing = lstat_at(dir_fd, name)
            if existing is not None and stat.S_ISLNK(existing.st_mode):
                target_fd, name, existing = self._through_link(parent, name, rel)
                os.close(dir_fd)
                dir_fd = target_fd
            mode = None
            if existing is not None:
                require_file(existing.st_mode, rel)
                if not request.overwrite:
                    raise MessageError(EXISTS, f"{rel}: already exists (overwrite is false)")
                mode = stat.S_IMODE(existing.st_mode)
            self._replace(dir_fd, name, payload, mode, request, rel)
        except OSError as exc:
            raise os_error(exc, rel) from None
        finally:
            os.close(dir_fd)
        return {"path": rel, "size": len(payload)}

    def _through_link(
        self, parent: str, name: str, rel: str
    ) -> tuple[int, str, os.stat_result | None]:
        """Where a write to the symbolic link ``parent/name`` goes: its target's directory.

        Returns:
            A new verified descriptor of the target's directory, the target's
            name in it, and the target's ``lstat`` if it exists.

        Raises:
            MessageError: ``outside_workspace`` if the target is outside the
                root (nothing is written), or if the target is itself a link
                (a loop, or a change while writing: it is not chased).
        """
        target = os.path.realpath(os.path.join(parent, name))  # resolves a whole chain
        if not _workspace.is_within(target, self.root.path):
            raise MessageError(
                OUTSIDE_WORKSPACE,
                f"path {rel!r} is a symbolic link that leads outside the workspace",
            )
        if target == self.root.path:
            raise MessageError(IS_A_DIRECTORY, f"{rel}: is a directory")
        dir_fd = self.root.open(os.path.dirname(target), rel, O_DIR)
        name = os.path.basename(target)
        try:
            existing = lstat_at(dir_fd, name)
        except BaseException:
            os.close(dir_fd)
            raise
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            os.close(dir_fd)
            raise MessageError(
                OUTSIDE_WORKSPACE, f"{rel}: a symbolic link loops or changed while writing"
            )
        return dir_fd, name, existing

    def _replace(
        self,
        dir_fd: int,
        name: str,
        payload: bytes,
        mode: int | None,
        request: WriteRequest,
        rel: str,
    ) -> None:
        """Write a temporary file next to ``name``, then rename it over ``name``."""
        temp = f".{name[:32]}.{os.urandom(6).hex()}.tmp"
        fd = os.open(temp, O_TEMP, 0o666, dir_fd=dir_fd)
        try:
            try:
                if mode is not None:
                    os.fchmod(fd, mode)
                _write_all(fd, payload)
                if request.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if request.overwrite:
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                self._link_new(dir_fd, temp, name, rel)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        if request.fsync:
            os.fsync(dir_fd)

    def _link_new(self, dir_fd: int, temp: str, name: str, rel: str) -> None:
        """Give ``temp`` the name ``name`` only if ``name`` does not exist (atomic with link)."""
        try:
            os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except FileExistsError:
            raise MessageError(EXISTS, f"{rel}: already exists (overwrite is false)") from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here: check, then rename (a concurrent creator may lose).
            try:
                os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                return
            raise MessageError(EXISTS, f"{rel}: already exists (overwrite is false)") from None
        with suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
