"""The built-in ``exec`` plugin, driven through a real agent with real subprocesses.

Programs that must sleep, wait or print a lot are this interpreter
(``sys.executable``, allow-listed by its absolute path) with ``-c`` code. The
``test_attack_*`` tests are what a hostile client would try.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from localagent import Client, ReplyError, Server
from localagent.builtin.exec import DEFAULT_PASS_ENV

PYTHON = sys.executable
ECHO = shutil.which("echo")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or ECHO is None,
    reason="the exec tests inspect /proc and use coreutils",
)

#: Writes "<its pid> <child pid>" to argv[2], then sleeps; the child it starts
#: would write the marker argv[1] after a while if it were still alive.
LEADER = """
import os, subprocess, sys, time
marker, pids = sys.argv[1], sys.argv[2]
code = "import pathlib, sys, time; time.sleep(5); pathlib.Path(sys.argv[1]).write_text('x')"
child = subprocess.Popen([sys.executable, "-c", code, marker])
with open(pids + ".tmp", "w") as out:
    out.write(f"{os.getpid()} {child.pid}")
os.rename(pids + ".tmp", pids)
print("started", flush=True)
time.sleep(600)
"""

#: Creates argv[1], then waits (60 s at most) until argv[2] exists.
WAITER = """
import pathlib, sys, time
started, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
started.write_text("x")
deadline = time.monotonic() + 60
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("released" if release.exists() else "gave up")
"""


# -- helpers -------------------------------------------------------------------------


def configure(config_dir: Path, **table: Any) -> None:
    """Write ``[plugins.exec]`` with ``table`` to the test's config file."""
    config_dir.mkdir(parents=True, exist_ok=True)
    document = {"plugins": {"exec": table}} if table else {}
    (config_dir / "config.toml").write_text(tomlkit.dumps(document), encoding="utf-8")


@asynccontextmanager
async def serving(config_dir: Path, **table: Any) -> AsyncIterator[Server]:
    """A started agent whose ``[plugins.exec]`` is ``table`` (no table if empty)."""
    configure(config_dir, **table)
    async with Server.create(port=0) as server:
        info = server.runtime.plugins.info("exec")
        assert info is not None and info.error is None, info
        yield server


def connect(server: Server) -> Client:
    return Client(server.url, server.token_file.get())


@asynccontextmanager
async def exec_client(config_dir: Path, **table: Any) -> AsyncIterator[Client]:
    async with serving(config_dir, **table) as server, connect(server) as client:
        yield client


async def run(client: Client, *argv: Any, **options: Any) -> Any:
    return await client.request("exec", {"argv": list(argv), **options}, timeout=120)


async def refused(client: Client, data: Any) -> ReplyError:
    with pytest.raises(ReplyError) as caught:
        await client.request("exec", data, timeout=120)
    return caught.value


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"still waiting, after {timeout} s, for {what}")
        await asyncio.sleep(0.02)


def _stat(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name: state, ppid, pgrp, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def pwned_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if "pwned" in path.name]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The agent's workspace (``LOCALAGENT_WORKSPACE``), created early to plant files in."""
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def same_path(first: str | Path, second: str | Path) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


# -- running programs ----------------------------------------------------------------


async def test_output_and_exit_codes(isolated_env: Path) -> None:
    async with exec_client(isolated_env, allow=["echo", PYTHON]) as client:
        result = await run(client, "echo", "hello", "world")
        assert result["exit_code"] == 0
        assert result["stdout"] == "hello world\n"
        assert result["stderr"] == ""
        assert result["stdout_truncated"] is result["stderr_truncated"] is False
        assert result["timed_out"] is False
        assert isinstance(result["duration"], float) and result["duration"] >= 0

        code = "import sys; print('out'); sys.stderr.write('err'); sys.exit(3)"
        result = await run(client, PYTHON, "-c", code)
        assert (result["exit_code"], result["stdout"], result["stderr"]) == (3, "out\n", "err")

        code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
        assert (await run(client, PYTHON, "-c", code))["exit_code"] == -15


async def test_encoding_text_replaces_invalid_utf8_and_base64_is_exact(isolated_env: Path) -> None:
    code = "import sys; sys.stdout.buffer.write(b'caf\\xc3\\xa9 \\xff\\x00')"
    async with exec_client(isolated_env, allow=[PYTHON]) as client:
        text = await run(client, PYTHON, "-c", code)
        assert text["stdout"] == "café \ufffd\x00"
        raw = await run(client, PYTHON, "-c", code, encoding="base64")
        assert base64.b64decode(raw["stdout"]) == b"caf\xc3\xa9 \xff\x00"
        assert raw["stderr"] == ""


async def test_stdin_is_fed_or_empty(isolated_env: Path) -> None:
    upper = "import sys; print(sys.stdin.read().upper(), end='')"
    async with exec_client(isolated_env, allow=[PYTHON]) as client:
        assert (await run(client, PYTHON, "-c", upper, stdin="abc\né"))["stdout"] == "ABC\nÉ"
        assert (await run(client, PYTHON, "-c", "import sys; print(repr(sys.stdin.read()))"))[
            "stdout"
        ] == "''\n"
        # A program that never reads its stdin does not hang the request.
        result = await run(client, PYTHON, "-c", "pass", stdin="x" * 500_000)
        assert (result["exit_code"], result["timed_out"]) == (0, False)


def _environment(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines())


async def test_environment_is_filtered(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXEC_TEST_SECRET", "hunter2")
    async with exec_client(isolated_env, allow=["env"], env={"EXTRA": "1"}) as client:
        seen = _environment((await run(client, "env"))["stdout"])
    expected = {name for name in DEFAULT_PASS_ENV if name in os.environ} | {"EXTRA"}
    assert set(seen) == expected
    assert "EXEC_TEST_SECRET" not in seen
    assert seen["EXTRA"] == "1"
    assert seen.get("PATH") == os.environ.get("PATH")


async def test_pass_env_and_env_are_configurable(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXEC_TEST_VISIBLE", "yes")
    monkeypatch.setenv("EXEC_TEST_OVERRIDDEN", "agent")
    table = {
        "allow": ["env"],
        "pass_env": ["EXEC_TEST_VISIBLE", "EXEC_TEST_OVERRIDDEN", "EXEC_TEST_UNSET"],
        "env": {"EXEC_TEST_OVERRIDDEN": "config"},
    }
    async with exec_client(isolated_env, **table) as client:
        seen = _environment((await run(client, "env"))["stdout"])
    assert seen == {"EXEC_TEST_VISIBLE": "yes", "EXEC_TEST_OVERRIDDEN": "config"}


async def test_runs_in_the_workspace(isolated_env: Path, workspace: Path) -> None:
    async with exec_client(isolated_env, allow=[PYTHON]) as client:
        result = await run(client, PYTHON, "-c", "import os; print(os.getcwd())")
    assert same_path(result["stdout"].strip(), workspace)


async def test_timeout_kills_the_whole_process_group(isolated_env: Path, tmp_path: Path) -> None:
    marker, pids = tmp_path / "marker", tmp_path / "pids"
    async with exec_client(isolated_env, allow=[PYTHON], timeout=60) as client:
        result = await run(client, PYTHON, "-c", LEADER, str(marker), str(pids), timeout=5)
    assert result["timed_out"] is True
    assert result["exit_code"] == -9
    assert result["stdout"] == "started\n"
    leader, child = map(int, pids.read_text().split())
    await eventually(lambda: not alive(leader) and not alive(child), "the processes to die")
    assert group_members(leader) == []
    assert not marker.exists()


async def test_a_request_may_shorten_the_timeout_but_not_extend_it(isolated_env: Path) -> None:
    async with exec_client(isolated_env, allow=[PYTHON], timeout=10) as client:
        error = await refused(client, {"argv": [PYTHON, "-c", "pass"], "timeout": 10.5})
        assert error.code == "bad_request"
        assert error.details == {"max_timeout": 10.0}
        for bad in (0, -1, "5", True):
            error = await refused(client, {"argv": [PYTHON, "-c", "pass"], "timeout": bad})
            assert error.code == "invalid_data"
            assert error.details == {"path": "$.timeout"}
        assert (await run(client, PYTHON, "-c", "pass", timeout=10))["exit_code"] == 0


async def test_output_is_capped_and_drained(isolated_env: Path) -> None:
    code = "import sys; sys.stdout.buffer.write(b'x' * 5_000_000); sys.stderr.write('small')"
    async with exec_client(isolated_env, allow=[PYTHON]) as client:
        result = await run(client, PYTHON, "-c", code)
    # The program could finish (exit 0, no timeout) only because the pipe kept draining.
    assert (result["exit_code"], result["timed_out"]) == (0, False)
    assert result["stdout"] == "x" * (1 << 20)
    assert result["stdout_truncated"] is True
    assert (result["stderr"], result["stderr_truncated"]) == ("small", False)


async def test_max_output_applies_to_each_stream(isolated_env: Path) -> None:
    code = "import sys; print('o' * 50); sys.stderr.write('e' * 8)"
    async with exec_client(isolated_env, allow=[PYTHON], max_output=10) as client:
        result = await run(client, PYTHON, "-c", code)
    assert (result["stdout"], result["stdout_truncated"]) == ("o" * 10, True)
    assert (result["stderr"], result["stderr_truncated"]) == ("e" * 8, False)


# -- streaming -----------------------------------------------------------------------

#: Prints, then waits (60 s at most) for argv[1] to exist: the client creates it
#: when the first chunk arrives, so it sees "go seen" only if streaming is live.
STREAMER = """
import pathlib, sys, time
go = pathlib.Path(sys.argv[1])
print("ready", flush=True)
sys.stderr.write("err\\n")
sys.stderr.flush()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("go seen" if go.exists() else "gave up", flush=True)
"""


def _chunks(events: list[Any], stream: str) -> str:
    return "".join(event["data"]["chunk"] for event in events if event["data"]["stream"] == stream)


async def test_streaming_sends_chunks_while_running_then_the_summary(
    isolated_env: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    events: list[Any] = []

    def on_event(event: Any) -> None:
        events.append(event)
        go.touch()

    async with exec_client(isolated_env, allow=[PYTHON]) as client:
        result = await client.request(
            "exec",
            {"argv": [PYTHON, "-c", STREAMER, str(go)], "stream": True},
            on_event=on_event,
            timeout=120,
        )
    assert all(event["type"] == "exec.output" for event in events)
    assert all(isinstance(event["id"], int) for event in events)
    assert _chunks(events, "stdout") == "ready\ngo seen\n"
    assert _chunks(events, "stderr") == "err\n"
    assert "stdout" not in result and "stderr" not in result
    assert result["exit_code"] == 0
    assert result["timed_out"] is result["stdout_truncated"] is False


async def test_streaming_respects_the_cap_and_base64(isolated_env: Path) -> None:
    code = (
        "import sys\n"
        "for _ in range(100):\n"
        "    sys.stdout.buffer.write(b'\\xff' * 100); sys.stdout.flush()\n"
    )
    events: list[Any] = []
    async with exec_client(isolated_env, allow=[PYTHON], max_output=250) as client:
        result = await client.request(
            "exec",
            {"argv": [PYTHON, "-c", code], "stream": True, "encoding": "base64"},
            on_event=events.append,
            timeout=120,
        )
    data = b"".join(base64.b64decode(event["data"]["chunk"]) for event in events)
    assert data == b"\xff" * 250
    assert result["stdout_truncated"] is True
    assert result["exit_code"] == 0


# -- concurrency ---------------------------------------------------------------------


def _waiter(tmp_path: Path, name: str) -> tuple[list[str], Path, Path]:
    started, release = tmp_path / f"started-{name}", tmp_path / f"release-{name}"
    return [PYTHON, "-c", WAITER, str(started), str(release)], started, release


async def test_max_concurrent_makes_requests_wait(isolated_env: Path, tmp_path: Path) -> None:
    first, first_started, first_release = _waiter(tmp_path, "1")
    second, second_started, second_release = _waiter(tmp_path, "2")
    table = {"allow": [PYTHON], "max_concurrent": 1, "max_per_connection": 4}
    async with serving(isolated_env, **table) as server, connect(server) as a, connect(server) as b:
        one = asyncio.create_task(run(a, *first))
        await eventually(first_started.exists, "the first program to start")
        two = asyncio.create_task(run(b, *second))
        assert await b.request("ping") == {"pong": True}  # the agent has read the request
        await asyncio.sleep(0.3)
        assert not second_started.exists(), "the second program started over the limit"
        assert not two.done()
        first_release.touch()
        assert (await one)["stdout"] == "released\n"
        await eventually(second_started.exists, "the waiting program to start")
        second_release.touch()
        assert (await two)["stdout"] == "released\n"


async def test_max_per_connection_limits_each_connection(
    isolated_env: Path, tmp_path: Path
) -> None:
    first, first_started, first_release = _waiter(tmp_path, "1")
    second, second_started, second_release = _waiter(tmp_path, "2")
    other, other_started, other_release = _waiter(tmp_path, "3")
    table = {"allow": [PYTHON], "max_concurrent": 4, "max_per_connection": 1}
    async with serving(isolated_env, **table) as server, connect(server) as a, connect(server) as b:
        one = asyncio.create_task(run(a, *first))
        await eventually(first_started.exists, "the first program to start")
        two = asyncio.create_task(run(a, *second))
        three = asyncio.create_task(run(b, *other))
        # Another connection is not held up by this one's limit.
        await eventually(other_started.exists, "the other connection's program to start")
        assert not second_started.exists(), "a second program started on the same connection"
        first_release.touch()
        assert (await one)["stdout"] == "released\n"
        await eventually(second_started.exists, "the waiting program to start")
        second_release.touch()
        other_release.touch()
        assert (await two)["stdout"] == (await three)["stdout"] == "released\n"


async def test_closing_the_connection_kills_the_process_group(
    isolated_env: Path, tmp_path: Path
) -> None:
    marker, pids = tmp_path / "marker", tmp_path / "pids"
    async with serving(isolated_env, allow=[PYTHON, "echo"]) as server:
        client = connect(server)
        await client.open()
        request = asyncio.create_task(run(client, PYTHON, "-c", LEADER, str(marker), str(pids)))
        await eventually(pids.exists, "the program to start")
        leader, child = map(int, pids.read_text().split())
        assert alive(leader) and alive(child)
        await client.aclose()
        with pytest.raises(ConnectionError):
            await request
        await eventually(lambda: not alive(leader) and not alive(child), "the processes to die")
        assert group_members(leader) == []
        assert not marker.exists()
        async with connect(server) as again:  # the agent keeps serving
            assert (await run(again, "echo", "ok"))["stdout"] == "ok\n"


async def test_agent_shutdown_kills_running_programs(isolated_env: Path, tmp_path: Path) -> None:
    marker, pids = tmp_path / "marker", tmp_path / "pids"
    configure(isolated_env, allow=[PYTHON])
    async with Server.create(port=0, shutdown_grace=0.1) as server:
        client = connect(server)
        await client.open()
        request = asyncio.create_task(run(client, PYTHON, "-c", LEADER, str(marker), str(pids)))
        await eventually(pids.exists, "the program to start")
    leader, child = map(int, pids.read_text().split())
    await eventually(lambda: not alive(leader) and not alive(child), "the processes to die")
    assert group_members(leader) == []
    await asyncio.gather(request, return_exceptions=True)
    await client.aclose()


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"allowed": ["echo"]}, "plugins.exec.allowed: unknown setting (known: allow, timeout"),
        ({"allow": "echo"}, "plugins.exec.allow = 'echo': expected array, got str"),
        ({"allow": ["echo", 1]}, "plugins.exec.allow[1] = ['echo', 1]: expected str, got int"),
        ({"allow": ["bin/echo"]}, "'bin/echo' must be a program name or an absolute path"),
        ({"allow": [""]}, "allow: '' must be a non-empty string"),
        ({"timeout": "30"}, "plugins.exec.timeout = '30': expected float, got str"),
        ({"timeout": 0}, "timeout must be a positive number of seconds, not 0"),
        ({"timeout": float("inf")}, "timeout must be a positive number of seconds, not inf"),
        ({"max_output": -1}, "plugins.exec.max_output = -1: expected int >= 0"),
        ({"max_output": 1.5}, "plugins.exec.max_output = 1.5: expected int, got float"),
        ({"max_concurrent": 0}, "plugins.exec.max_concurrent = 0: expected int >= 1"),
        ({"max_per_connection": True}, "max_per_connection = True: expected int, got bool"),
        ({"env": {"A": 1}}, "plugins.exec.env[...] = {'A': 1}: expected str, got int"),
        ({"env": {"A=B": "1"}}, "env: 'A=B' is not a variable name"),
        ({"env": ["A=1"]}, "plugins.exec.env = ['A=1']: expected table, got array"),
        ({"pass_env": "PATH"}, "plugins.exec.pass_env = 'PATH': expected array, got str"),
    ],
)
async def test_invalid_config_disables_the_plugin_with_a_clear_error(
    isolated_env: Path, table: dict[str, Any], complaint: str
) -> None:
    configure(isolated_env, **table)
    async with Server.create(port=0) as server:
        info = server.runtime.plugins.info("exec")
        assert info is not None and info.error is not None
        assert complaint in info.error
        async with connect(server) as client:
            assert (await refused(client, {"argv": ["echo"]})).code == "unknown_type"


async def test_an_allowed_program_that_is_missing_is_refused(
    isolated_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "missing")
    async with exec_client(isolated_env, allow=["no-such-program-xyz", missing]) as client:
        for name in ("no-such-program-xyz", missing):
            error = await refused(client, {"argv": [name]})
            assert error.code == "not_allowed"
            assert "not found" in error.message
            assert name in caplog.text


async def test_spawn_failure_is_a_coded_error(isolated_env: Path, tmp_path: Path) -> None:
    program = tmp_path / "not-a-program"
    program.write_bytes(b"\x00\x01 not an executable format")
    program.chmod(0o755)
    async with exec_client(isolated_env, allow=[str(program)]) as client:
        error = await refused(client, {"argv": [str(program)]})
        assert error.code == "spawn_failed"
        assert "Traceback" not in error.message
        program.unlink()
        assert (await refused(client, {"argv": [str(program)]})).code == "spawn_failed"


# -- attacks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        ["echo", "hi"],
        "echo hi",
        {"argv": "echo hi"},
        {"argv": {"0": "echo"}},
        {"argv": 7},
        {"argv": True},
        {"argv": []},
        {"argv": ["echo", 1]},
        {"argv": ["echo", None]},
        {"argv": [["echo"]]},
        {"argv": [None]},
        {"argv": ["echo"], "shell": True},
        {"argv": ["echo"], "cwd": "/"},
        {"argv": ["echo"], "env": {"LD_PRELOAD": "/tmp/x.so"}},
        {"argv": ["echo"], "stream": "yes"},
        {"argv": ["echo"], "stdin": 5},
        {"argv": ["echo"], "encoding": "latin-1"},
    ],
)
@pytest.mark.attack
async def test_attack_malformed_requests_are_invalid_data(isolated_env: Path, data: Any) -> None:
    """The schema refuses them before the plugin runs, naming the field."""
    async with exec_client(isolated_env, allow=["echo"]) as client:
        error = await refused(client, data)
    assert error.code == "invalid_data"
    assert error.details["path"].startswith("$")
    assert error.message.startswith(f"exec: invalid data at {error.details['path']}: ")
    assert "Traceback" not in error.message


@pytest.mark.attack
async def test_attack_nul_bytes_in_argv_are_bad_requests(isolated_env: Path) -> None:
    """What the schema cannot say, the plugin checks: bad_request, naming the field."""
    async with exec_client(isolated_env, allow=["echo"]) as client:
        error = await refused(client, {"argv": ["echo", "a\x00b"]})
    assert error.code == "bad_request"
    assert "'argv'" in error.message


@pytest.mark.parametrize(
    "name",
    [
        "./echo",
        "../echo",
        "workspace/echo",
        ECHO,
        os.path.realpath(ECHO or "echo"),
        f"{os.path.dirname(ECHO or '')}/../bin/echo",
        "echo ",
        " echo",
        "echo\n",
        "ECHO",
        "",
        "echo;",
        "sh",
    ],
)
@pytest.mark.attack
async def test_attack_argv0_must_equal_an_allow_list_entry(
    isolated_env: Path, workspace: Path, name: str
) -> None:
    (workspace / "echo").symlink_to(ECHO or "echo")
    async with exec_client(isolated_env, allow=["echo"]) as client:
        error = await refused(client, {"argv": [name, "hi"]})
        assert error.code == "not_allowed"
        assert (await run(client, "echo", "hi"))["stdout"] == "hi\n"


def other_names_of_python(workspace: Path) -> list[str]:
    """Paths that lead to ``PYTHON`` without being the string ``PYTHON``."""
    (workspace / "python").symlink_to(PYTHON)
    directory, base = os.path.split(PYTHON)
    names = [base, str(workspace / "python"), "./python", PYTHON + "/"]
    names += [f"{directory}/./{base}", f"{directory}//{base}", f"{directory}/../bin/{base}"]
    if os.path.realpath(PYTHON) != PYTHON:
        names.append(os.path.realpath(PYTHON))
    return names


@pytest.mark.attack
async def test_attack_absolute_entries_match_only_themselves(
    isolated_env: Path, workspace: Path
) -> None:
    names = other_names_of_python(workspace)
    async with exec_client(isolated_env, allow=[PYTHON]) as client:
        for name in names:
            error = await refused(client, {"argv": [name, "-c", "pass"]})
            assert error.code == "not_allowed", name
        assert (await run(client, PYTHON, "-c", "print(1)"))["stdout"] == "1\n"


@pytest.mark.attack
async def test_attack_a_program_planted_in_the_workspace_is_never_run(
    isolated_env: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = workspace / "echo"
    planted.write_text("#!/bin/sh\ntouch pwned\n", encoding="utf-8")
    planted.chmod(0o755)
    # Relative PATH entries ("." and the empty one) would find the planted echo.
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("PATH", f".::{os.environ['PATH']}")
    async with exec_client(isolated_env, allow=["echo"]) as client:
        result = await run(client, "echo", "hi")
    assert result["stdout"] == "hi\n"
    assert pwned_files(workspace) == []


SHELL_TRICKS = [
    "; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "| touch pwned",
    "&& touch pwned",
    "|| touch pwned",
    "> pwned",
    "\ntouch pwned",
    "${IFS}touch${IFS}pwned",
    "*",
    "~",
]


@pytest.mark.attack
async def test_attack_shell_metacharacters_are_passed_literally(
    isolated_env: Path, tmp_path: Path, workspace: Path
) -> None:
    (workspace / "a-file").touch()  # something a glob would expand to
    show = "import json, sys; print(json.dumps(sys.argv[1:]))"
    async with exec_client(isolated_env, allow=["echo", PYTHON]) as client:
        echoed = await run(client, "echo", *SHELL_TRICKS)
        shown = await run(client, PYTHON, "-c", show, *SHELL_TRICKS)
        fed = await run(client, PYTHON, "-c", "import sys; sys.stdin.read()", stdin="touch pwned")
    assert echoed["stdout"] == " ".join(SHELL_TRICKS) + "\n"
    assert json.loads(shown["stdout"]) == SHELL_TRICKS
    assert fed["exit_code"] == 0
    assert pwned_files(tmp_path) == []


@pytest.mark.parametrize("table", [{}, {"allow": []}, {"timeout": 5}])
@pytest.mark.attack
async def test_attack_an_empty_allow_list_refuses_everything(
    isolated_env: Path, table: dict[str, Any]
) -> None:
    async with exec_client(isolated_env, **table) as client:
        for argv in (["echo", "hi"], [ECHO, "hi"], [PYTHON, "-c", "pass"], ["sh"], ["/bin/sh"]):
            assert (await refused(client, {"argv": argv})).code == "not_allowed"
