"""Built-in plugin ``ping``: a liveness check that answers ``{"pong": true}``."""

from __future__ import annotations

from typing import Any

from localagent_hookspecs import Message, handles, hookimpl

__all__ = ["ping"]

_PONG = {"pong": True}


# schema=Any: any data is accepted and ignored, with no check (the benchmarks ping with
# payloads of every size and shape).
@hookimpl(specname="on_message")
@handles("ping", schema=Any)
def ping(message: Message) -> dict[str, bool]:
    """Check that the agent answers: ``{"pong": true}``; any data is ignored."""
    return _PONG
