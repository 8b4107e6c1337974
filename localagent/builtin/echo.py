"""Built-in plugin ``echo``: replies with the request's ``data`` unchanged."""

from __future__ import annotations

from typing import Any

from localagent_hookspecs import Message, handles, hookimpl

__all__ = ["echo"]


@hookimpl(specname="on_message")
@handles("echo", schema=Any)
def echo(message: Message) -> dict[str, Any]:
    """Reply ``{"data": <the request's data>}``: any JSON value, unchanged."""
    return {"data": message.data}
