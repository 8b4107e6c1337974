"""``localagent mcp`` end to end: the official MCP client SDK over stdio, a real bridge
subprocess, a real agent on a loopback port, real files and programs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from localagent_hookspecs import handles, hookimpl
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from localagent import Client, Server

PYTHON = sys.executable


def _bridge_env(url: str, token: str, config_dir: Path) -> dict[str, str]:
    return {
        "LOCALAGENT_URL": url,
        "LOCALAGENT_TOKEN": token,
        "LOCALAGENT_CONFIG_DIR": str(config_dir),  # never the user's
        "LOCALAGENT_LOAD_PLUGINS": "",
    }


@asynccontextmanager
async def bridge(
    env: dict[str, str], *, on_notification: Callable[[], None] | None = None
) -> AsyncIterator[ClientSession]:
    """``localagent mcp`` as an MCP host runs it, with an initialized client session."""
    params = StdioServerParameters(
        command=PYTHON, args=["-m", "localagent", "mcp", "--poll", "0.2"], env=env
    )

    async def on_message(message: Any) -> None:
        if on_notification is not None and isinstance(message, types.ToolListChangedNotification):
            on_notification()

    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def bridge_to(agent: Server, config_dir: Path) -> AsyncIterator[ClientSession]:
    """A session with a bridge to ``agent`` (opened in the test itself: the SDK's anyio
    scopes must be left in the task that entered them, which a fixture's teardown is not)."""
    async with bridge(_bridge_env(agent.url, agent.token_file.get(), config_dir)) as session:
        yield session


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_tools_are_the_agents_message_types(
    agent: Server, localagent_config_dir: Path
) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        listed = await session.list_tools()
        tools = {tool.name: tool for tool in listed.tools}
        assert {"ping", "echo", "kv.get", "kv.set", "fs.read", "fs.write", "exec"} <= set(tools)
        assert "agent.types" not in tools and "agent.cancel" not in tools  # plumbing, not tools
        kv_set = tools["kv.set"]
        assert kv_set.input_schema["type"] == "object"
        assert kv_set.input_schema["required"] == ["key", "value"]
        assert kv_set.input_schema["properties"]["key"]["maxLength"] == 512
        assert kv_set.description is not None and kv_set.description.startswith(
            "Store a JSON value"
        )
        assert tools["echo"].input_schema == {"type": "object", "additionalProperties": True}


async def test_kv_set_then_get_is_the_agents_state(
    agent: Server, localagent_config_dir: Path
) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        value = {"list": [1, 2.5, "three"], "unicode": "héllo ✓"}
        stored = await session.call_tool("kv.set", {"key": "from-mcp", "value": value})
        assert not stored.is_error
        assert stored.structured_content == {"ok": True}
        got = await session.call_tool("kv.get", {"key": "from-mcp"})
        assert got.structured_content == {"found": True, "value": value}
        assert '"héllo ✓"' in _text(got)
        # The same agent's state, seen by a plain WebSocket client.
        async with Client(agent.url, agent.token_file.get()) as client:
            assert await client.request("kv.get", {"key": "from-mcp"}) == {
                "found": True,
                "value": value,
            }


async def test_fs_read(agent: Server, localagent_config_dir: Path) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        result = await session.call_tool("fs.read", {"path": "notes.txt"})
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["content"] == "hello from the workspace\n"
        outside = await session.call_tool("fs.read", {"path": "../config/token"})
        assert outside.is_error
        assert outside.structured_content is not None
        assert outside.structured_content["error"]["code"] == "outside_workspace"


async def test_exec_streams_its_output_as_progress(
    agent: Server, localagent_config_dir: Path
) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        code = "import sys\nfor i in range(3): print('line', i, flush=True)\nsys.exit(3)"
        result = await session.call_tool(
            "exec",
            {"argv": [PYTHON, "-c", code], "stream": True},
            progress_callback=on_progress,
        )
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["exit_code"] == 3
        streamed = "".join(message or "" for _value, message in progress)
        assert streamed == "line 0\nline 1\nline 2\n"
        values = [value for value, _message in progress]
        assert values == sorted(values) and len(set(values)) == len(values)  # strictly increasing


async def test_invalid_arguments_are_a_tool_error_naming_the_field(
    agent: Server, localagent_config_dir: Path
) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        result = await session.call_tool("kv.set", {"key": 5, "value": 1})
        assert result.is_error
        assert result.structured_content == {
            "error": {
                "code": "invalid_data",
                "message": "kv.set: invalid data at $.key: Expected `str`, got `int`",
                "details": {"path": "$.key"},
            }
        }
        assert _text(result).startswith("invalid_data: kv.set: invalid data at $.key")
        missing = await session.call_tool("fs.read", {})
        assert missing.is_error and "$.path" in _text(missing)
        assert not (await session.call_tool("ping", {})).is_error  # the bridge goes on


async def test_a_program_outside_the_allow_list_is_refused(
    agent: Server, localagent_config_dir: Path
) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        result = await session.call_tool("exec", {"argv": ["sh", "-c", "echo pwned"]})
        assert result.is_error
        assert result.structured_content is not None
        assert result.structured_content["error"]["code"] == "not_allowed"
        assert "pwned" not in _text(result)


async def test_an_unknown_tool_is_an_mcp_error(agent: Server, localagent_config_dir: Path) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        with pytest.raises(MCPError, match=r"unknown tool 'no\.such\.tool'"):
            await session.call_tool("no.such.tool", {})
        assert not (await session.call_tool("ping", {})).is_error


async def test_cancelling_a_call_stops_the_program(
    agent: Server, localagent_config_dir: Path
) -> None:
    async with bridge_to(agent, localagent_config_dir) as session:
        pids: list[int] = []
        printed = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            pids.append(int(message or "0"))
            printed.set()

        code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
        arguments = {"argv": [PYTHON, "-c", code], "stream": True}
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    partial(session.call_tool, "exec", arguments, progress_callback=on_progress)
                )
                await printed.wait()
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        for _ in range(400):  # the agent kills the program once the bridge's agent.cancel lands
            if not _running(pids[0]):
                break
            await anyio.sleep(0.05)
        assert not _running(pids[0]), "the program still runs after its call was cancelled"
        assert not (await session.call_tool("ping", {})).is_error


def _running(pid: int) -> bool:
    """Whether ``pid`` is still there (running, or killed and not yet reaped by the agent)."""
    return os.path.exists(f"/proc/{pid}")


class Late:
    @hookimpl(specname="on_message")
    @handles("late.hello")
    def hello(self, message: Any) -> dict[str, str]:
        """Say hello: a type that appears while the bridge runs."""
        return {"hello": "late"}


async def test_a_new_type_sends_tools_list_changed(
    agent: Server, localagent_config_dir: Path
) -> None:
    changed = anyio.Event()
    env = _bridge_env(agent.url, agent.token_file.get(), localagent_config_dir)
    async with bridge(env, on_notification=changed.set) as mcp_session:
        before = {tool.name for tool in (await mcp_session.list_tools()).tools}
        assert "late.hello" not in before
        agent.runtime.pm.register(Late(), name="late")  # what enabling a plugin at runtime does
        with anyio.fail_after(20):
            await changed.wait()
        after = {tool.name for tool in (await mcp_session.list_tools()).tools}
        assert after == before | {"late.hello"}
        result = await mcp_session.call_tool("late.hello", {})
        assert result.structured_content == {"hello": "late"}


async def test_without_an_agent_the_bridge_answers_errors_and_stays_up(
    localagent_config_dir: Path, unused_tcp_port: int
) -> None:
    env = _bridge_env(f"ws://127.0.0.1:{unused_tcp_port}", "no-token", localagent_config_dir)
    started = time.monotonic()
    async with bridge(env) as mcp_session:
        with pytest.raises(MCPError, match=r"LocalAgent is not reachable.*localagent serve"):
            await mcp_session.list_tools()
        result = await mcp_session.call_tool("kv.get", {"key": "k"})
        assert result.is_error
        assert result.structured_content is not None
        assert result.structured_content["error"]["code"] == "agent_unreachable"
        await mcp_session.send_ping()  # still serving
    assert time.monotonic() - started < 20  # answered, not hung
