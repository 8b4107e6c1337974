"""The built-in ``fs`` plugin: real files in a temporary workspace, driven through a real agent.

Layout of every test's ``tmp_path``::

    config/       the config dir (``isolated_env``)
    workspace/    the agent's workspace root (``LOCALAGENT_WORKSPACE``)
    outside/      files an attacker would like to reach; must never change

The tests named ``test_attack_...`` form the group of confinement attacks
(``pytest -k attack``); each one checks that ``outside/`` is unchanged.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

import localagent
from localagent import Client, ReplyError, Server
from localagent.builtin import _workspace
from localagent.builtin import fs as fs_plugin
from localagent.builtin._workspace import PathRefused
from localagent.builtin.fs._data import DeleteData, ReadData, WriteData
from localagent.builtin.fs._errors import os_error

MESSAGES = ("fs.read", "fs.write", "fs.list", "fs.stat", "fs.delete")
SECRET = b"the secret outside the workspace\n"

# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The workspace root (the agent creates it when it starts)."""
    return tmp_path / "workspace"


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A directory next to the workspace; asserted unchanged after the test."""
    directory = tmp_path / "outside"
    (directory / "sub").mkdir(parents=True)
    (directory / "secret.txt").write_bytes(SECRET)
    (directory / "sub" / "deep.txt").write_bytes(b"deep\n")
    before = _snapshot(directory)
    yield directory
    assert _snapshot(directory) == before, "a file outside the workspace changed"


def _snapshot(directory: Path) -> dict[str, Any]:
    """Every entry below ``directory`` with its type, mode and content."""
    found: dict[str, Any] = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        found[str(path.relative_to(directory))] = (stat.S_IFMT(info.st_mode), info.st_mode, content)
    return found


async def _error(client: Client, message_type: str, data: Any) -> ReplyError:
    with pytest.raises(ReplyError) as caught:
        await client.request(message_type, data)
    return caught.value


def _files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _write_config(config_dir: Path, table: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(f"[plugins.fs]\n{table}\n", encoding="utf-8")


@asynccontextmanager
async def _agent_with(config_dir: Path, table: str) -> AsyncIterator[tuple[Server, Client]]:
    """An agent started with ``[plugins.fs]`` set to ``table``, and a client of it."""
    _write_config(config_dir, table)
    async with Server.create(port=0) as server, Client(server.url, server.token_file.get()) as c:
        yield server, c


# -- the pure confinement helper -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a", ("a",)),
        ("a/b.txt", ("a", "b.txt")),
        ("a//b/./c/", ("a", "b", "c")),
        ("./a", ("a",)),
        ("a b/ü.txt", ("a b", "ü.txt")),
        ("...", ("...",)),
        ("..a/b..", ("..a", "b..")),
        ("a\\..\\b", ("a\\..\\b",)),  # a backslash is an ordinary character on POSIX
    ],
)
def test_split_normalises_relative_paths(path: str, parts: tuple[str, ...]) -> None:
    assert _workspace.split(path) == parts


@pytest.mark.parametrize("path", ["", ".", "./", "./."])
def test_split_root_needs_allow_root(path: str) -> None:
    assert _workspace.split(path, allow_root=True) == ()
    with pytest.raises(PathRefused):
        _workspace.split(path)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("..", "'..' component"),
        ("../x", "'..' component"),
        ("a/../../x", "'..' component"),
        ("a/..", "'..' component"),
        ("./../x", "'..' component"),
        ("/etc/passwd", "absolute"),
        ("//x", "absolute"),
        ("/", "absolute"),
        ("a\x00b", "NUL byte"),
        ("\x00", "NUL byte"),
    ],
)
def test_split_refuses(path: str, reason: str) -> None:
    with pytest.raises(PathRefused, match=reason):
        _workspace.split(path, allow_root=True)


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        ("/w/root", "/w/root", True),
        ("/w/root/a", "/w/root", True),
        ("/w/root/a/b", "/w/root", True),
        ("/w/rootx", "/w/root", False),
        ("/w/root-2/a", "/w/root", False),
        ("/w", "/w/root", False),
        ("/etc/passwd", "/w/root", False),
        ("/anything", "/", True),
        ("/w/root/a", "/w/root/", True),
    ],
)
def test_is_within(path: str, root: str, inside: bool) -> None:
    assert _workspace.is_within(path, root) is inside


def test_resolve_follows_links_and_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (root / "in-link").symlink_to("dir")
    (root / "out-link").symlink_to(tmp_path / "out")
    (root / "up").symlink_to("..")
    real = os.path.realpath(root)
    assert _workspace.resolve(real, ("in-link", "f")) == os.path.join(real, "dir", "f")
    assert _workspace.resolve(real, ()) == real
    assert _workspace.resolve(real, ("missing", "x")) == os.path.join(real, "missing", "x")
    # A detour out and back in is fine: only where the path ends up counts.
    assert _workspace.resolve(real, ("up", "root", "dir")) == os.path.join(real, "dir")
    for parts in [("out-link",), ("out-link", "f"), ("up",), ("up", "out")]:
        with pytest.raises(PathRefused, match="resolves outside"):
            _workspace.resolve(real, parts)


def test_resolve_parent_does_not_follow_the_final_component(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out-link").symlink_to(tmp_path)
    real = os.path.realpath(root)
    assert _workspace.resolve_parent(real, ("out-link",)) == (real, "out-link")
    with pytest.raises(PathRefused):
        _workspace.resolve_parent(real, ("out-link", "x"))
    with pytest.raises(PathRefused, match="root itself"):
        _workspace.resolve_parent(real, ())


# -- fs.read and fs.write round trips ------------------------------------------------


async def test_text_round_trip(client: Client, workspace: Path) -> None:
    text = "hello, wörld ✓\nline two\n"
    reply = await client.request("fs.write", {"path": "notes.txt", "content": text})
    assert reply == {"path": "notes.txt", "size": len(text.encode())}
    assert (workspace / "notes.txt").read_text(encoding="utf-8") == text
    assert await client.request("fs.read", {"path": "notes.txt"}) == {
        "path": "notes.txt",
        "encoding": "text",
        "content": text,
        "offset": 0,
        "length": len(text.encode()),
        "size": len(text.encode()),
        "eof": True,
    }


async def test_base64_round_trip_of_every_byte_value(client: Client, workspace: Path) -> None:
    payload = bytes(range(256)) * 4
    encoded = base64.b64encode(payload).decode()
    data = {"path": "bin/all.bytes", "content": encoded, "encoding": "base64", "parents": True}
    assert await client.request("fs.write", data) == {"path": "bin/all.bytes", "size": 1024}
    assert (workspace / "bin" / "all.bytes").read_bytes() == payload
    reply = await client.request("fs.read", {"path": "bin/all.bytes", "encoding": "base64"})
    assert base64.b64decode(reply["content"]) == payload
    assert reply["size"] == reply["length"] == 1024


async def test_empty_file(client: Client, workspace: Path) -> None:
    await client.request("fs.write", {"path": "empty", "content": ""})
    assert (workspace / "empty").read_bytes() == b""
    reply = await client.request("fs.read", {"path": "empty"})
    assert (reply["content"], reply["size"], reply["eof"]) == ("", 0, True)


async def test_offset_and_length(client: Client, workspace: Path) -> None:
    (workspace / "abc").write_bytes(b"0123456789")
    read = {"path": "abc"}
    part = await client.request("fs.read", {**read, "offset": 2, "length": 3})
    assert (part["content"], part["offset"], part["length"], part["size"]) == ("234", 2, 3, 10)
    assert part["eof"] is False
    tail = await client.request("fs.read", {**read, "offset": 7})
    assert (tail["content"], tail["length"], tail["eof"]) == ("789", 3, True)
    long = await client.request("fs.read", {**read, "offset": 8, "length": 100})
    assert (long["content"], long["eof"]) == ("89", True)
    past = await client.request("fs.read", {**read, "offset": 50})
    assert (past["content"], past["length"], past["offset"], past["eof"]) == ("", 0, 50, True)
    none = await client.request("fs.read", {**read, "length": 0})
    assert (none["content"], none["eof"]) == ("", False)


async def test_binary_file_read_as_text_is_not_text(client: Client, workspace: Path) -> None:
    (workspace / "image.bin").write_bytes(b"ok\xff\xfe")
    error = await _error(client, "fs.read", {"path": "image.bin"})
    assert error.code == "not_text"
    assert "base64" in error.message and "offset 2" in error.message
    assert str(workspace) not in error.message


async def test_large_read_and_write_go_through_a_thread(client: Client, workspace: Path) -> None:
    text = "x" * (fs_plugin.THREAD_THRESHOLD + 1000)
    assert (await client.request("fs.write", {"path": "big.txt", "content": text}))["size"] == len(
        text
    )
    assert (workspace / "big.txt").read_text() == text
    reply = await client.request("fs.read", {"path": "big.txt"})
    assert reply["content"] == text
    payload = os.urandom(fs_plugin.THREAD_THRESHOLD * 2)
    (workspace / "big.bin").write_bytes(payload)
    reply = await client.request("fs.read", {"path": "big.bin", "encoding": "base64"})
    assert base64.b64decode(reply["content"]) == payload
    assert _files(workspace) == ["big.bin", "big.txt"]


# -- fs.write: atomicity and options ---------------------------------------------------


async def test_write_replaces_atomically_and_leaves_no_temp_file(
    client: Client, workspace: Path
) -> None:
    (workspace / "f.txt").write_text("old")
    inode = (workspace / "f.txt").stat().st_ino
    await client.request("fs.write", {"path": "f.txt", "content": "new"})
    assert (workspace / "f.txt").read_text() == "new"
    assert (workspace / "f.txt").stat().st_ino != inode  # a new file renamed over the old one
    assert _files(workspace) == ["f.txt"]


async def test_write_keeps_the_mode_of_the_file_it_replaces(
    client: Client, workspace: Path
) -> None:
    (workspace / "script.sh").write_text("old")
    (workspace / "script.sh").chmod(0o751)
    await client.request("fs.write", {"path": "script.sh", "content": "new"})
    assert stat.S_IMODE((workspace / "script.sh").stat().st_mode) == 0o751


async def test_overwrite_false(client: Client, workspace: Path) -> None:
    write = {"path": "once.txt", "content": "first", "overwrite": False}
    assert await client.request("fs.write", write) == {"path": "once.txt", "size": 5}
    error = await _error(client, "fs.write", {**write, "content": "second"})
    assert error.code == "exists"
    assert (workspace / "once.txt").read_text() == "first"
    assert _files(workspace) == ["once.txt"]


@pytest.mark.parametrize("size", [10, fs_plugin.THREAD_THRESHOLD + 10])
async def test_a_failed_write_leaves_the_old_content_and_no_temp_file(
    client: Client, workspace: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    (workspace / "keep.txt").write_text("precious")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    error = await _error(
        client, "fs.write", {"path": "keep.txt", "content": "y" * size, "fsync": True}
    )
    assert error.code == "io_error"
    assert error.message == "keep.txt: Input/output error"
    assert (workspace / "keep.txt").read_text() == "precious"
    assert _files(workspace) == ["keep.txt"]


async def test_fsync_flag_is_accepted(client: Client, workspace: Path) -> None:
    reply = await client.request("fs.write", {"path": "durable", "content": "d", "fsync": True})
    assert reply == {"path": "durable", "size": 1}
    assert (workspace / "durable").read_text() == "d"
    await client.request("fs.write", {"path": "durable", "content": "e", "fsync": False})
    assert (workspace / "durable").read_text() == "e"


async def test_parents(client: Client, workspace: Path) -> None:
    error = await _error(client, "fs.write", {"path": "x/y/z.txt", "content": "z"})
    assert error.code == "not_found"
    assert not (workspace / "x").exists()
    data = {"path": "x/y/z.txt", "content": "z", "parents": True}
    await client.request("fs.write", data)
    assert (workspace / "x" / "y" / "z.txt").read_text() == "z"
    await client.request("fs.write", {**data, "path": "x/y/w.txt"})  # parents already exist
    assert _files(workspace / "x" / "y") == ["w.txt", "z.txt"]


async def test_parents_through_a_file_is_not_a_directory(client: Client, workspace: Path) -> None:
    (workspace / "file").write_text("f")
    data = {"path": "file/sub/x", "content": "", "parents": True}
    assert (await _error(client, "fs.write", data)).code == "not_a_directory"
    assert _files(workspace) == ["file"]


async def test_write_onto_a_directory(client: Client, workspace: Path) -> None:
    (workspace / "dir").mkdir()
    error = await _error(client, "fs.write", {"path": "dir", "content": "x"})
    assert error.code == "is_a_directory"
    assert _files(workspace) == ["dir"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"path": "f", "content": "!!!", "encoding": "base64"}, "not valid base64"),
        ({"path": "f", "content": "é", "encoding": "base64"}, "not valid base64"),
    ],
)
async def test_write_bad_requests(
    client: Client, workspace: Path, data: dict[str, Any], fragment: str
) -> None:
    error = await _error(client, "fs.write", data)
    assert error.code == "bad_request"
    assert fragment in error.message
    assert _files(workspace) == []


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"path": "f", "content": "x", "encoding": "utf-16"}, "$.encoding", "Invalid enum value"),
        ({"path": "f"}, "$.content", "missing required field `content`"),
        ({"content": "x"}, "$.path", "missing required field `path`"),
        ({"path": "f", "content": 5}, "$.content", "Expected `str`, got `int`"),
        ({"path": "f", "content": "x", "fsync": "yes"}, "$.fsync", "Expected `bool`"),
        ({"path": "f", "content": "x", "mode": 420}, "$.mode", "unknown field `mode`"),
        ({"path": ["f"], "content": "x"}, "$.path", "Expected `str`, got `array`"),
    ],
)
async def test_write_invalid_data(
    client: Client, workspace: Path, data: dict[str, Any], path: str, fragment: str
) -> None:
    error = await _error(client, "fs.write", data)
    assert error.code == "invalid_data"
    assert error.details == {"path": path}
    assert f"fs.write: invalid data at {path}: " in error.message
    assert fragment in error.message
    assert _files(workspace) == []


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"path": "f", "offset": -1}, "$.offset", "`int` >= 0"),
        ({"path": "f", "length": -5}, "$.length", "`int` >= 0"),
        ({"path": "f", "offset": 1.5}, "$.offset", "Expected `int`, got `float`"),
        ({"path": "f", "length": True}, "$.length", "got `bool`"),
        ({"path": "f", "encoding": "hex"}, "$.encoding", "Invalid enum value"),
        ("f", "$", "Expected `object`, got `str`"),
    ],
)
async def test_read_invalid_data(
    client: Client, workspace: Path, data: Any, path: str, fragment: str
) -> None:
    (workspace / "f").write_text("f")
    error = await _error(client, "fs.read", data)
    assert error.code == "invalid_data"
    assert error.details == {"path": path}
    assert fragment in error.message


# -- read errors ---------------------------------------------------------------------


async def test_read_errors(client: Client, workspace: Path) -> None:
    (workspace / "dir").mkdir()
    (workspace / "file").write_text("f")
    os.mkfifo(workspace / "pipe")
    cases = {
        "missing": "not_found",
        "missing/x": "not_found",
        "dir": "is_a_directory",
        "file/x": "not_a_directory",
        "pipe": "not_a_file",  # and it does not block on the FIFO
    }
    for path, code in cases.items():
        error = await _error(client, "fs.read", {"path": path})
        assert error.code == code, path
        assert error.message.startswith(path), error.message
        assert str(workspace) not in error.message


async def test_permission_denied(client: Client, workspace: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    (workspace / "locked").write_text("x")
    (workspace / "locked").chmod(0)
    (workspace / "ro").mkdir()
    (workspace / "ro").chmod(0o500)
    try:
        assert (await _error(client, "fs.read", {"path": "locked"})).code == "permission_denied"
        data = {"path": "ro/new", "content": "x"}
        assert (await _error(client, "fs.write", data)).code == "permission_denied"
        assert (await _error(client, "fs.list", {"path": "locked"})).code == "permission_denied"
    finally:
        (workspace / "ro").chmod(0o700)
    assert _files(workspace / "ro") == []


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (errno.ENOENT, "not_found"),
        (errno.EACCES, "permission_denied"),
        (errno.EPERM, "permission_denied"),
        (errno.EROFS, "permission_denied"),
        (errno.EISDIR, "is_a_directory"),
        (errno.ENOTDIR, "not_a_directory"),
        (errno.ENOTEMPTY, "not_empty"),
        (errno.EEXIST, "exists"),
        (errno.ELOOP, "outside_workspace"),
        (errno.ENAMETOOLONG, "bad_request"),
        (errno.EFBIG, "too_large"),
        (errno.ENOSPC, "io_error"),
        (errno.EIO, "io_error"),
    ],
)
def test_os_errors_map_to_codes_naming_only_the_relative_path(number: int, code: str) -> None:
    error = os_error(OSError(number, "ignored", "/host/secret/path"), "a/b.txt")
    assert error.code == code
    assert code in fs_plugin.ERROR_CODES
    assert error.message.startswith("a/b.txt: ")
    assert "/host" not in error.message


# -- fs.list, fs.stat, fs.delete -------------------------------------------------------


async def test_list(client: Client, workspace: Path) -> None:
    (workspace / "b.txt").write_bytes(b"12345")
    (workspace / "a-dir").mkdir()
    (workspace / "c-link").symlink_to("b.txt")
    (workspace / ".hidden").write_text("")
    os.mkfifo(workspace / "d-pipe")
    reply = await client.request("fs.list", {})
    assert reply == {
        "path": ".",
        "entries": [
            {"name": ".hidden", "type": "file", "size": 0},
            {"name": "a-dir", "type": "dir", "size": None},
            {"name": "b.txt", "type": "file", "size": 5},
            {"name": "c-link", "type": "symlink", "size": None},
            {"name": "d-pipe", "type": "other", "size": None},
        ],
    }
    assert await client.request("fs.list", {"path": "a-dir"}) == {"path": "a-dir", "entries": []}
    assert (await client.request("fs.list", {"path": "."}))["path"] == "."


async def test_list_errors(client: Client, workspace: Path) -> None:
    (workspace / "file").write_text("x")
    assert (await _error(client, "fs.list", {"path": "file"})).code == "not_a_directory"
    assert (await _error(client, "fs.list", {"path": "nope"})).code == "not_found"


async def test_stat(client: Client, workspace: Path) -> None:
    (workspace / "f.txt").write_bytes(b"abc")
    (workspace / "f.txt").chmod(0o640)
    (workspace / "d").mkdir()
    (workspace / "link").symlink_to("f.txt")
    reply = await client.request("fs.stat", {"path": "f.txt"})
    assert reply == {
        "path": "f.txt",
        "type": "file",
        "size": 3,
        "mtime": (workspace / "f.txt").stat().st_mtime,
        "mode": 0o640,
        "symlink": False,
    }
    assert (await client.request("fs.stat", {"path": "d"}))["type"] == "dir"
    root = await client.request("fs.stat", {})
    assert (root["path"], root["type"], root["size"]) == (".", "dir", None)
    link = await client.request("fs.stat", {"path": "link"})
    assert (link["type"], link["size"], link["symlink"]) == ("file", 3, True)
    assert (await _error(client, "fs.stat", {"path": "nope"})).code == "not_found"


async def test_delete(client: Client, workspace: Path) -> None:
    (workspace / "f").write_text("x")
    (workspace / "empty").mkdir()
    (workspace / "full").mkdir()
    (workspace / "full" / "x").write_text("x")
    assert await client.request("fs.delete", {"path": "f"}) == {"path": "f", "deleted": True}
    assert await client.request("fs.delete", {"path": "empty/"}) == {
        "path": "empty",
        "deleted": True,
    }
    error = await _error(client, "fs.delete", {"path": "full"})
    assert (error.code, error.message) == ("not_empty", "full: directory is not empty")
    assert (await _error(client, "fs.delete", {"path": "f"})).code == "not_found"
    assert _files(workspace) == ["full"]
    assert await client.request("fs.delete", {"path": "full/x"}) == {
        "path": "full/x",
        "deleted": True,
    }


async def test_delete_a_link_to_a_directory_removes_only_the_link(
    client: Client, workspace: Path
) -> None:
    (workspace / "dir").mkdir()
    (workspace / "dir" / "keep").write_text("k")
    (workspace / "link").symlink_to("dir")
    await client.request("fs.delete", {"path": "link"})
    assert _files(workspace) == ["dir"]
    assert (workspace / "dir" / "keep").read_text() == "k"


# -- size limits and configuration -------------------------------------------------


async def test_size_limits(isolated_env: Path, workspace: Path) -> None:
    async with _agent_with(isolated_env, "max_write_bytes = 100\nmax_read_bytes = 50") as (_, c):
        error = await _error(c, "fs.write", {"path": "big", "content": "x" * 101})
        assert error.code == "too_large"
        assert "max_write_bytes (100)" in error.message
        assert error.details == {"limit": 100}
        big = base64.b64encode(b"\0" * 101).decode()
        data = {"path": "big", "content": big, "encoding": "base64"}
        assert (await _error(c, "fs.write", data)).code == "too_large"
        data = {"path": "big", "content": "é" * 51}  # 51 characters, 102 bytes
        assert (await _error(c, "fs.write", data)).code == "too_large"
        assert _files(workspace) == []  # nothing written, no temp file

        await c.request("fs.write", {"path": "ok", "content": "x" * 100})
        error = await _error(c, "fs.read", {"path": "ok"})
        assert error.code == "too_large"
        assert '"offset" and "length"' in error.message
        assert error.details == {"size": 100, "limit": 50}
        assert (await c.request("fs.read", {"path": "ok", "length": 50}))["length"] == 50
        assert (await c.request("fs.read", {"path": "ok", "offset": 50}))["length"] == 50
        assert (await c.request("fs.read", {"path": "ok", "offset": 60, "length": 10**9}))["eof"]


async def test_root_setting_moves_the_root(isolated_env: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-root"
    async with _agent_with(isolated_env, f'root = "{other}"') as (_, client):
        await client.request("fs.write", {"path": "here.txt", "content": "x"})
    assert (other / "here.txt").read_text() == "x"
    assert not (tmp_path / "workspace" / "here.txt").exists()


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("max_read = 10", "plugins.fs.max_read: unknown setting (known: max_read_bytes, "),
        ('max_read_bytes = "4M"', "plugins.fs.max_read_bytes = '4M': expected int, got str"),
        ("max_write_bytes = 0", "plugins.fs.max_write_bytes = 0: expected int >= 1"),
        ("max_write_bytes = true", "max_write_bytes = True: expected int, got bool"),
        ("max_write_bytes = 1.5", "max_write_bytes = 1.5: expected int, got float"),
        ('root = "relative/dir"', "root must be an absolute path, not 'relative/dir'"),
        ("root = 5", "plugins.fs.root = 5: expected a path (a non-empty string), got 5"),
        ('root = ""', "plugins.fs.root = '': expected a path (a non-empty string)"),
    ],
)
async def test_bad_config_fails_on_load(isolated_env: Path, table: str, fragment: str) -> None:
    async with _agent_with(isolated_env, table) as (server, client):
        info = server.runtime.plugins.info("fs")
        assert info is not None and info.error is not None
        assert f"ConfigError: {isolated_env / 'config.toml'}: " in info.error
        assert fragment in info.error
        assert (await _error(client, "fs.read", {"path": "x"})).code == "unknown_type"


async def test_bad_config_is_fatal_with_strict(isolated_env: Path) -> None:
    _write_config(isolated_env, "bogus = 1")
    with pytest.raises(localagent.PluginError, match=r"'fs'.*plugins\.fs\.bogus: unknown setting"):
        async with Server.create(port=0, strict=True, options=["no:kv", "no:exec"]):
            pass


# -- ATTACKS: nothing outside the root is ever read, created, changed or deleted -----


ESCAPES = ["../x", "a/../../x", "..", "/etc/passwd", "/", "a/\x00b", "\x00", "./../x", "a/.."]


def _request_for(message_type: str, path: str) -> dict[str, Any]:
    if message_type == "fs.write":
        return {"path": path, "content": "pwned", "parents": True}
    return {"path": path}


@pytest.mark.parametrize("message_type", MESSAGES)
@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.attack
async def test_attack_lexical_escapes_are_refused(
    client: Client, outside: Path, workspace: Path, message_type: str, path: str
) -> None:
    error = await _error(client, message_type, _request_for(message_type, path))
    assert error.code == "outside_workspace"
    assert _files(workspace) == []


@pytest.mark.parametrize("message_type", MESSAGES)
@pytest.mark.attack
async def test_attack_relative_path_to_the_outside_directory(
    client: Client, outside: Path, message_type: str
) -> None:
    # workspace/../outside/secret.txt is the real outside file.
    error = await _error(client, message_type, _request_for(message_type, "../outside/secret.txt"))
    assert error.code == "outside_workspace"


@pytest.mark.parametrize("message_type", ["fs.read", "fs.write", "fs.delete"])
@pytest.mark.parametrize("path", ["", ".", "./", "a/.."])
@pytest.mark.attack
async def test_attack_the_root_itself_is_refused(
    client: Client, workspace: Path, message_type: str, path: str
) -> None:
    (workspace / "a").mkdir()
    error = await _error(client, message_type, _request_for(message_type, path))
    assert error.code == "outside_workspace"
    assert _files(workspace) == ["a"]


@pytest.mark.attack
async def test_attack_symlink_to_a_file_outside(
    client: Client, outside: Path, workspace: Path
) -> None:
    link = workspace / "innocent.txt"
    link.symlink_to(outside / "secret.txt")
    for message_type in ("fs.read", "fs.stat"):
        error = await _error(client, message_type, {"path": "innocent.txt"})
        assert error.code == "outside_workspace"
        assert str(outside) not in error.message
    for write in (
        {"path": "innocent.txt", "content": "pwned"},
        {"path": "innocent.txt", "content": "pwned", "overwrite": False},
        {"path": "innocent.txt", "content": "cHduZWQ=", "encoding": "base64", "fsync": True},
    ):
        assert (await _error(client, "fs.write", write)).code == "outside_workspace"
    assert link.is_symlink()  # not replaced by a regular file either
    assert _files(workspace) == ["innocent.txt"]  # no temp file
    # Listing shows the link itself, not what it points to.
    listing = await client.request("fs.list", {})
    assert listing["entries"] == [{"name": "innocent.txt", "type": "symlink", "size": None}]
    # Delete removes the link only (documented): the outside file is untouched.
    assert await client.request("fs.delete", {"path": "innocent.txt"}) == {
        "path": "innocent.txt",
        "deleted": True,
    }
    assert _files(workspace) == []


@pytest.mark.attack
async def test_attack_relative_symlink_chain_leading_outside(
    client: Client, outside: Path, workspace: Path
) -> None:
    (workspace / "d").mkdir()
    (workspace / "d" / "hop1").symlink_to("../hop2")
    (workspace / "hop2").symlink_to("../outside/secret.txt")
    for message_type in ("fs.read", "fs.stat", "fs.write"):
        error = await _error(client, message_type, _request_for(message_type, "d/hop1"))
        assert error.code == "outside_workspace", message_type


@pytest.mark.attack
async def test_attack_dangling_symlink_would_create_a_file_outside(
    client: Client, outside: Path, workspace: Path, tmp_path: Path
) -> None:
    (workspace / "dangling").symlink_to(outside / "created.txt")
    (workspace / "dangling-dir").symlink_to(outside / "newdir")
    for data in (
        {"path": "dangling", "content": "pwned"},
        {"path": "dangling", "content": "pwned", "overwrite": False},
        {"path": "dangling-dir/x.txt", "content": "pwned", "parents": True},
        {"path": "dangling-dir/a/b/x.txt", "content": "pwned", "parents": True},
    ):
        assert (await _error(client, "fs.write", data)).code == "outside_workspace", data
    assert not (outside / "created.txt").exists()
    assert not (outside / "newdir").exists()


@pytest.mark.attack
async def test_attack_symlinked_directory_pointing_outside(
    client: Client, outside: Path, workspace: Path
) -> None:
    (workspace / "a").mkdir()
    (workspace / "escape").symlink_to(outside)
    (workspace / "a" / "nested").symlink_to("../../outside/sub")
    attempts = [
        ("fs.list", {"path": "escape"}),
        ("fs.list", {"path": "escape/sub"}),
        ("fs.list", {"path": "a/nested"}),
        ("fs.read", {"path": "escape/secret.txt"}),
        ("fs.read", {"path": "a/nested/deep.txt"}),
        ("fs.stat", {"path": "escape/secret.txt"}),
        ("fs.stat", {"path": "escape"}),
        ("fs.write", {"path": "escape/secret.txt", "content": "pwned"}),
        ("fs.write", {"path": "escape/new.txt", "content": "pwned"}),
        ("fs.write", {"path": "escape/sub/deep.txt", "content": "pwned"}),
        ("fs.write", {"path": "escape/x/y/z.txt", "content": "pwned", "parents": True}),
        ("fs.write", {"path": "a/nested/deep.txt", "content": "pwned"}),
        ("fs.delete", {"path": "escape/secret.txt"}),
        ("fs.delete", {"path": "escape/sub/deep.txt"}),
        ("fs.delete", {"path": "a/nested/deep.txt"}),
    ]
    for message_type, data in attempts:
        error = await _error(client, message_type, data)
        assert error.code == "outside_workspace", (message_type, data)
        assert str(outside) not in error.message


@pytest.mark.attack
async def test_attack_symlink_to_the_workspace_parent(
    client: Client, outside: Path, workspace: Path
) -> None:
    (workspace / "up").symlink_to("..")
    for message_type, path in [
        ("fs.list", "up"),
        ("fs.read", "up/outside/secret.txt"),
        ("fs.write", "up/outside/secret.txt"),
        ("fs.delete", "up/outside/secret.txt"),
        ("fs.list", "up/workspace/../outside"),  # refused for its '..' already
    ]:
        error = await _error(client, message_type, _request_for(message_type, path))
        assert error.code == "outside_workspace", path


@pytest.mark.attack
async def test_attack_symlink_loop_is_refused_cleanly(
    client: Client, outside: Path, workspace: Path
) -> None:
    (workspace / "loop-a").symlink_to("loop-b")
    (workspace / "loop-b").symlink_to("loop-a")
    for message_type in ("fs.read", "fs.write", "fs.stat"):
        error = await _error(client, message_type, _request_for(message_type, "loop-a"))
        assert error.code == "outside_workspace", message_type
        assert "loops" in error.message
    # Directories are opened with O_DIRECTORY | O_NOFOLLOW, which says ENOTDIR for a link.
    assert (await _error(client, "fs.list", {"path": "loop-a"})).code == "not_a_directory"
    await client.request("fs.delete", {"path": "loop-a"})  # the link itself
    assert _files(workspace) == ["loop-b"]


@pytest.mark.attack
async def test_attack_write_through_a_hard_link_leaves_the_other_name_alone(
    client: Client, outside: Path, workspace: Path
) -> None:
    # Hard links cannot be told apart from ordinary files (see docs/fs.md): reading one
    # reads the shared inode. Writing, however, renames a new file over the name, so
    # the outside name keeps its old content.
    os.link(outside / "secret.txt", workspace / "hard")
    assert (await client.request("fs.read", {"path": "hard"}))["content"] == SECRET.decode()
    await client.request("fs.write", {"path": "hard", "content": "replaced"})
    assert (workspace / "hard").read_text() == "replaced"
    await client.request("fs.delete", {"path": "hard"})


@pytest.mark.attack
async def test_attack_symlinks_inside_the_workspace_are_fine(
    client: Client, outside: Path, workspace: Path
) -> None:
    (workspace / "real").mkdir()
    (workspace / "real" / "f.txt").write_text("inside")
    (workspace / "alias").symlink_to("real")
    (workspace / "self").symlink_to(".")
    (workspace / "abs-alias").symlink_to(workspace / "real")  # absolute, but inside
    (workspace / "file-link").symlink_to("real/f.txt")
    assert (await client.request("fs.read", {"path": "alias/f.txt"}))["content"] == "inside"
    assert (await client.request("fs.read", {"path": "self/self/real/f.txt"}))["content"] == (
        "inside"
    )
    assert (await client.request("fs.read", {"path": "abs-alias/f.txt"}))["content"] == "inside"
    listing = await client.request("fs.list", {"path": "alias"})
    assert listing == {"path": "alias", "entries": [{"name": "f.txt", "type": "file", "size": 6}]}
    await client.request("fs.write", {"path": "alias/new.txt", "content": "n"})
    assert (workspace / "real" / "new.txt").read_text() == "n"
    await client.request("fs.write", {"path": "alias/d/e.txt", "content": "e", "parents": True})
    assert (workspace / "real" / "d" / "e.txt").read_text() == "e"
    # Writing to a link to a file inside writes the target and keeps the link.
    await client.request("fs.write", {"path": "file-link", "content": "updated"})
    assert (workspace / "file-link").is_symlink()
    assert (workspace / "real" / "f.txt").read_text() == "updated"
    error = await _error(client, "fs.write", {"path": "self", "content": "x"})
    assert error.code == "is_a_directory"
    await client.request("fs.delete", {"path": "alias/new.txt"})
    assert not (workspace / "real" / "new.txt").exists()


@attrs.frozen
class _Message:
    type: str
    data: Any
    id: str | int | None = 1


@attrs.frozen
class _Agent:
    workspace: Path

    def plugin_settings(self, name: str, settings_type: type[Any]) -> Any:
        return settings_type()  # an empty [plugins.fs] table


@pytest.fixture
def plugin(workspace: Path) -> fs_plugin.Plugin:
    """An ``fs`` plugin loaded directly, for the races that a real client cannot time."""
    workspace.mkdir()
    loaded = fs_plugin.Plugin()
    loaded.on_load(_Agent(workspace))  # type: ignore[arg-type]
    return loaded


@pytest.mark.attack
def test_attack_race_link_swapped_in_after_the_check_is_not_followed(
    plugin: fs_plugin.Plugin, outside: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a swap between realpath and open: the checked path is now a link.
    (workspace / "swapped").symlink_to(outside / "secret.txt")
    monkeypatch.setattr(_workspace, "resolve", lambda root, parts: str(workspace / "swapped"))
    with pytest.raises(localagent.MessageError) as caught:
        plugin.read_file(_Message("fs.read", ReadData("swapped")), None)  # type: ignore[arg-type]
    assert caught.value.code == "outside_workspace"  # O_NOFOLLOW: ELOOP


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.attack
def test_attack_race_directory_swapped_after_the_check_is_caught_after_open(
    plugin: fs_plugin.Plugin, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a parent directory swapped for a link between realpath and open: the
    # opened file is outside. The check of /proc/self/fd/N after opening refuses it.
    monkeypatch.setattr(_workspace, "resolve", lambda root, parts: str(outside / "secret.txt"))
    with pytest.raises(localagent.MessageError) as caught:
        plugin.read_file(_Message("fs.read", ReadData("x")), None)  # type: ignore[arg-type]
    assert caught.value.code == "outside_workspace"
    monkeypatch.setattr(
        _workspace, "resolve_parent", lambda root, parts: (str(outside), "secret.txt")
    )
    for handler, data in [
        (plugin.write_file, WriteData("x", "pwned")),
        (plugin.delete_path, DeleteData("x")),
    ]:
        with pytest.raises(localagent.MessageError) as caught:
            handler(_Message("fs", data))  # type: ignore[arg-type]
        assert caught.value.code == "outside_workspace"
