"""Confining client-supplied paths to a workspace root (used by the ``fs`` plugin).

Pure string work plus :func:`os.path.realpath` (which ``lstat``\\ s each
component): nothing here opens, creates or changes a file.

A client path is a relative POSIX path. :func:`split` checks its form
(no NUL byte, not absolute, no ``..`` component) and normalises it to its
components (``""`` and ``"."`` components are dropped). :func:`resolve` and
:func:`resolve_parent` then follow symbolic links with ``realpath`` and refuse
any result that is not the root or below it.
"""

from __future__ import annotations

import os

__all__ = ["PathRefused", "display", "is_within", "resolve", "resolve_parent", "split"]


class PathRefused(ValueError):
    """A path that names, or resolves to, something outside the workspace root.

    The message names only the client's path, never a host path.
    """


def split(path: str, *, allow_root: bool = False) -> tuple[str, ...]:
    """Check the form of a client path and return its components.

    Args:
        path: The path as the client sent it, e.g. ``"src/main.py"``.
        allow_root: Accept a path that names the root itself (``""``, ``"."``).

    Raises:
        PathRefused: For a NUL byte, an absolute path, a ``..`` component, or
            (without ``allow_root``) a path that names the root itself.
    """
    if "\x00" in path:
        raise PathRefused(f"path {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise PathRefused(f"path {path!r} is absolute; use a path relative to the workspace")
    parts = tuple(part for part in path.split("/") if part and part != ".")
    if ".." in parts:
        raise PathRefused(f"path {path!r} has a '..' component")
    if not parts and not allow_root:
        what = "is empty" if not path else "names the workspace root itself"
        raise PathRefused(f"path {path!r} {what}")
    return parts


def display(parts: tuple[str, ...]) -> str:
    """The normalised relative path of ``parts`` (``"."`` for the root)."""
    return "/".join(parts) or "."


def is_within(path: str, root: str) -> bool:
    """Whether the absolute, normalised ``path`` is ``root`` or below it (no I/O)."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


def resolve(root: str, parts: tuple[str, ...]) -> str:
    """The real path of ``parts`` under ``root``, following every symbolic link.

    Args:
        root: The root's real path (``os.path.realpath`` of it).
        parts: Components from :func:`split`.

    Raises:
        PathRefused: If the real path is not ``root`` or below it (a symbolic
            link, anywhere in the path, leads out of the root).
    """
    real = os.path.realpath(os.path.join(root, *parts))
    if not is_within(real, root):
        raise PathRefused(f"path {display(parts)!r} resolves outside the workspace")
    return real


def resolve_parent(root: str, parts: tuple[str, ...]) -> tuple[str, str]:
    """The real path of the parent directory of ``parts``, and the final name.

    The final component is *not* followed: it may be a symbolic link, which
    the caller inspects (``lstat``) before acting on it.

    Raises:
        PathRefused: If ``parts`` is empty (the root has no parent here) or
            the parent's real path is not ``root`` or below it.
    """
    if not parts:
        raise PathRefused("path names the workspace root itself")
    parent = os.path.realpath(os.path.join(root, *parts[:-1]))
    if not is_within(parent, root):
        raise PathRefused(f"path {display(parts)!r} resolves outside the workspace")
    return parent, parts[-1]
