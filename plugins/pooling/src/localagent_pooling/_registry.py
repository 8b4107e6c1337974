"""``PoolRegistry``: one :class:`ClientPool` per agent URL and token, for a whole process."""

from __future__ import annotations

import asyncio
import hashlib

from localagent import Client
from localagent._client import ClientOptions

from ._client_pool import ClientPool
from ._config import PoolingConfig

__all__ = ["PoolRegistry"]


class PoolRegistry:
    """The pools of one process, created on first use; a :data:`ConnectorFactory`.

    :meth:`install` makes every new :class:`localagent.Client` of the process
    (except a pool's own connections) borrow from the pool for its URL and
    token; :meth:`aclose` uninstalls it and closes the pools.

    Args:
        config: Sizes and timeouts for every pool.
    """

    def __init__(self, config: PoolingConfig) -> None:
        self.config = config
        self.pools: dict[tuple[str, str, float, int | None], ClientPool] = {}
        self._installed = False

    def __call__(self, options: ClientOptions) -> ClientPool:
        """The pool for a new client's URL, token and limits (the factory)."""
        token = options.token or ""
        # Keyed by a digest, so the token is not kept as a dict key in the clear.
        digest = hashlib.sha256(token.encode()).hexdigest()
        key = (options.url, digest, options.open_timeout, options.max_message_size)
        pool = self.pools.get(key)
        if pool is None:
            config = self.config
            pool = self.pools[key] = ClientPool(
                options.url,
                options.token,
                min_size=config.min_size,
                max_size=config.max_size,
                acquire_timeout=config.acquire_timeout,
                idle_timeout=config.idle_timeout,
                health_check_interval=config.health_check_interval,
                ping_timeout=config.ping_timeout,
                open_timeout=options.open_timeout,
                max_message_size=options.max_message_size,
            )
        return pool

    def pool(self, url: str, token: str | None = None) -> ClientPool:
        """The pool every default ``Client(url, token)`` of this process borrows from."""
        return self(Client(url, token, direct=True).options)

    def install(self) -> None:
        """Make new clients of this process borrow from these pools."""
        Client.set_connector_factory(self)
        self._installed = True

    async def prewarm(self, urls: tuple[str, ...]) -> None:
        """Dial the ``min_size`` connections of each URL's pool, all concurrently."""
        await asyncio.gather(*(self.pool(url).prewarm() for url in urls))

    async def aclose(self) -> None:
        """Uninstall the factory (if still ours) and close every pool."""
        if self._installed:
            previous = Client.set_connector_factory(None)
            if previous is not self:  # someone else installed theirs since: keep it
                Client.set_connector_factory(previous)
            self._installed = False
        pools = list(self.pools.values())
        self.pools.clear()
        await asyncio.gather(*(pool.aclose() for pool in pools), return_exceptions=True)
