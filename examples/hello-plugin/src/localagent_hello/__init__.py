"""LocalAgent plugin ``hello``: a ``hello`` message type and a greeting on every connection.

Messages: ``hello`` ``{"name": "..."}`` → ``{"greeting": "hello, <name>"}``. On each new
connection the agent first sends ``{"type": "hello.welcome", "data": {"connection": id}}``.

Configuration, in ``config.toml``::

    [plugins.hello]
    greeting = "hi"    # replaces "hello" in replies
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from localagent_hookspecs import Agent, Connection, Message, MessageError, handles, hookimpl

__all__ = ["NAME", "HelloSettings", "Plugin"]

#: The plugin's name: its entry point and its ``[plugins.hello]`` config table.
NAME = "hello"


class HelloSettings(msgspec.Struct, frozen=True):
    """The ``[plugins.hello]`` table.

    Attributes:
        greeting: The word replies start with.
    """

    greeting: Annotated[str, msgspec.Meta(min_length=1)] = "hello"


class Plugin:
    """Answers ``hello`` and greets every new connection.

    The entry point names this class, so each agent gets its own instance.

    Attributes:
        settings: What ``[plugins.hello]`` says, read in ``on_load``.
    """

    def __init__(self) -> None:
        self.settings = HelloSettings()

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Read ``[plugins.hello]``.

        Raises:
            ConfigError: The table has a key other than ``greeting``, or the
                greeting is not a non-empty string. The agent then reports the
                plugin as failed and serves without it.
        """
        self.settings = agent.plugin_settings(NAME, HelloSettings)

    @hookimpl
    async def on_connect(self, connection: Connection) -> None:
        """Send ``hello.welcome`` before the connection's first message is read."""
        await connection.send({"type": "hello.welcome", "data": {"connection": connection.id}})

    @hookimpl(specname="on_message")
    @handles("hello")
    def hello(self, message: Message) -> dict[str, str]:
        """``{"name": "..."}`` → ``{"greeting": "<greeting>, <name>"}``.

        Raises:
            MessageError: ``bad_request`` unless ``data`` is ``{"name": <non-empty string>}``.
        """
        data = message.data
        if not isinstance(data, dict) or set(data) != {"name"}:
            raise MessageError(
                "bad_request", f'{message.type}: data must be {{"name": "..."}}, nothing else'
            )
        name = data["name"]
        if not isinstance(name, str) or not name:
            raise MessageError("bad_request", f"{message.type}: 'name' must be a non-empty string")
        return {"greeting": f"{self.settings.greeting}, {name}"}
