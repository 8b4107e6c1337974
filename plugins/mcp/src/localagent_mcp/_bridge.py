"""The bridge's side toward the agent: one connection, the tool catalog, forwarded calls.

:class:`AgentLink` holds one :class:`localagent.Client` connection (dialled on
first use, dialled again after the agent restarted) over which every tool call
goes, concurrently. It keeps the :class:`~._tools.Catalog` built from
``agent.types`` and refreshes it cheaply: ``agent.types`` with the digest it
has answers ``unchanged`` while the agent's set of types stays the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from localagent import Client
from localagent.exceptions import ConfigError, ConnectFailed, ConnectionLost

from ._tools import Catalog, build_catalog

__all__ = ["AgentLink", "AgentUnreachable"]

logger = logging.getLogger("localagent.mcp")


class AgentUnreachable(Exception):
    """The agent cannot be reached: not running, a wrong URL or token, or it went away."""


class AgentLink:
    """One connection to a running agent, shared by every tool call.

    Args:
        url: ``ws://host:port`` of the agent (``None``: ``$LOCALAGENT_URL`` or
            the configured one, as ``localagent send`` finds it).
        token: The token (``None``: ``$LOCALAGENT_TOKEN`` or the token file).
        open_timeout: Seconds allowed to connect.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, open_timeout: float = 5.0
    ) -> None:
        self._url = url
        self._token = token
        self._open_timeout = open_timeout
        self._client: Client | None = None
        self._dialling = asyncio.Lock()
        self.catalog: Catalog | None = None

    @property
    def url(self) -> str:
        return self._client.url if self._client is not None else (self._url or "the agent")

    async def _connected(self) -> Client:
        client = self._client
        if client is not None and not client.closed:
            return client
        async with self._dialling:
            if self._client is not None and not self._client.closed:
                return self._client
            try:
                # A host's calls come one at a time: a frame each goes out a loop turn sooner.
                client = Client(
                    self._url, self._token, open_timeout=self._open_timeout, coalesce=False
                )
                await client.open()
            except ConnectFailed as exc:  # HandshakeRejected too
                raise AgentUnreachable(str(exc)) from None
            except ConfigError as exc:  # no readable token file, a bad config
                raise AgentUnreachable(f"cannot connect to the agent: {exc}") from None
            self._client = client
            return client

    async def request(
        self,
        message_type: str,
        data: Any = None,
        *,
        on_event: Callable[[Any], None] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; cancelling the caller cancels it in the agent too.

        Raises:
            ReplyError: The agent answered with an error.
            AgentUnreachable: No connection, or it closed before the reply.
            TimeoutError: No reply within ``timeout`` seconds.
        """
        client = await self._connected()
        try:
            return await client.request(
                message_type, data, on_event=on_event, timeout=timeout, cancel_on_abort=True
            )
        except ConnectionLost as exc:
            raise AgentUnreachable(f"{exc} (the agent stopped?)") from None

    async def refresh(self) -> bool:
        """Fetch the agent's types if they changed; return whether the catalog changed.

        Raises:
            AgentUnreachable: The agent cannot be reached.
            ReplyError: The agent does not answer ``agent.types`` (its ``agent``
                plugin disabled, or a LocalAgent without it).
        """
        known = self.catalog.digest if self.catalog is not None else None
        reply = await self.request("agent.types", {"if_changed": known} if known else None)
        if reply.get("unchanged"):
            return False
        catalog = build_catalog(str(reply["digest"]), reply["types"])
        for reason in catalog.skipped:
            logger.warning("localagent mcp: a type is not offered as a tool: %s", reason)
        self.catalog = catalog
        return known is not None

    async def current(self) -> Catalog:
        """The catalog, fetched if there is none yet (or refreshed: it is cheap)."""
        await self.refresh()
        assert self.catalog is not None
        return self.catalog

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
