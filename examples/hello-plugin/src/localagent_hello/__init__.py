"""LocalAgent plugin ``hello``: a ``hello`` message type and a greeting on every connection.

Messages: ``hello`` ``{"name": "..."}`` → ``{"greeting": "hello, <name>"}``. On each new
connection the agent first sends ``{"type": "hello.welcome", "data": {"connection": id}}``.

Configuration, in ``config.toml``::

    [plugins.hello]
    greeting = "hi"    # replaces "hello" in replies
"""

from __future__ import annotations

from localagent_hookspecs import Agent, Connection, Message, MessageError, handles, hookimpl

__all__ = ["DEFAULT_GREETING", "NAME", "Plugin"]

#: The plugin's name: its entry point and its ``[plugins.hello]`` config table.
NAME = "hello"
DEFAULT_GREETING = "hello"


class Plugin:
    """Answers ``hello`` and greets every new connection.

    The entry point names this class, so each agent gets its own instance.

    Attributes:
        greeting: The word replies start with (``[plugins.hello] greeting``).
    """

    def __init__(self) -> None:
        self.greeting = DEFAULT_GREETING

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Read ``[plugins.hello]``.

        Raises:
            ValueError: The table has a key other than ``greeting``, or the
                greeting is not a non-empty string. The agent then reports the
                plugin as failed and serves without it.
        """
        config = agent.plugin_config(NAME)
        unknown = sorted(set(config) - {"greeting"})
        if unknown:
            raise ValueError(f"[plugins.{NAME}]: unknown key(s) {', '.join(unknown)}")
        greeting = config.get("greeting", DEFAULT_GREETING)
        if not isinstance(greeting, str) or not greeting:
            raise ValueError(f"[plugins.{NAME}]: greeting must be a non-empty string")
        self.greeting = greeting

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
        return {"greeting": f"{self.greeting}, {name}"}
