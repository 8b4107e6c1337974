"""The template plugin, served by a real agent through the ``localagent.testing`` fixtures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from localagent_template import Plugin

import localagent


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    # The template is never installed, so it is passed as an object. An installed
    # plugin can be named by its entry point instead: return ["template"].
    return [Plugin()]


async def test_hello_replies_with_a_greeting(localagent_client: localagent.Client) -> None:
    reply = await localagent_client.request("template.hello", {"name": "you"})
    assert reply == {"greeting": "hello, you"}


@pytest.mark.parametrize("data", [None, "you", {"name": ""}, {"name": 3}, {"name": "a", "b": 1}])
async def test_a_bad_request_is_a_bad_request_error(
    localagent_client: localagent.Client, data: Any
) -> None:
    with pytest.raises(localagent.ReplyError) as caught:
        await localagent_client.request("template.hello", data)
    assert caught.value.code == "bad_request"
    assert "template.hello" in caught.value.message
