"""Plugins enabled, disabled and installed while the agent runs (issue #22).

Real agents: a ``localagent serve`` subprocess toggled by the real CLI, with a
client whose connection stays open across the toggles; and a plugin
distribution built and installed (uv) while the agent runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import localagent
from localagent import Client, ReplyError, hookimpl
from localagent._config import set_plugin_enabled

from .helpers import localagent_cmd, running_agent

#: Seconds a test waits for a change to show (the agents look every 0.5 s).
WAIT = 15.0


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        localagent_cmd(*args), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


async def answer(client: Client, type_: str, data: Any = None) -> Any:
    """The result, or the error code of the reply."""
    try:
        return await client.request(type_, data, timeout=10)
    except ReplyError as exc:
        return exc.code


async def until(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> float:
    """Poll ``read()`` until ``done`` holds; return the seconds it took."""
    started = time.perf_counter()
    while True:
        value = await read()
        if done(value):
            return time.perf_counter() - started
        assert time.perf_counter() - started < WAIT, f"still {value!r} after {WAIT} s"
        await asyncio.sleep(0.02)


async def test_echo_toggled_by_the_cli_on_an_open_connection(
    subprocess_env: dict[str, str], isolated_env: Path
) -> None:
    with running_agent(subprocess_env) as agent:
        token = (isolated_env / "token").read_text().strip()
        async with Client(agent.url, token) as client:
            assert await answer(client, "echo", 1) == {"data": 1}

            said = cli(subprocess_env, "plugins", "disable", "echo").stdout
            assert f"the agent running at {agent.url}" in said
            await until(lambda: answer(client, "echo", 2), lambda r: r == "unknown_type")
            assert await answer(client, "ping") == {"pong": True}  # the rest goes on

            cli(subprocess_env, "plugins", "enable", "echo")
            await until(lambda: answer(client, "echo", 3), lambda r: r == {"data": 3})
            assert not client.closed  # the same connection all along
        assert "plugin 'echo' disabled on the running agent" in agent.output
        assert "plugin 'echo' enabled on the running agent" in agent.output


GREET_PROJECT = """
[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "localagent-greet"
version = "VERSION"

[project.entry-points.localagent]
greet = "localagent_greet"

[tool.hatch.build.targets.wheel]
packages = ["src/localagent_greet"]
"""

GREET_MODULE = """
from localagent_hookspecs import handles, hookimpl

@hookimpl(specname="on_message")
@handles("greet")
def greet(message):
    return {"greeting": f"WORD, {message.data}"}
"""


def _write_greet(project: Path, version: str, word: str) -> None:
    (project / "src" / "localagent_greet").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(GREET_PROJECT.replace("VERSION", version))
    module = project / "src" / "localagent_greet" / "__init__.py"
    module.write_text(GREET_MODULE.replace("WORD", word))


def _install(project: Path, target: Path) -> None:
    """``uv pip install --target``: a real install into a directory on the agent's sys.path."""
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "-q",
            "-p",
            sys.executable,
            "--no-deps",
            "--reinstall",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        timeout=120,
        env={**os.environ, "UV_BUILD_CONSTRAINT": str(_build_constraints())},
    )


async def test_a_plugin_installed_while_the_agent_runs_is_served_without_restart(
    subprocess_env: dict[str, str], isolated_env: Path, tmp_path: Path
) -> None:
    project = tmp_path / "greet"
    _write_greet(project, "0.1.0", "hello")
    target = tmp_path / "site"  # on the agent's sys.path, empty until the install
    target.mkdir()
    env = {**subprocess_env, "PYTHONPATH": str(target), "LOCALAGENT_LOAD_PLUGINS": "greet"}
    with running_agent(env) as agent:
        token = (isolated_env / "token").read_text().strip()
        async with Client(agent.url, token) as client:
            assert await answer(client, "greet", "you") == "unknown_type"
            await asyncio.to_thread(_install, project, target)
            await until(
                lambda: answer(client, "greet", "you"), lambda r: r == {"greeting": "hello, you"}
            )
            assert "plugin 'greet' installed (localagent-greet 0.1.0)" in agent.output

            # An upgrade of an imported module: served as before, and said to need a restart.
            _write_greet(project, "0.2.0", "howdy")
            await asyncio.to_thread(_install, project, target)
            await until(lambda: _async(agent.output), lambda out: "restart the agent" in out)
            assert await answer(client, "greet", "you") == {"greeting": "hello, you"}
        assert "plugin 'greet' was upgraded from 0.1.0 to 0.2.0" in agent.output
        listed = json.loads(cli(env, "plugins", "list", "--json").stdout)
        (greet,) = [record for record in listed if record["name"] == "greet"]
        assert greet["version"] == "0.2.0"
        assert greet["running"][0]["version"] == "0.1.0"
        assert greet["running"][0]["stale"] is True
        text = cli(env, "plugins", "list").stdout
        assert "'greet' is stale: the agent runs 0.1.0, 0.2.0 is installed; restart" in text
        said = cli(env, "plugins", "disable", "greet").stdout
        assert "keeps it as it is: its LOCALAGENT_LOAD_PLUGINS decides 'greet'" in said


def _build_constraints() -> Path:
    return Path(__file__).parents[1] / "requirements-build.txt"


class Undoable:
    """A plugin whose on_load hands back its teardown, and records both."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    async def on_load(self, agent: localagent.Agent) -> Callable[[], Awaitable[None]]:
        self.events.append("load")

        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                self.events.append("task cancelled")

        agent.spawn(forever())

        async def undo() -> None:
            self.events.append("teardown")

        return undo

    @hookimpl(specname="on_message")
    @localagent.handles("slow")
    async def slow(self, message: localagent.Message) -> Any:
        await asyncio.sleep(message.data)  # still running when the plugin is disabled
        self.events.append("slow finished")
        return {"slow": True}

    @hookimpl(specname="on_message")
    @localagent.handles("undoable.ping")
    def ping(self) -> Any:
        return {"pong": True}


async def test_teardown_runs_on_disable_and_at_shutdown_after_running_handlers(
    isolated_env: Path,
) -> None:
    plugin = Undoable()
    server = localagent.Server.create(port=0, extra_plugins={"undoable": plugin})
    async with server:
        token = server.token_file.get()
        async with Client(server.url, token) as client:
            slow = asyncio.ensure_future(client.request("slow", 2.0, timeout=10))
            await asyncio.sleep(0.05)  # it is in its handler now
            set_plugin_enabled(isolated_env, "undoable", False)
            await until(lambda: answer(client, "undoable.ping"), lambda r: r == "unknown_type")
            assert plugin.events == ["load"]  # gone for new messages; the running one goes on
            assert await slow == {"slow": True}  # finished, and answered
            await until(lambda: _async(plugin.events), lambda e: "task cancelled" in e)
            assert plugin.events == ["load", "slow finished", "teardown", "task cancelled"]

            set_plugin_enabled(isolated_env, "undoable", True)
            await until(lambda: answer(client, "undoable.ping"), lambda r: r == {"pong": True})
            assert plugin.events.count("load") == 2
    # At shutdown, the second load's teardown ran too.
    assert plugin.events[-2:] == ["teardown", "task cancelled"]
    assert plugin.events.count("teardown") == 2


async def _async(value: Any) -> Any:
    return value


async def test_a_failing_teardown_is_reported_and_the_plugin_is_gone(isolated_env: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    class Broken:
        @hookimpl
        def on_load(self) -> Callable[[], None]:
            def undo() -> None:
                raise RuntimeError("cannot undo")

            return undo

        @hookimpl(specname="on_message")
        @localagent.handles("broken.ping")
        def ping(self) -> Any:
            return {"pong": True}

    class Watcher:
        @hookimpl
        def on_error(self, error: BaseException, context: localagent.ErrorContext) -> None:
            seen.append((context.stage, context.plugin))

    server = localagent.Server.create(
        port=0, extra_plugins={"broken": Broken(), "watcher": Watcher()}
    )
    async with server, Client(server.url, server.token_file.get()) as client:
        assert await answer(client, "broken.ping") == {"pong": True}
        set_plugin_enabled(isolated_env, "broken", False)
        await until(lambda: _async(seen), lambda s: ("unload", "broken") in s)
        assert await answer(client, "broken.ping") == "unknown_type"


async def test_on_error_implementations_follow_plugins_toggled_while_running(
    isolated_env: Path,
) -> None:
    """The runtime looks ``on_error`` up once per plugin generation: a watcher disabled
    on the running agent stops seeing failures, enabled again it sees them again."""
    seen: list[str | None] = []

    class Raising:
        @hookimpl(specname="on_message")
        @localagent.handles("raising.boom")
        def boom(self) -> Any:
            raise ValueError("boom")

    class Watcher:
        @hookimpl
        def on_error(self, context: localagent.ErrorContext) -> None:  # fewer arguments
            seen.append(context.plugin)

    server = localagent.Server.create(
        port=0, extra_plugins={"raising": Raising(), "watcher": Watcher()}
    )
    async with server, Client(server.url, server.token_file.get()) as client:
        errors = server.runtime.errors
        assert await answer(client, "raising.boom") == "internal_error"
        assert seen == ["raising"]
        assert [name for name, _call in errors.on_error()] == ["watcher"]
        set_plugin_enabled(isolated_env, "watcher", False)
        await until(lambda: _async(errors.on_error()), lambda found: found == ())
        assert await answer(client, "raising.boom") == "internal_error"
        assert seen == ["raising"]  # not seen: the watcher is gone
        set_plugin_enabled(isolated_env, "watcher", True)
        await until(lambda: _async(errors.on_error()), lambda found: len(found) == 1)
        assert await answer(client, "raising.boom") == "internal_error"
        assert seen == ["raising", "raising"]


async def test_listeners_hear_of_plugin_changes_and_traffic_counts_everything(
    isolated_env: Path,
) -> None:
    server = localagent.Server.create(port=0)
    changes: list[int] = []
    async with server:
        runtime = server.runtime
        runtime.on_plugins_changed(
            lambda: changes.append(len(runtime.dispatcher.route("echo").handlers))
        )
        async with Client(server.url, server.token_file.get()) as client:
            for index in range(20):
                await client.request("echo", index)
            assert await answer(client, "nope") == "unknown_type"
            await client.send_raw("{not json")
            assert await answer(client, "ping") == {"pong": True}
            set_plugin_enabled(isolated_env, "echo", False)
            await until(lambda: _async(changes), lambda c: c == [0])
            set_plugin_enabled(isolated_env, "echo", True)
            await until(lambda: _async(changes), lambda c: c == [0, 1])
        assert runtime.traffic.messages == 23
        assert runtime.traffic.errors == 2


def test_status_file_and_plugins_list_describe_the_running_agent(
    subprocess_env: dict[str, str], isolated_env: Path
) -> None:
    with running_agent(subprocess_env) as agent:
        status_path = isolated_env / "agents" / f"{agent.pid}.json"
        assert status_path.stat().st_mode & 0o777 == 0o600
        status = json.loads(status_path.read_text())
        assert status["url"] == agent.url
        assert any(p["name"] == "echo" and p["loaded"] for p in status["plugins"])
        listed = json.loads(cli(subprocess_env, "plugins", "list", "--all", "--json").stdout)
        echo = next(record for record in listed if record["name"] == "echo")
        assert echo["running"][0]["pid"] == agent.pid
        assert echo["running"][0]["loaded"] is True
        text = cli(subprocess_env, "plugins", "list", "--all").stdout
        assert f"running agent {agent.pid} at {agent.url}: ping, echo" in text
        rescan = cli(subprocess_env, "plugins", "rescan").stdout
        assert f"the agent running at {agent.url} (pid {agent.pid}) will look" in rescan
    assert not status_path.exists()  # removed at shutdown


def test_watching_can_be_turned_off(subprocess_env: dict[str, str], isolated_env: Path) -> None:
    env = {**subprocess_env, "LOCALAGENT_WATCH_INTERVAL": "0"}
    with running_agent(env) as agent:
        assert not (isolated_env / "agents" / f"{agent.pid}.json").exists()
        said = cli(env, "plugins", "disable", "echo").stdout
        assert "will apply" not in said
