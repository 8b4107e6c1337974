"""The ``fs`` plugin: its hooks, the requests' checks, reads, listings, stats and deletes."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from localagent_hookspecs import Agent, Connection, Message, MessageError, handles, hookimpl

from ...exceptions import ConfigError
from .. import _workspace
from ._data import DeleteData, ListData, ReadData, StatData, WriteData
from ._errors import NOT_EMPTY, NOT_TEXT, TOO_LARGE, file_kind, os_error, refused, require_file
from ._root import O_DIR, O_READ, O_STAT, ConfinedRoot
from ._settings import DEFAULT_MAX_READ_BYTES, DEFAULT_MAX_WRITE_BYTES, NAME, FsSettings

if TYPE_CHECKING:
    from ._write import FileWriter

__all__ = ["THREAD_THRESHOLD", "Plugin"]

#: Reads and writes larger than this (bytes to read; characters of content to
#: write) run in a worker thread instead of on the event loop.
THREAD_THRESHOLD: Final = 256 * 1024
#: Bytes of a read's reply besides its content (the envelope and the other fields), about.
_REPLY_OVERHEAD: Final = 256


def _path(path: str, *, allow_root: bool) -> tuple[str, ...]:
    try:
        return _workspace.split(path, allow_root=allow_root)
    except _workspace.PathRefused as exc:
        raise refused(exc) from None


class _Read(NamedTuple):
    parts: tuple[str, ...]
    encoding: str
    offset: int
    length: int | None


def _json_name(name: str) -> str:
    """A file name as JSON can carry it: undecodable bytes become U+FFFD."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "replace")
    return name


def _reply_size(request: _Read, length: int) -> int:
    """About how many bytes the encoded reply to a read of ``length`` bytes takes."""
    content = 4 * ((length + 2) // 3) if request.encoding == "base64" else length
    return content + _REPLY_OVERHEAD


def _pread_all(fd: int, want: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while want > 0:
        chunk = os.pread(fd, want, offset)
        if not chunk:  # the file shrank meanwhile
            break
        chunks.append(chunk)
        want -= len(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Plugin:
    """Files inside the agent's workspace root (one instance per agent).

    Attributes:
        root: The root (the ``realpath`` of ``[plugins.fs] root`` or of
            ``agent.workspace``), set by :meth:`on_load`.
        max_read_bytes: Most bytes one ``fs.read`` returns.
        max_write_bytes: Most bytes one ``fs.write`` writes.
    """

    def __init__(self) -> None:
        self.root = ConfinedRoot("")
        self.max_read_bytes = DEFAULT_MAX_READ_BYTES
        self.max_write_bytes = DEFAULT_MAX_WRITE_BYTES
        self._writer: FileWriter | None = None  # built by the first fs.write

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Read ``[plugins.fs]``; create a configured ``root`` if it is missing.

        Raises:
            ConfigError: For an invalid table or a root that cannot be created.
        """
        settings = agent.plugin_settings(NAME, FsSettings)
        root = settings.root or agent.workspace
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"[plugins.fs]: cannot create root {root}: {exc}") from None
        self.root = ConfinedRoot(os.path.realpath(root))
        self.max_read_bytes = settings.max_read_bytes
        self.max_write_bytes = settings.max_write_bytes
        self._writer = None

    # -- fs.read -------------------------------------------------------------

    @hookimpl(specname="on_message")
    @handles("fs.read", schema=ReadData)
    def read_file(
        self, message: Message, connection: Connection
    ) -> dict[str, Any] | Coroutine[Any, Any, dict[str, Any]]:
        """Read a file in the workspace (or a part: ``offset``, ``length``).

        Replies ``{"path", "encoding", "content", "offset", "length", "size", "eof"}``.
        """
        data: ReadData = message.data
        request = _Read(
            parts=_path(data.path, allow_root=False),
            encoding=data.encoding,
            offset=data.offset,
            length=data.length,
        )
        result = self._read(request, inline=True)
        if type(result) is int:
            return self._read_in_thread(connection, request, _reply_size(request, result))
        assert type(result) is dict
        return result

    async def _read_in_thread(
        self, connection: Connection, request: _Read, size: int
    ) -> dict[str, Any]:
        """Read in a worker thread, holding the reply's size against the outbound budget.

        A client that does not read its replies thus gets one large read at a
        time, not one per request in flight (``Connection.reserve``).
        """
        import asyncio  # already loaded in a running agent; kept off the CLI's imports

        async with connection.reserve(size):
            work = asyncio.ensure_future(asyncio.to_thread(self._read, request, inline=False))
            try:
                result = await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread reads on regardless: its bytes stay charged until it ends.
                await asyncio.wait((work,))
                raise
        assert type(result) is dict
        return result

    def _read(self, request: _Read, *, inline: bool) -> dict[str, Any] | int:
        """Read the requested range; if ``inline`` and it is worth a thread, its length."""
        rel = _workspace.display(request.parts)
        fd = self.root.open(self.root.resolve(request.parts), rel, O_READ)
        try:
            info = os.fstat(fd)
            require_file(info.st_mode, rel)
            size = info.st_size
            start = min(request.offset, size)
            want = size - start if request.length is None else min(request.length, size - start)
            if want > self.max_read_bytes:
                raise MessageError(
                    TOO_LARGE,
                    f"{rel}: {want} bytes to read, more than max_read_bytes "
                    f'({self.max_read_bytes}); read it in parts with "offset" and "length"',
                    details={"size": size, "limit": self.max_read_bytes},
                )
            if inline and want > THREAD_THRESHOLD:
                return want
            chunk = _pread_all(fd, want, start)
        except OSError as exc:
            raise os_error(exc, rel) from None
        finally:
            os.close(fd)
        content: bytes | str
        if request.encoding == "base64":
            # The codec (msgspec) writes bytes as a base64 string, straight into
            # the frame: no base64 copy of a large read is ever held here.
            content = chunk
        else:
            try:
                content = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MessageError(
                    NOT_TEXT,
                    f"{rel}: not UTF-8 text (invalid byte at offset {start + exc.start}); "
                    f'read it with "encoding": "base64"',
                ) from None
        return {
            "path": rel,
            "encoding": request.encoding,
            "content": content,
            "offset": request.offset,
            "length": len(chunk),
            "size": size,
            "eof": start + len(chunk) >= size,
        }

    # -- fs.write ------------------------------------------------------------

    @hookimpl(specname="on_message")
    @handles("fs.write", schema=WriteData)
    def write_file(self, message: Message) -> dict[str, Any] | Coroutine[Any, Any, dict[str, Any]]:
        """Write a file in the workspace atomically: ``{"path", "size"}``."""
        # Here, not at the top: an agent loads the writing machinery on its first fs.write.
        from ._write import FileWriter, WriteRequest

        data: WriteData = message.data
        request = WriteRequest(
            parts=_path(data.path, allow_root=False),
            content=data.content,
            encoding=data.encoding,
            fsync=data.fsync,
            parents=data.parents,
            overwrite=data.overwrite,
        )
        writer = self._writer
        if writer is None:
            writer = self._writer = FileWriter(self.root, self.max_write_bytes)
        if len(request.content) > THREAD_THRESHOLD:
            import asyncio

            return asyncio.to_thread(writer.write, request)
        return writer.write(request)

    # -- fs.list, fs.stat, fs.delete -----------------------------------------

    @hookimpl(specname="on_message")
    @handles("fs.list", schema=ListData)
    def list_dir(self, message: Message) -> dict[str, Any]:
        """List a directory: ``{"path", "entries": [{"name", "type", "size"}]}``."""
        parts = _path(message.data.path, allow_root=True)
        rel = _workspace.display(parts)
        fd = self.root.open(self.root.resolve(parts), rel, O_DIR)
        entries: list[dict[str, Any]] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed meanwhile
                        continue
                    kind = file_kind(info.st_mode)
                    entries.append(
                        {
                            "name": _json_name(entry.name),
                            "type": kind,
                            "size": info.st_size if kind == "file" else None,
                        }
                    )
        except OSError as exc:
            raise os_error(exc, rel) from None
        finally:
            os.close(fd)
        entries.sort(key=lambda entry: entry["name"])
        return {"path": rel, "entries": entries}

    @hookimpl(specname="on_message")
    @handles("fs.stat", schema=StatData)
    def stat_path(self, message: Message) -> dict[str, Any]:
        """Describe a path: ``{"path", "type", "size", "mtime", "mode", "symlink"}``."""
        parts = _path(message.data.path, allow_root=True)
        rel = _workspace.display(parts)
        real = self.root.resolve(parts)
        fd = self.root.open(real, rel, O_STAT)
        try:
            info = os.fstat(fd)
        except OSError as exc:
            raise os_error(exc, rel) from None
        finally:
            os.close(fd)
        if stat.S_ISLNK(info.st_mode):  # O_PATH | O_NOFOLLOW opened a link realpath left: a loop
            raise os_error(OSError(errno.ELOOP, ""), rel)
        kind = file_kind(info.st_mode)
        return {
            "path": rel,
            "type": kind,
            "size": info.st_size if kind == "file" else None,
            "mtime": info.st_mtime,
            "mode": stat.S_IMODE(info.st_mode),
            "symlink": bool(parts) and os.path.islink(os.path.join(self.root.path, *parts)),
        }

    @hookimpl(specname="on_message")
    @handles("fs.delete", schema=DeleteData)
    def delete_path(self, message: Message) -> dict[str, Any]:
        """Delete a file, a link or an empty directory: ``{"path", "deleted": true}``."""
        parts = _path(message.data.path, allow_root=False)
        rel = _workspace.display(parts)
        dir_fd, _parent, name = self.root.open_parent(parts, rel, create=False)
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                os.rmdir(name, dir_fd=dir_fd)
            else:  # a file, or a symbolic link itself (never its target)
                os.unlink(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise MessageError(NOT_EMPTY, f"{rel}: directory is not empty") from None
            raise os_error(exc, rel) from None
        finally:
            os.close(dir_fd)
        return {"path": rel, "deleted": True}
