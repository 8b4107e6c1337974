"""What a pool plugs into a :class:`localagent.Client`, and the process-wide slot it plugs into.

The options a connector factory sees, the connector it hands back, and the factory
installed for the process. It imports neither the client nor websockets, so a plugin
can install a factory (the ``pooling`` plugin, at ``on_load``) in an agent that may
never open a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["ClientOptions", "Connector", "ConnectorFactory", "factory", "install"]


class ClientOptions(msgspec.Struct, frozen=True):
    """What a :class:`Client` was created with, as a :data:`ConnectorFactory` sees it.

    Attributes:
        url: ``ws://host:port`` of the agent.
        token: The token given to the client (``None``: :func:`default_token`).
        open_timeout: Seconds allowed to connect.
        max_message_size: Largest frame accepted from the agent.
    """

    url: str
    token: str | None
    open_timeout: float
    max_message_size: int | None

    def __repr__(self) -> str:  # without the token: a repr may end up in a log
        return (
            f"ClientOptions(url={self.url!r}, open_timeout={self.open_timeout!r}, "
            f"max_message_size={self.max_message_size!r})"
        )


class Connector(Protocol):
    """A source of open connections a :class:`Client` borrows instead of dialling its own.

    A connection pool implements it (``localagent-pooling``). The connections
    it hands out are plain, directly connected :class:`Client` objects.
    """

    async def acquire(self) -> Client:
        """An open connection for the caller's exclusive use until :meth:`release`."""

    def release(self, client: Client) -> None:
        """Take back a connection from :meth:`acquire` (closed ones are discarded)."""


#: Chooses the :class:`Connector` of a new :class:`Client` (``None``: dial directly).
ConnectorFactory = Callable[[ClientOptions], Connector | None]


#: Chooses the connector of a new client (a ``ConnectorFactory``); ``None``: dial directly.
factory: Any = None


def install(new: Any) -> Any:
    """Install ``new`` (``None`` uninstalls); return the factory installed before."""
    global factory
    previous, factory = factory, new
    return previous
