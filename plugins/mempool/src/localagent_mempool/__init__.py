"""LocalAgent plugin ``mempool``: outbound frames are encoded into reused buffers.

Without it, the agent encodes every outbound frame into a new ``bytes``
object. With it, each connection's batch frames (what the batching plugin
assembles) are encoded into a ``bytearray`` taken from a bounded
:class:`BufferPool` (power-of-two size classes), written, and given back:
``on_connect`` hands the pool to the connection
(:meth:`~localagent_hookspecs.Connection.use_buffers`), whose send path ends
in "encode, write one frame" under whatever plugins wrap it. A single
message still gets new bytes: measured, a ~100-byte frame costs less to
encode into new bytes (CPython's small-object allocator already recycles
those) than the pool's bookkeeping does.

websockets copies a frame's bytes before ``send`` returns, so a buffer is
back in the pool before the next frame is encoded.

Configuration, in ``config.toml`` (all optional)::

    [plugins.mempool]
    max_per_class = 16        # idle buffers kept per size class
    max_pooled = 8388608      # most bytes the idle buffers hold together
    max_buffer = 1048576      # buffers larger than this are freed, not pooled
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgspec
from localagent_hookspecs import Agent, Connection, hookimpl

from ._defaults import DEFAULT_MAX_BUFFER, DEFAULT_MAX_PER_CLASS, DEFAULT_MAX_POOLED

if TYPE_CHECKING:  # the pool is built at the first connection, not at the start
    from ._pool import BufferPool

__all__ = ["NAME", "BufferPool", "MempoolConfig", "Plugin"]

#: The plugin's name: its entry point, its ``[plugins.mempool]`` table and its
#: key in ``connection.state``.
NAME: Final = "mempool"


class MempoolConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[plugins.mempool]`` settings (see :class:`BufferPool`).

    Attributes:
        max_per_class: Idle buffers kept per size class.
        max_pooled: Most bytes the idle buffers hold together.
        max_buffer: Buffers larger than this are freed, not pooled.
    """

    max_per_class: int = DEFAULT_MAX_PER_CLASS
    max_pooled: int = DEFAULT_MAX_POOLED
    max_buffer: int = DEFAULT_MAX_BUFFER

    def __post_init__(self) -> None:
        for name in ("max_per_class", "max_pooled", "max_buffer"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name!r} must be >= 0: {value!r}")


class Plugin:
    """Has every connection encode its batch frames into buffers from one shared pool.

    The entry point names this class, so each agent gets its own instance
    (and its own pool, shared by its connections: the event loop runs one
    send at a time between awaits, and a buffer is held only until its
    frame is written).

    Attributes:
        config: The settings read from ``[plugins.mempool]`` in ``on_load``.
        bench_areas: ``localagent bench`` runs these areas with the plugin off and on.
    """

    bench_areas: ClassVar[tuple[str, ...]] = ("websocket", "allocations")

    def __init__(self) -> None:
        self.config = MempoolConfig()
        self._pool: BufferPool | None = None

    @property
    def pool(self) -> BufferPool:
        """The agent's buffer pool, sized by :attr:`config` (its counters are in ``pool.stats()``).

        Built when first needed (the first connection), so a start never imports it.
        """
        if self._pool is None:
            from ._pool import BufferPool

            config = self.config
            self._pool = BufferPool(
                max_per_class=config.max_per_class,
                max_pooled=config.max_pooled,
                max_buffer=config.max_buffer,
            )
        return self._pool

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Read ``[plugins.mempool]``; the pool is sized by it when first needed.

        Raises:
            ConfigError: An unknown key or a bad value (named in the message).
        """
        self.config = agent.plugin_settings(NAME, MempoolConfig)
        self._pool = None

    @hookimpl
    def on_connect(self, connection: Connection) -> None:
        """Have this connection encode its batch frames into buffers from the pool.

        ``connection.state["mempool"]`` is the shared pool, for its counters.
        """
        pool = self.pool
        connection.use_buffers(pool)
        connection.state[NAME] = pool


def __getattr__(name: str) -> Any:
    if name == "BufferPool":
        from . import _pool

        return _pool.BufferPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
