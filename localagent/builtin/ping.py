"""Built-in plugin ``ping``: a liveness check that answers ``{"pong": true}``."""

from __future__ import annotations

import msgspec
from localagent_hookspecs import Message, handles, hookimpl

__all__ = ["PingData", "ping"]

_PONG = {"pong": True}


class PingData(msgspec.Struct, frozen=True):
    """``ping`` data: none needed (an object's fields are ignored)."""


@hookimpl(specname="on_message")
@handles("ping", schema=PingData)
def ping(message: Message) -> dict[str, bool]:
    """Check that the agent answers: ``{"pong": true}``."""
    return _PONG
