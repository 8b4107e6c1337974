"""Built-in plugin ``fs``: read, write, list, stat and delete files inside the workspace root.

Every path a client sends is a relative POSIX path, confined to the root by
:mod:`._workspace` (form checks, then ``realpath`` against the root's real
path). On top of that, files and directories are opened with ``O_NOFOLLOW``
on the final component, writes and deletes act through a file descriptor of
the verified parent directory (``*at`` system calls), and on Linux every
opened descriptor is checked once more through ``/proc/self/fd`` to be inside
the root. See ``docs/fs.md`` for the messages and for what remains unprotected.

Handlers are synchronous (the fast path). Reads and writes of more than
:data:`THREAD_THRESHOLD` bytes return ``asyncio.to_thread(...)`` instead,
which the runtime awaits, so large file I/O does not block the event loop.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from collections.abc import Coroutine, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, Final, NamedTuple

from localagent_hookspecs import Agent, Connection, Message, MessageError, handles, hookimpl

from ..exceptions import ConfigError
from . import _workspace
from ._args import BAD_REQUEST, MISSING, arguments, field

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "DEFAULT_MAX_WRITE_BYTES",
    "ERROR_CODES",
    "THREAD_THRESHOLD",
    "FsConfig",
    "Plugin",
]

MIB: Final = 1024 * 1024
DEFAULT_MAX_READ_BYTES: Final = 4 * MIB
DEFAULT_MAX_WRITE_BYTES: Final = 4 * MIB
#: Bytes of a read's reply besides its content (the envelope and the other fields), about.
_REPLY_OVERHEAD: Final = 256
#: Reads and writes larger than this (bytes to read; characters of content to
#: write) run in a worker thread instead of on the event loop.
THREAD_THRESHOLD: Final = 256 * 1024

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

#: errnos of ``link()`` on file systems without hard links (FAT, some FUSE mounts).
_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
)

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_READ: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | _CLOEXEC  # a FIFO never blocks
_O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: For fs.stat: O_PATH (Linux) needs no read permission; elsewhere a non-blocking read open.
_O_STAT: Final[int] = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | _CLOEXEC
_O_TEMP: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC

_ENCODINGS: Final = ("text", "base64")
_CONFIG_KEYS: Final = ("max_read_bytes", "max_write_bytes", "root")


# -- configuration -------------------------------------------------------------


class FsConfig(NamedTuple):
    """The validated ``[plugins.fs]`` table."""

    root: Path
    max_read_bytes: int = DEFAULT_MAX_READ_BYTES
    max_write_bytes: int = DEFAULT_MAX_WRITE_BYTES

    @classmethod
    def from_table(cls, table: Mapping[str, Any], workspace: Path) -> FsConfig:
        """Validate ``table``; ``root`` defaults to ``workspace``.

        Raises:
            ConfigError: For an unknown key, a value of the wrong type, a
                limit that is not positive, or a ``root`` that is not absolute.
        """
        unknown = sorted(set(table) - set(_CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"[plugins.fs]: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(_CONFIG_KEYS)})"
            )
        limits: dict[str, int] = {}
        for key in ("max_read_bytes", "max_write_bytes"):
            if key not in table:
                continue
            value = table[key]
            if type(value) is not int or value <= 0:
                raise ConfigError(
                    f"[plugins.fs]: {key} must be a positive integer (bytes), not {value!r}"
                )
            limits[key] = value
        root = workspace
        if "root" in table:
            value = table["root"]
            if not isinstance(value, str) or not value:
                raise ConfigError(f"[plugins.fs]: root must be a directory path, not {value!r}")
            root = Path(value).expanduser()
            if not root.is_absolute():
                raise ConfigError(f"[plugins.fs]: root must be an absolute path, not {value!r}")
        return cls(root=root, **limits)


# -- small helpers ---------------------------------------------------------------


def _os_error(exc: OSError, rel: str) -> MessageError:
    """A coded error for ``exc`` that names only the client's relative path."""
    code = _ERRNO_CODES.get(exc.errno or 0, IO_ERROR)
    if code == OUTSIDE_WORKSPACE:  # ELOOP: O_NOFOLLOW met a link the checks did not see
        reason = "a symbolic link loops, or appeared while the path was being opened"
    elif exc.errno:
        reason = os.strerror(exc.errno)
    else:
        reason = type(exc).__name__
    return MessageError(code, f"{rel}: {reason}")


def _refused(exc: _workspace.PathRefused) -> MessageError:
    return MessageError(OUTSIDE_WORKSPACE, str(exc))


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _require_file(mode: int, rel: str) -> None:
    if stat.S_ISDIR(mode):
        raise MessageError(IS_A_DIRECTORY, f"{rel}: is a directory")
    if not stat.S_ISREG(mode):
        raise MessageError(NOT_A_FILE, f"{rel}: not a regular file ({_kind(mode)})")


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


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in the directory ``dir_fd``; ``None`` if it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def _encoding(message: Message, data: dict[str, Any]) -> str:
    value: str = field(message, data, "encoding", str, "text")
    if value not in _ENCODINGS:
        raise MessageError(
            BAD_REQUEST, f'{message.type}: field \'encoding\' must be "text" or "base64"'
        )
    return value


def _count(message: Message, data: dict[str, Any], name: str, default: int | None) -> int | None:
    value: int | None = field(message, data, name, int, default)
    if value is not None and value < 0:
        raise MessageError(BAD_REQUEST, f"{message.type}: field {name!r} must not be negative")
    return value


def _path(message: Message, data: dict[str, Any], *, allow_root: bool) -> tuple[str, ...]:
    path: str = field(message, data, "path", str, "." if allow_root else MISSING)
    try:
        return _workspace.split(path, allow_root=allow_root)
    except _workspace.PathRefused as exc:
        raise _refused(exc) from None


class _Read(NamedTuple):
    parts: tuple[str, ...]
    encoding: str
    offset: int
    length: int | None


class _Write(NamedTuple):
    parts: tuple[str, ...]
    content: str
    encoding: str
    fsync: bool
    parents: bool
    overwrite: bool


# -- the plugin --------------------------------------------------------------------


class Plugin:
    """Files inside the agent's workspace root (one instance per agent).

    Attributes:
        root: The real path of the root (``realpath`` of ``[plugins.fs] root``
            or of ``agent.workspace``), set by :meth:`on_load`.
        max_read_bytes: Most bytes one ``fs.read`` returns.
        max_write_bytes: Most bytes one ``fs.write`` writes.
    """

    def __init__(self) -> None:
        self.root = ""
        self.max_read_bytes = DEFAULT_MAX_READ_BYTES
        self.max_write_bytes = DEFAULT_MAX_WRITE_BYTES
        self._proc_fd = False

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Read ``[plugins.fs]``; create a configured ``root`` if it is missing.

        Raises:
            ConfigError: For an invalid table or a root that cannot be created.
        """
        config = FsConfig.from_table(agent.plugin_config("fs"), agent.workspace)
        try:
            config.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"[plugins.fs]: cannot create root {config.root}: {exc}") from None
        self.root = os.path.realpath(config.root)
        self.max_read_bytes = config.max_read_bytes
        self.max_write_bytes = config.max_write_bytes
        self._proc_fd = os.path.isdir("/proc/self/fd")

    # -- confinement ---------------------------------------------------------

    def _resolve(self, parts: tuple[str, ...]) -> str:
        try:
            return _workspace.resolve(self.root, parts)
        except _workspace.PathRefused as exc:
            raise _refused(exc) from None

    def _verify(self, fd: int, rel: str) -> None:
        """Check where an opened descriptor really is (Linux); closes the open race."""
        if not self._proc_fd:
            return
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if not _workspace.is_within(where, self.root):
            raise MessageError(OUTSIDE_WORKSPACE, f"path {rel!r} resolves outside the workspace")

    def _open(self, real: str, rel: str, flags: int) -> int:
        """``os.open`` with errors mapped, then :meth:`_verify`; the caller closes the fd."""
        try:
            fd = os.open(real, flags)
        except OSError as exc:
            raise _os_error(exc, rel) from None
        try:
            self._verify(fd, rel)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_parent(
        self, parts: tuple[str, ...], rel: str, *, create: bool
    ) -> tuple[int, str, str]:
        """A verified descriptor of the parent directory of ``parts``, its real path, the name."""
        try:
            parent, name = _workspace.resolve_parent(self.root, parts)
        except _workspace.PathRefused as exc:
            raise _refused(exc) from None
        fd = self._open_creating(parent, rel) if create else self._open(parent, rel, _O_DIR)
        return fd, parent, name

    def _open_creating(self, directory: str, rel: str) -> int:
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
                fd = self._open(path, rel, _O_DIR)
                break
            except MessageError as error:
                if error.code != NOT_FOUND or path == self.root:
                    raise
            missing.append(os.path.basename(path))
            path = os.path.dirname(path)
        try:
            for name in reversed(missing):
                with suppress(FileExistsError):  # made concurrently: opened below, unfollowed
                    os.mkdir(name, 0o777, dir_fd=fd)
                child = os.open(name, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as exc:
            os.close(fd)
            raise _os_error(exc, rel) from None
        return fd

    # -- fs.read -------------------------------------------------------------

    @hookimpl(specname="on_message")
    @handles("fs.read")
    def read_file(
        self, message: Message, connection: Connection
    ) -> dict[str, Any] | Coroutine[Any, Any, dict[str, Any]]:
        """``{"path", "encoding"?, "offset"?, "length"?}`` → the content and where it lies."""
        data = arguments(message, "path", "encoding", "offset", "length")
        request = _Read(
            parts=_path(message, data, allow_root=False),
            encoding=_encoding(message, data),
            offset=_count(message, data, "offset", 0) or 0,
            length=_count(message, data, "length", None),
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
        fd = self._open(self._resolve(request.parts), rel, _O_READ)
        try:
            info = os.fstat(fd)
            _require_file(info.st_mode, rel)
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
            raise _os_error(exc, rel) from None
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
    @handles("fs.write")
    def write_file(self, message: Message) -> dict[str, Any] | Coroutine[Any, Any, dict[str, Any]]:
        """``{"path", "content", "encoding"?, ...}`` → ``{"path", "size"}``, atomically."""
        data = arguments(message, "path", "content", "encoding", "fsync", "parents", "overwrite")
        request = _Write(
            parts=_path(message, data, allow_root=False),
            content=field(message, data, "content", str),
            encoding=_encoding(message, data),
            fsync=field(message, data, "fsync", bool, False),
            parents=field(message, data, "parents", bool, False),
            overwrite=field(message, data, "overwrite", bool, True),
        )
        if len(request.content) > THREAD_THRESHOLD:
            import asyncio

            return asyncio.to_thread(self._write, request)
        return self._write(request)

    def _payload(self, request: _Write, rel: str) -> bytes:
        limit = self.max_write_bytes
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

    def _write(self, request: _Write) -> dict[str, Any]:
        rel = _workspace.display(request.parts)
        payload = self._payload(request, rel)
        dir_fd, parent, name = self._open_parent(request.parts, rel, create=request.parents)
        try:
            existing = _lstat_at(dir_fd, name)
            if existing is not None and stat.S_ISLNK(existing.st_mode):
                target_fd, name, existing = self._through_link(parent, name, rel)
                os.close(dir_fd)
                dir_fd = target_fd
            mode = None
            if existing is not None:
                _require_file(existing.st_mode, rel)
                if not request.overwrite:
                    raise MessageError(EXISTS, f"{rel}: already exists (overwrite is false)")
                mode = stat.S_IMODE(existing.st_mode)
            self._replace(dir_fd, name, payload, mode, request, rel)
        except OSError as exc:
            raise _os_error(exc, rel) from None
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
        if not _workspace.is_within(target, self.root):
            raise MessageError(
                OUTSIDE_WORKSPACE,
                f"path {rel!r} is a symbolic link that leads outside the workspace",
            )
        if target == self.root:
            raise MessageError(IS_A_DIRECTORY, f"{rel}: is a directory")
        dir_fd = self._open(os.path.dirname(target), rel, _O_DIR)
        name = os.path.basename(target)
        try:
            existing = _lstat_at(dir_fd, name)
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
        request: _Write,
        rel: str,
    ) -> None:
        """Write a temporary file next to ``name``, then rename it over ``name``."""
        temp = f".{name[:32]}.{os.urandom(6).hex()}.tmp"
        fd = os.open(temp, _O_TEMP, 0o666, dir_fd=dir_fd)
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

    # -- fs.list, fs.stat, fs.delete -----------------------------------------

    @hookimpl(specname="on_message")
    @handles("fs.list")
    def list_dir(self, message: Message) -> dict[str, Any]:
        """``{"path"?: "."}`` → ``{"path", "entries": [{"name", "type", "size"}]}``."""
        data = arguments(message, "path")
        parts = _path(message, data, allow_root=True)
        rel = _workspace.display(parts)
        fd = self._open(self._resolve(parts), rel, _O_DIR)
        entries: list[dict[str, Any]] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed meanwhile
                        continue
                    kind = _kind(info.st_mode)
                    entries.append(
                        {
                            "name": _json_name(entry.name),
                            "type": kind,
                            "size": info.st_size if kind == "file" else None,
                        }
                    )
        except OSError as exc:
            raise _os_error(exc, rel) from None
        finally:
            os.close(fd)
        entries.sort(key=lambda entry: entry["name"])
        return {"path": rel, "entries": entries}

    @hookimpl(specname="on_message")
    @handles("fs.stat")
    def stat_path(self, message: Message) -> dict[str, Any]:
        """``{"path"?: "."}`` → ``{"path", "type", "size", "mtime", "mode", "symlink"}``."""
        data = arguments(message, "path")
        parts = _path(message, data, allow_root=True)
        rel = _workspace.display(parts)
        real = self._resolve(parts)
        fd = self._open(real, rel, _O_STAT)
        try:
            info = os.fstat(fd)
        except OSError as exc:
            raise _os_error(exc, rel) from None
        finally:
            os.close(fd)
        if stat.S_ISLNK(info.st_mode):  # O_PATH | O_NOFOLLOW opened a link realpath left: a loop
            raise _os_error(OSError(errno.ELOOP, ""), rel)
        kind = _kind(info.st_mode)
        return {
            "path": rel,
            "type": kind,
            "size": info.st_size if kind == "file" else None,
            "mtime": info.st_mtime,
            "mode": stat.S_IMODE(info.st_mode),
            "symlink": bool(parts) and os.path.islink(os.path.join(self.root, *parts)),
        }

    @hookimpl(specname="on_message")
    @handles("fs.delete")
    def delete_path(self, message: Message) -> dict[str, Any]:
        """``{"path"}`` → ``{"path", "deleted": true}``; a file, a link or an empty directory."""
        data = arguments(message, "path")
        parts = _path(message, data, allow_root=False)
        rel = _workspace.display(parts)
        dir_fd, _parent, name = self._open_parent(parts, rel, create=False)
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                os.rmdir(name, dir_fd=dir_fd)
            else:  # a file, or a symbolic link itself (never its target)
                os.unlink(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise MessageError(NOT_EMPTY, f"{rel}: directory is not empty") from None
            raise _os_error(exc, rel) from None
        finally:
            os.close(dir_fd)
        return {"path": rel, "deleted": True}
