"""LocalAgent plugin ``pooling``: a WebSocket connection pool for clients and a tuned Redis pool.

When enabled in an agent process:

* every :class:`localagent.Client` the process opens (a plugin dialling
  another agent, say) borrows its connection from a :class:`ClientPool` for
  that URL and token instead of dialling one, and gives it back on close;
  pools for the ``prewarm`` URLs are dialled at ``on_load``;
* the ``kv`` store on Redis gets a bounded, health-checked pool with a trimmed
  handshake, and auto-pipelines concurrent commands.

Scripts use the pool directly::

    async with ClientPool(url, token, min_size=2, max_size=10) as pool:
        await pool.request("ping")

Configuration, in ``config.toml`` (all optional; see the README)::

    [plugins.pooling]
    min_size = 2
    max_size = 10
    acquire_timeout = 5.0
    prewarm = ["ws://127.0.0.1:8766"]
    redis_max_connections = 16
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from localagent_hookspecs import Agent, hookimpl

from ._config import NAME, PoolingConfig

if TYPE_CHECKING:  # asyncio and websockets load on first use; `plugins list` imports this
    from ._client_pool import ClientPool, PoolClosed, PoolStats, PoolTimeout
    from ._registry import PoolRegistry

__all__ = [
    "NAME",
    "ClientPool",
    "Plugin",
    "PoolClosed",
    "PoolRegistry",
    "PoolStats",
    "PoolTimeout",
    "PoolingConfig",
]


class Plugin:
    """Pools the process's outbound WebSocket connections and the kv store's Redis connections.

    The entry point names this class, so each agent gets its own instance.

    Attributes:
        config: The settings read from ``[plugins.pooling]`` in ``on_load``.
        bench_areas: ``localagent bench`` runs these areas with the plugin off and on.
        bench_modes: One more "on" variant: with ``batching`` on as well (when
            installed), as the agent runs with every optimization plugin of the
            README's install; the replies to a pipelining client then travel in
            batch frames too.
    """

    bench_areas: ClassVar[tuple[str, ...]] = ("pooling", "redis")
    bench_modes: ClassVar[dict[str, tuple[str, ...]]] = {"with batching": ("-p", "batching")}

    def __init__(self) -> None:
        self.config = PoolingConfig()
        self._registry: PoolRegistry | None = None
        self._agent: Agent | None = None

    @property
    def registry(self) -> PoolRegistry | None:
        """The WebSocket pools of this process (``None`` before ``on_load``).

        Created when first needed: at ``on_load`` with ``prewarm`` URLs, else
        when a client of the process first opens (or when this is read).
        """
        if self._registry is None and self._agent is not None:
            from ._registry import PoolRegistry

            registry = self._registry = PoolRegistry(self.config)
            registry.install()  # in place of the stand-in _first_client installed
        return self._registry

    def _first_client(self, options: Any) -> Any:
        """The connector factory until a client opens: create the pools, then ask them."""
        registry = self.registry
        assert registry is not None
        return registry(options)

    @hookimpl
    async def on_load(self, agent: Agent) -> Callable[[], Awaitable[None]]:
        """Install the client pools and tune the Redis store, warming both concurrently.

        Without ``prewarm`` URLs nothing is dialled and nothing imported for the
        WebSocket pools until a client of the process opens; without Redis, the
        store is left alone.

        Returns:
            The teardown: uninstall the pools and close their connections
            (run when the plugin is disabled and at shutdown).

        Raises:
            ConfigError: An unknown key or a bad value (named in the message).
        """
        from localagent import _connectors

        self.config = agent.plugin_settings(NAME, PoolingConfig)
        self._agent = agent
        _connectors.install(self._first_client)
        try:
            if self.config.prewarm:
                import asyncio

                registry = self.registry
                assert registry is not None
                await asyncio.gather(registry.prewarm(self.config.prewarm), self._tune_store(agent))
            else:
                await self._tune_store(agent)
        except BaseException:
            await self._teardown()
            raise
        return self._teardown

    async def _teardown(self) -> None:
        """Close the pools (or take back the stand-in factory, if no client ever opened)."""
        from localagent import _connectors

        registry, self._registry, self._agent = self._registry, None, None
        if registry is not None:
            await registry.aclose()
        elif _connectors.factory == self._first_client:
            _connectors.install(None)

    async def _tune_store(self, agent: Agent) -> None:
        """Hand a tuned pool to the Redis store; leave the memory store alone."""
        store: Any = agent.store
        if store.kind != "redis" or not hasattr(store, "use_pool"):
            return
        if getattr(store, "cluster", False):
            import logging

            logging.getLogger("localagent.pooling").info(
                "Redis pool not tuned: the store's Redis is a Redis Cluster (redis-py's "
                "cluster client keeps a pool per node and pipelines by node itself)"
            )
            return
        from ._redis_pool import redis_pool

        try:
            pool = await redis_pool(store.url, self.config, retry=store.retry())
        except Exception as exc:  # Redis is down at start: the store's own pool copes
            import logging

            logging.getLogger("localagent.pooling").warning(
                "Redis pool not tuned, Redis unreachable at start: %s", type(exc).__name__
            )
            return
        await store.use_pool(pool, pipelining=self.config.redis_pipelining)


def __getattr__(name: str) -> Any:
    if name in ("ClientPool", "PoolClosed", "PoolStats", "PoolTimeout"):
        from . import _client_pool

        return getattr(_client_pool, name)
    if name == "PoolRegistry":
        from . import _registry

        return getattr(_registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
