"""What a pool plugs into a Client: the options it sees, and the connector it hands back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["ClientOptions", "Connector", "ConnectorFactory"]


@attrs.frozen
class ClientOptions:
    """What a :class:`Client` was created with, as a :data:`ConnectorFactory` sees it.

    Attributes:
        url: ``ws://host:port`` of the agent.
        token: The token given to the client (``None``: :func:`default_token`).
        open_timeout: Seconds allowed to connect.
        max_message_size: Largest frame accepted from the agent.
    """

    url: str
    token: str | None = attrs.field(repr=False)
    open_timeout: float
    max_message_size: int | None


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
