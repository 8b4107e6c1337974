"""``localagent mcp``'s stdio transport, byte for byte: a real bridge subprocess fed raw
lines (from a pipe, a file, ``/dev/null``, a pty), a real agent behind it.

The official client SDK cannot send a malformed line or close stdin mid-call, and it
forgives junk on stdout; these tests write and read the JSON-RPC lines themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import socket
import subprocess
import sys
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from localagent import Server

PYTHON = sys.executable
BRIDGE = [PYTHON, "-m", "localagent", "mcp", "--poll", "0"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test_stdio", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def _call(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _lines(*messages: dict[str, Any] | bytes) -> bytes:
    return b"".join(
        message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        for message in messages
    )


@pytest.fixture
def env(agent: Server, localagent_config_dir: Path) -> dict[str, str]:
    """The bridge's environment: the agent's URL and token, a private config directory."""
    return {
        **os.environ,
        "LOCALAGENT_URL": agent.url,
        "LOCALAGENT_TOKEN": agent.token_file.get(),
        "LOCALAGENT_CONFIG_DIR": str(localagent_config_dir),
        "LOCALAGENT_LOAD_PLUGINS": "",
    }


class RawBridge:
    """A bridge subprocess with its stdin and stdout as pipes, spoken to line by line."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        stdout: asyncio.StreamReader | None = None,
        stdin: asyncio.StreamWriter | None = None,
    ) -> None:
        self.process = process
        self._stdin = stdin or process.stdin
        assert (stdout or process.stdout) is not None
        self.stdout = stdout or process.stdout

    @property
    def stdin(self) -> asyncio.StreamWriter:
        assert self._stdin is not None, "stdin is no pipe"
        return self._stdin

    async def send(self, *messages: dict[str, Any] | bytes) -> None:
        self.stdin.write(_lines(*messages))
        await self.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        """The next line on stdout; it must be one JSON-RPC message."""
        with anyio.fail_after(30):
            line = await self.stdout.readline()
        assert line.endswith(b"\n"), f"stdout ended: {line!r}"
        message: dict[str, Any] = json.loads(line)
        types.jsonrpc_message_adapter.validate_python(message)
        return message

    async def reply(self, request_id: int) -> dict[str, Any]:
        """The response to ``request_id``, past the notifications sent before it."""
        while "id" not in (message := await self.receive()):
            assert message["method"] == "notifications/progress", message
        assert message["id"] == request_id, message
        return message

    async def initialize(self) -> None:
        await self.send(INITIALIZE)
        reply = await self.receive()
        assert reply["id"] == 0 and "serverInfo" in reply["result"]
        await self.send(INITIALIZED)


@asynccontextmanager
async def raw_bridge(
    env: dict[str, str], command: list[str] = BRIDGE, **kwargs: Any
) -> AsyncIterator[RawBridge]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        **kwargs,
    )
    try:
        yield RawBridge(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _exit_code(process: asyncio.subprocess.Process) -> int:
    with anyio.fail_after(30):
        return await process.wait()


async def test_a_malformed_line_gets_a_parse_error_and_the_bridge_keeps_answering(
    env: dict[str, str],
) -> None:
    async with raw_bridge(env) as bridge:
        await bridge.initialize()
        await bridge.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
        error = await bridge.receive()
        assert error["id"] is None
        assert error["error"]["code"] == -32700
        await bridge.send(_call(2, "echo", {"after": "the bad line"}))
        reply = await bridge.receive()
        assert reply["id"] == 2
        assert reply["result"]["structuredContent"] == {"data": {"after": "the bad line"}}


async def test_json_that_is_no_jsonrpc_message_gets_invalid_request(
    env: dict[str, str],
) -> None:
    async with raw_bridge(env) as bridge:
        await bridge.initialize()
        await bridge.send({"id": 5, "hello": "no method, no jsonrpc"}, b"[1, 2, 3]\n")
        first, second = await bridge.receive(), await bridge.receive()
        assert (first["id"], first["error"]["code"]) == (5, -32600)
        assert (second["id"], second["error"]["code"]) == (None, -32600)
        await bridge.send({"jsonrpc": "2.0", "id": 6, "method": "ping"})
        assert await bridge.receive() == {"jsonrpc": "2.0", "id": 6, "result": {}}


async def test_a_line_without_end_gets_an_error_and_the_bridge_stays_small(
    env: dict[str, str],
) -> None:
    """A host that sends a line far over --max-line-bytes: one -32600, the bytes are not
    kept (its resident memory stays flat), and the next line is answered."""
    command = [*BRIDGE, "--max-line-bytes", "65536"]
    async with raw_bridge(env, command) as bridge:
        await bridge.initialize()
        await bridge.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "')
        before = _rss_kib(bridge.process.pid)
        for _ in range(64):  # 64 MiB of one line
            await bridge.send(b"z" * (1 << 20))
        error = await bridge.receive()
        assert (error["id"], error["error"]["code"]) == (None, -32600)
        assert "longer than 65536 bytes" in error["error"]["message"]
        assert _rss_kib(bridge.process.pid) - before < 32 * 1024  # far below the 64 MiB sent
        await bridge.send(b'"}}\n', {"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert await bridge.receive() == {"jsonrpc": "2.0", "id": 2, "result": {}}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_requests_from_a_regular_file_are_all_answered_before_it_exits(
    env: dict[str, str], tmp_path: Path
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(
        _lines(
            INITIALIZE,
            INITIALIZED,
            _call(1, "echo", {"n": 1}),
            b"not json\n",
            _call(2, "kv.set", {"key": "k", "value": "from a file"}),
            _call(3, "kv.get", {"key": "k"}),
        )
    )
    with requests.open("rb") as stdin:
        process = await asyncio.create_subprocess_exec(
            *BRIDGE, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        with anyio.fail_after(30):
            stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    replies = {message["id"]: message for message in map(json.loads, stdout.splitlines())}
    assert set(replies) == {0, 1, None, 2, 3}  # at the end of the file, calls still answered
    assert replies[None]["error"]["code"] == -32700
    assert replies[1]["result"]["structuredContent"] == {"data": {"n": 1}}
    assert replies[3]["result"]["structuredContent"] == {"found": True, "value": "from a file"}


@pytest.mark.parametrize("stdin", ["pipe", "file"])
async def test_a_thousand_requests_at_once_are_all_answered(
    env: dict[str, str], tmp_path: Path, stdin: str
) -> None:
    """More than the bridge queues before it stops reading stdin, and reads on after."""
    pings = [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(1, 1001)]
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(_lines(INITIALIZE, INITIALIZED, *pings))
    with requests.open("rb") as file:
        process = await asyncio.create_subprocess_exec(
            *BRIDGE,
            stdin=subprocess.PIPE if stdin == "pipe" else file,
            stdout=subprocess.PIPE,
            env=env,
        )
        with anyio.fail_after(60):
            stdout, _ = await process.communicate(
                requests.read_bytes() if stdin == "pipe" else None
            )
    assert process.returncode == 0
    replies = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(reply["id"] for reply in replies) == list(range(1001))  # each once
    assert all(reply["result"] == {} for reply in replies[1:])


async def test_stdin_from_dev_null_ends_cleanly(env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *BRIDGE,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    with anyio.fail_after(30):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout == b""
    assert b"Traceback" not in stderr


async def test_started_with_fds_0_to_2_closed_it_ends_cleanly(env: dict[str, str]) -> None:
    # The shell closes them before exec; libuv aborts a process whose fds 0-2 are closed.
    command = ["sh", "-c", 'exec "$@" 0<&- 1>&- 2>&-', "sh", *BRIDGE]
    process = await asyncio.create_subprocess_exec(*command, env=env)
    assert await _exit_code(process) == 0


async def test_started_with_stderr_closed_it_serves(env: dict[str, str]) -> None:
    command = ["sh", "-c", 'exec "$@" 2>&-', "sh", *BRIDGE]
    async with raw_bridge(env, command) as bridge:
        await bridge.initialize()
        await bridge.send(_call(1, "echo", {"stderr": "closed"}))
        assert (await bridge.receive())["result"]["structuredContent"] == {
            "data": {"stderr": "closed"}
        }
        bridge.stdin.close()
        assert await _exit_code(bridge.process) == 0


# serve_stdio as a library, on asyncio's own loop (the transport on both loops).
SERVE_ON_ASYNCIO = """
import asyncio
from localagent_mcp import serve_stdio
async def main():
    assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
    await serve_stdio(poll=0)
asyncio.run(main())
"""


async def test_serve_stdio_on_asyncios_own_loop(env: dict[str, str]) -> None:
    async with raw_bridge(env, [PYTHON, "-c", SERVE_ON_ASYNCIO]) as bridge:
        await bridge.initialize()
        await bridge.send(b"{oops\n", _call(1, "echo", {"loop": "asyncio"}))
        assert (await bridge.receive())["error"]["code"] == -32700
        assert (await bridge.reply(1))["result"]["structuredContent"] == {
            "data": {"loop": "asyncio"}
        }
        bridge.stdin.close()
        assert await _exit_code(bridge.process) == 0


# A library that prints while the bridge serves: each tool result is preceded by a print
# and a raw write to fd 1, the protocol's descriptor at start.
NOISY_BRIDGE = """
import os, sys
import localagent_mcp._server as server
real = server.success_result
def noisy(result):
    print("stray print from a library", flush=True)
    os.write(1, b"stray write to fd 1\\n")
    return real(result)
server.success_result = noisy
sys.argv = ["localagent", "mcp", "--poll", "0"]
from localagent.cli import main
main()
"""


async def test_a_print_to_stdout_does_not_corrupt_the_stream(env: dict[str, str]) -> None:
    command = [PYTHON, "-c", NOISY_BRIDGE]
    async with raw_bridge(env, command, stderr=subprocess.PIPE) as bridge:
        await bridge.initialize()
        for n in range(3):
            await bridge.send(_call(n + 1, "echo", {"n": n}))
            reply = await bridge.receive()  # a JSON-RPC message, not the stray text
            assert reply["result"]["structuredContent"] == {"data": {"n": n}}
        bridge.stdin.close()
        assert await _exit_code(bridge.process) == 0
        assert await bridge.stdout.read() == b""
        assert bridge.process.stderr is not None
        stderr = await bridge.process.stderr.read()
    assert stderr.count(b"stray print from a library\n") == 3  # went to stderr
    assert stderr.count(b"stray write to fd 1\n") == 3


# A program that says it started (streamed to the host as progress), then waits for the
# test to let it finish.
WAIT_FOR_RELEASE = """
import os, pathlib, sys, time
release = pathlib.Path(sys.argv[1])
release.with_suffix(".pid").write_text(str(os.getpid()))
print("started", flush=True)
while not release.exists():
    time.sleep(0.01)
print("released")
"""


async def _start_waiting_program(bridge: RawBridge, release: Path) -> None:
    """Call exec with :data:`WAIT_FOR_RELEASE` as request 1; return once it runs."""
    call = _call(1, "exec", {"argv": [PYTHON, "-c", WAIT_FOR_RELEASE, str(release)]})
    call["params"]["arguments"]["stream"] = True
    call["params"]["_meta"] = {"progressToken": "call-1"}
    await bridge.send(call)
    progress = await bridge.receive()
    assert progress["method"] == "notifications/progress"
    assert progress["params"]["message"] == "started\n"


async def test_at_the_end_of_stdin_a_call_in_flight_still_gets_its_response(
    env: dict[str, str], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with raw_bridge(env) as bridge:
        await bridge.initialize()
        await _start_waiting_program(bridge, release)
        bridge.stdin.close()  # the host is done sending; the call is still running
        release.touch()
        reply = await bridge.reply(1)
        assert not reply["result"]["isError"]
        assert reply["result"]["structuredContent"]["exit_code"] == 0  # released, not killed
        assert await _exit_code(bridge.process) == 0


async def test_at_the_end_of_stdin_a_call_that_never_ends_does_not_keep_it_running(
    env: dict[str, str], tmp_path: Path
) -> None:
    async with raw_bridge(env) as bridge:
        await bridge.initialize()
        await _start_waiting_program(bridge, tmp_path / "never")
        pid = int((tmp_path / "never.pid").read_text())
        bridge.stdin.close()
        # After the grace period the call is cancelled, and said so.
        assert "error" in await bridge.reply(1)
        assert await _exit_code(bridge.process) == 0
    # ... in the agent too (agent.cancel): the program's process group is killed.
    for _ in range(400):
        if not _running(pid):
            break
        await anyio.sleep(0.05)
    assert not _running(pid), "the program still runs after the bridge ended"


def _running(pid: int) -> bool:
    """Whether ``pid`` is still there (running, or killed and not yet reaped by the agent)."""
    return os.path.exists(f"/proc/{pid}")


async def test_a_pty_as_stdin(env: dict[str, str]) -> None:
    controller, terminal = pty.openpty()
    tty.setraw(terminal)  # no echo, no line editing: the bytes as written
    try:
        process = await asyncio.create_subprocess_exec(
            *BRIDGE, stdin=terminal, stdout=subprocess.PIPE, env=env
        )
    finally:
        os.close(terminal)
    bridge = RawBridge(process)
    try:
        os.write(controller, _lines(INITIALIZE))
        assert (await bridge.receive())["result"]["serverInfo"]["name"] == "localagent"
        os.write(controller, _lines(INITIALIZED, _call(1, "echo", {"from": "a terminal"})))
        reply = await bridge.receive()
        assert reply["result"]["structuredContent"] == {"data": {"from": "a terminal"}}
    finally:
        os.close(controller)  # the terminal hangs up: the bridge reads EIO, as end of input
    assert await _exit_code(process) == 0


async def test_a_terminal_as_stdin_and_stdout(env: dict[str, str]) -> None:
    """``localagent mcp`` typed in a terminal: the replies are written to it too."""
    controller, terminal = pty.openpty()
    tty.setraw(terminal)
    try:
        process = await asyncio.create_subprocess_exec(
            *BRIDGE, stdin=terminal, stdout=terminal, env=env
        )
    finally:
        os.close(terminal)
    received = b""

    async def reply() -> dict[str, Any]:
        nonlocal received
        with anyio.fail_after(30):
            while b"\n" not in received:
                received += await anyio.to_thread.run_sync(os.read, controller, 65536)
        line, received = received.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    try:
        os.write(controller, _lines(INITIALIZE))
        assert (await reply())["result"]["serverInfo"]["name"] == "localagent"
        os.write(controller, _lines(INITIALIZED, _call(1, "echo", {"typed": True})))
        assert (await reply())["result"]["structuredContent"] == {"data": {"typed": True}}
    finally:
        os.close(controller)
    assert await _exit_code(process) == 0


@pytest.mark.parametrize("sockets", ["one socket both ways", "a socket each"])
async def test_sockets_as_stdin_and_stdout(env: dict[str, str], sockets: str) -> None:
    """What a host on Node.js or libuv gives its child: Unix sockets, not pipes."""
    ours_in, theirs_in = socket.socketpair()
    if sockets == "one socket both ways":
        ours_out, theirs_out = ours_in, theirs_in
    else:
        ours_out, theirs_out = socket.socketpair()
    process = await asyncio.create_subprocess_exec(
        *BRIDGE, stdin=theirs_in, stdout=theirs_out, env=env
    )
    theirs_in.close()
    theirs_out.close()
    reader, out_writer = await asyncio.open_unix_connection(sock=ours_out)
    writer = out_writer  # kept: a StreamWriter closes its socket when collected
    if ours_in is not ours_out:
        writer = (await asyncio.open_unix_connection(sock=ours_in))[1]
    bridge = RawBridge(process, reader, writer)
    try:
        await bridge.initialize()
        await bridge.send(_call(1, "echo", {"over": sockets}))
        assert (await bridge.reply(1))["result"]["structuredContent"] == {"data": {"over": sockets}}
        writer.write_eof()  # half-closed: the bridge reads end of input
        assert await _exit_code(process) == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        ours_in.close()
        ours_out.close()
