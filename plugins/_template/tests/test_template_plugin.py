"""The template plugin, served by a real agent through the ``localagent.testing`` fixtures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from localagent_template import NAME, Plugin, TemplateSettings

import localagent


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    # The template is never installed, so it is passed as an object. An installed
    # plugin can be named by its entry point instead: return ["template"].
    return [Plugin()]


@pytest.fixture
def table() -> str:
    """The body of the plugin's table in the test's ``config.toml`` (empty: no table)."""
    return ""


@pytest.fixture
def localagent_config_dir(localagent_config_dir: Path, table: str) -> Path:
    # Written here, the config is in place before the settings are read.
    if table:
        localagent_config_dir.mkdir(parents=True, exist_ok=True)
        (localagent_config_dir / "config.toml").write_text(f"[plugins.{NAME}]\n{table}\n")
    return localagent_config_dir


async def test_hello_replies_with_a_greeting(localagent_client: localagent.Client) -> None:
    reply = await localagent_client.request("template.hello", {"name": "you"})
    assert reply == {"greeting": "hello, you"}


@pytest.mark.parametrize("table", ['greeting = "hi"'])
async def test_the_greeting_comes_from_the_settings(
    localagent_client: localagent.Client, localagent_settings: localagent.Settings
) -> None:
    assert localagent_settings.plugin_settings(NAME, TemplateSettings).greeting == "hi"
    reply = await localagent_client.request("template.hello", {"name": "you"})
    assert reply == {"greeting": "hi, you"}


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ("greeting = 3", "greeting = 3: expected str, got int"),
        ('greeting = ""', "greeting = '': expected str of length >= 1"),
        ("colour = 1", "unknown setting"),
    ],
)
async def test_a_bad_table_fails_the_plugin(
    localagent_settings: localagent.Settings, complaint: str
) -> None:
    server = localagent.Server.create(
        localagent_settings, extra_plugins={NAME: Plugin()}, strict=True
    )
    with pytest.raises(localagent.PluginError, match=complaint):
        async with server:
            pass


@pytest.mark.parametrize("data", [None, "you", {"name": ""}, {"name": 3}, {"name": "a", "b": 1}])
async def test_a_bad_request_is_a_bad_request_error(
    localagent_client: localagent.Client, data: Any
) -> None:
    with pytest.raises(localagent.ReplyError) as caught:
        await localagent_client.request("template.hello", data)
    assert caught.value.code == "bad_request"
    assert "template.hello" in caught.value.message
