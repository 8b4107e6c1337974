"""LocalAgent plugin ``template``: the starting point for a new plugin (see README.md).

Messages: ``template.hello`` ``{"name": "..."}`` → ``{"greeting": "hello, <name>"}``.

Configuration, in ``config.toml`` (optional)::

    [plugins.template]
    greeting = "hi"    # replaces "hello" in replies
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from localagent_hookspecs import Agent, Message, MessageError, handles, hookimpl

__all__ = ["NAME", "Plugin", "TemplateSettings"]

#: The plugin's name: its entry point's name, and so its ``[plugins.NAME]`` table.
NAME = "template"


class TemplateSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[plugins.template]`` table: a field per key, with its type and default.

    ``agent.plugin_settings`` checks each value against its annotation, constraints
    (``msgspec.Meta``) included. A rule msgspec cannot state, such as one across keys,
    goes in ``__post_init__``, raising ``ValueError``; it runs on every construction.

    Attributes:
        greeting: The word replies start with.
    """

    greeting: Annotated[str, msgspec.Meta(min_length=1)] = "hello"


class Plugin:
    """Answers ``template.hello``.

    The entry point names this class, so the agent creates one instance per
    agent: keep per-agent state on ``self``, set up in ``on_load``.

    Attributes:
        settings: What ``[plugins.template]`` says, read in ``on_load``.
    """

    def __init__(self) -> None:
        self.settings = TemplateSettings()

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Read ``[plugins.template]``.

        Raises:
            ConfigError: An unknown key or a bad value, named in the message; the
                agent then reports the plugin as failed and serves without it.
        """
        self.settings = agent.plugin_settings(NAME, TemplateSettings)

    @hookimpl(specname="on_message")
    @handles("template.hello")
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
