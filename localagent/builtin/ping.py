"""Built-in plugin ``ping``: a liveness check that answers ``{"pong": true}``."""

from __future__ import annotations

from localagent_hookspecs import Message, handles, hookimpl

__all__ = ["ping"]

_PONG = {"pong": True}


@hookimpl(specname="on_message")
@handles("ping")
def ping(message: Message) -> dict[str, bool]:
    """Reply ``{"pong": true}``; ``data`` is ignored."""
    return _PONG
