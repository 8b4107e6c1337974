"""The installed ``hello`` plugin, loaded by its entry-point name into a real agent.

These tests need the distribution installed (``pip install -e examples/hello-plugin``):
``localagent_plugins`` names the plugin, and the agent finds it the way it finds any
third-party plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import localagent


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return ["hello"]


@pytest.fixture
def hello_table() -> str:
    """The body of ``[plugins.hello]`` in the test's config file; empty writes no table.

    Tests choose one with ``@pytest.mark.parametrize("hello_table", [...])``.
    """
    return ""


@pytest.fixture
def localagent_config_dir(localagent_config_dir: Path, hello_table: str) -> Path:
    # Writing the config here, in the fixture every other one depends on, puts it in
    # place before localagent_settings reads the directory and the agent starts.
    if hello_table:
        localagent_config_dir.mkdir(parents=True, exist_ok=True)
        (localagent_config_dir / "config.toml").write_text(f"[plugins.hello]\n{hello_table}\n")
    return localagent_config_dir


async def test_hello_replies_with_a_greeting(localagent_client: localagent.Client) -> None:
    reply = await localagent_client.request("hello", {"name": "you"})
    assert reply == {"greeting": "hello, you"}


@pytest.mark.parametrize("hello_table", ['greeting = "hi"'])
async def test_the_greeting_comes_from_the_config_table(
    localagent_client: localagent.Client,
) -> None:
    reply = await localagent_client.request("hello", {"name": "you"})
    assert reply == {"greeting": "hi, you"}


async def test_each_new_connection_is_welcomed(
    localagent_agent: localagent.Server, localagent_client: localagent.Client
) -> None:
    welcome = await localagent_client.events.get()
    assert welcome["type"] == "hello.welcome"
    first = welcome["data"]["connection"]
    assert isinstance(first, str) and first
    async with localagent.Client(localagent_agent.url, localagent_agent.token_file.get()) as other:
        second = (await other.events.get())["data"]["connection"]
    assert second != first


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (None, 'data must be {"name": "..."}'),
        ("you", 'data must be {"name": "..."}'),
        ({"nom": "you"}, 'data must be {"name": "..."}'),
        ({"name": "you", "extra": 1}, 'data must be {"name": "..."}'),
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"name": 42}, "'name' must be a non-empty string"),
    ],
)
async def test_a_bad_request_is_answered_with_bad_request(
    localagent_client: localagent.Client, data: Any, complaint: str
) -> None:
    with pytest.raises(localagent.ReplyError) as caught:
        await localagent_client.request("hello", data)
    assert caught.value.code == "bad_request"
    assert caught.value.message.startswith("hello: ")
    assert complaint in caught.value.message
    # The connection keeps serving.
    assert await localagent_client.request("hello", {"name": "again"}) == {
        "greeting": "hello, again"
    }


@pytest.mark.parametrize(
    ("hello_table", "complaint"),
    [
        ("greeting = 3", "plugins.hello.greeting = 3: expected str, got int"),
        ('greeting = ""', "plugins.hello.greeting = '': expected str of length >= 1"),
        ("colour = 1", r"plugins.hello.colour: unknown setting \(known: greeting\)"),
    ],
)
async def test_a_bad_config_table_fails_the_plugin(
    localagent_settings: localagent.Settings, complaint: str
) -> None:
    server = localagent.Server.create(localagent_settings, options=["hello"], strict=True)
    with pytest.raises(localagent.PluginError, match=complaint) as caught:
        async with server:
            pass
    assert caught.value.plugin == "hello"


def test_plugins_list_shows_the_installed_distribution(localagent_config_dir: Path) -> None:
    # The fixture sets LOCALAGENT_LOAD_PLUGINS="" to keep other plugins out of the
    # in-process agent; unset, the CLI lists every installed plugin, enabled.
    env = {k: v for k, v in os.environ.items() if k != "LOCALAGENT_LOAD_PLUGINS"}
    listed = subprocess.run(
        [sys.executable, "-m", "localagent", "plugins", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    hello = next(plugin for plugin in json.loads(listed.stdout) if plugin["name"] == "hello")
    assert hello["distribution"] == "localagent-hello"
    assert hello["version"] == version("localagent-hello")
    assert hello["enabled"] is True and hello["error"] is None
    assert hello["hooks"] == ["on_connect", "on_load", "on_message"]
    assert hello["handles"] == ["hello"]
