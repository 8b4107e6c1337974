"""LocalAgent plugin ``template``: the starting point for a new plugin (see README.md).

Messages: ``template.hello`` ``{"name": "..."}`` → ``{"greeting": "hello, <name>"}``.
"""

from __future__ import annotations

from localagent_hookspecs import Message, MessageError, handles, hookimpl

__all__ = ["Plugin"]


class Plugin:
    """Answers ``template.hello``.

    The entry point names this class, so the agent creates one instance per
    agent: keep per-agent state on ``self`` (set it up in an ``on_load`` hook).
    """

    @hookimpl(specname="on_message")
    @handles("template.hello")
    def hello(self, message: Message) -> dict[str, str]:
        """``{"name": "..."}`` → ``{"greeting": "hello, <name>"}``.

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
        return {"greeting": f"hello, {name}"}
