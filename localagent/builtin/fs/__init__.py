"""Built-in plugin ``fs``: read, write, list, stat and delete files inside the workspace root.

Every path a client sends is a relative POSIX path, confined to the root by
:mod:`.._workspace` (form checks, then ``realpath`` against the root's real
path). On top of that, files and directories are opened with ``O_NOFOLLOW``
on the final component, writes and deletes act through a file descriptor of
the verified parent directory (``*at`` system calls), and on Linux every
opened descriptor is checked once more through ``/proc/self/fd`` to be inside
the root. See ``docs/fs.md`` for the messages and for what remains unprotected.

Handlers are synchronous (the fast path). Reads and writes of more than
:data:`THREAD_THRESHOLD` bytes return ``asyncio.to_thread(...)`` instead,
which the runtime awaits, so large file I/O does not block the event loop.

The modules: ``_settings`` (the ``[plugins.fs]`` table), ``_errors`` (the
error codes), ``_root`` (confinement: opening paths inside the root),
``_write`` (atomic writes; imported by the first ``fs.write``) and ``_plugin``
(the hooks, reads, listings, stats, deletes).
"""

from ._errors import ERROR_CODES
from ._plugin import THREAD_THRESHOLD, Plugin
from ._settings import DEFAULT_MAX_READ_BYTES, DEFAULT_MAX_WRITE_BYTES, FsSettings

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "DEFAULT_MAX_WRITE_BYTES",
    "ERROR_CODES",
    "THREAD_THRESHOLD",
    "FsSettings",
    "Plugin",
]
