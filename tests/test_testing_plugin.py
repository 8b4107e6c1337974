"""The pytest fixtures ``localagent.testing`` gives plugin authors, used as they would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import localagent
from localagent import handles, hookimpl
from localagent.testing import RedisServer


class Greeter:
    """A plugin object with a message type and an on_connect greeting."""

    @hookimpl(specname="on_message")
    @handles("greet")
    def greet(self, message: localagent.Message) -> dict[str, str]:
        return {"greeting": f"hello, {message.data}"}

    @hookimpl
    async def on_connect(self, connection: localagent.Connection) -> None:
        await connection.send({"type": "welcome", "data": None})


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return [Greeter()]


async def test_agent_and_client_serve_the_named_plugin(
    localagent_agent: localagent.Server, localagent_client: localagent.Client
) -> None:
    assert localagent_agent.url.startswith("ws://127.0.0.1:")
    assert await localagent_client.request("greet", "you") == {"greeting": "hello, you"}
    welcome = await localagent_client.events.get()
    assert welcome["type"] == "welcome"
    assert await localagent_client.request("ping") == {"pong": True}  # built-ins stay


def test_load_has_only_the_named_plugins(localagent_load: Any) -> None:
    loaded = localagent_load(Greeter(), "echo")
    registered = sorted(info.name for info in loaded.infos if info.registered)
    assert registered == ["echo", "greeter"]
    assert loaded.manager.hook.on_message.get_hookimpls()


def test_load_with_builtins(localagent_load: Any) -> None:
    loaded = localagent_load(builtins=True)
    registered = {info.name for info in loaded.infos if info.registered}
    assert {spec.name for spec in localagent.BUILTIN_PLUGINS} == registered


def test_each_test_gets_its_own_config_dir(
    localagent_config_dir: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    assert os.environ["LOCALAGENT_CONFIG_DIR"] == str(localagent_config_dir)
    assert str(localagent_config_dir).startswith(str(tmp_path))
    assert os.environ["LOCALAGENT_LOAD_PLUGINS"] == ""


PARENT = """
import sys, time
from pathlib import Path
from localagent.testing import RedisServer
server = RedisServer(Path(sys.argv[1]), durable=False)
server.start()
print(server.port, server.process.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_private_redis_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "redis")], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    port, pid = map(int, parent.stdout.readline().split())
    probe = RedisServer(tmp_path / "probe")
    probe.port = port  # its ping() asks this port
    try:
        assert probe.ping()
        parent.kill()  # SIGKILL: no cleanup code of the parent runs
        parent.wait()
        deadline = time.monotonic() + 30  # a bound for a hung check, not a speed figure
        while probe.ping() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not probe.ping()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # never left behind, even when the check failed
