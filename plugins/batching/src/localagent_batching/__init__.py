"""LocalAgent plugin ``batching``: adaptive batching of each connection's outbound messages.

Every connection's send path is wrapped in a :class:`MessageBatcher`: a lone
reply goes out at once, as itself; replies produced together (for an inbound
batch frame, or under load) go out in batch frames ``{"type": "batch",
"messages": [...]}``, which every LocalAgent client unbatches.

Configuration, in ``config.toml`` (all optional)::

    [plugins.batching]
    max_batch = 50      # most messages per frame
    interval = 0.005    # seconds the writer may linger for a batch to fill under load
    max_queue = 1000    # messages waiting before senders wait (default 20 * max_batch)
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgspec
from localagent_hookspecs import Agent, Connection, SendFunc, hookimpl

from ._defaults import DEFAULT_INTERVAL, DEFAULT_MAX_BATCH

if TYPE_CHECKING:  # the batcher needs asyncio (~20 ms); `plugins list` imports this module
    from ._batcher import BatchSendError, MessageBatcher

__all__ = ["NAME", "BatchSendError", "BatchingConfig", "MessageBatcher", "Plugin"]

#: The plugin's name: its entry point, its ``[plugins.batching]`` table and its
#: key in ``connection.state``.
NAME: Final = "batching"


class BatchingConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[plugins.batching]`` settings (see :class:`MessageBatcher` for their meaning).

    Attributes:
        max_batch: Most messages per frame.
        interval: Seconds the writer may linger for a batch to fill under load.
        max_queue: Messages waiting before senders wait (``None``: 20 * ``max_batch``).
    """

    max_batch: int = DEFAULT_MAX_BATCH
    interval: float = DEFAULT_INTERVAL
    max_queue: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"'max_batch' must be >= 1: {self.max_batch!r}")
        if not math.isfinite(self.interval) or self.interval < 0:
            raise ValueError(f"interval must be a number >= 0 (seconds), not {self.interval!r}")
        if self.max_queue is not None and self.max_queue < self.max_batch:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be at least max_batch ({self.max_batch})"
            )


class Plugin:
    """Wraps every connection's send path in a :class:`MessageBatcher`.

    The entry point names this class, so each agent gets its own instance.

    Attributes:
        config: The settings read from ``[plugins.batching]`` in ``on_load``.
        bench_areas: ``localagent bench`` runs these areas with the plugin off and on.
        bench_pairs: Figures ``localagent bench`` compares across those two runs.
    """

    bench_areas: ClassVar[tuple[str, ...]] = ("websocket",)
    #: And compares, across the off and on runs, a client that batches (frames of
    #: 50) with the agent batching against a client and an agent that do not:
    #: batching at both ends against batching at neither.
    bench_pairs: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        (
            "websocket",
            "echo throughput, client batch frames of 50",
            "echo throughput, pipelined, unbatched",
            "echo throughput, batching at both ends vs at neither",
        ),
    )

    def __init__(self) -> None:
        self.config = BatchingConfig()
        #: The batchers of the open connections (each leaves as its connection closes).
        self.batchers: set[MessageBatcher] = set()

    @hookimpl
    def on_load(self, agent: Agent) -> Callable[[], Awaitable[None]]:
        """Read ``[plugins.batching]``; return the teardown (:meth:`stop`).

        Raises:
            ConfigError: An unknown key or a bad value (named in the message);
                the agent then reports the plugin as failed.
        """
        self.config = agent.plugin_settings(NAME, BatchingConfig)
        return self.stop

    async def stop(self) -> None:
        """Flush every open connection's batcher and stop batching it (the plugin is off).

        The wrappers stay on those connections' send paths until they close,
        but pass each message straight through, after what was queued.
        """
        import asyncio

        batchers = list(self.batchers)
        for batcher in batchers:
            batcher.enabled = False
        await asyncio.gather(*(b.flush() for b in batchers), return_exceptions=True)

    @hookimpl
    def on_connect(self, connection: Connection) -> None:
        """Batch this connection's outbound messages.

        The batcher is kept in ``connection.state["batching"]`` (for its
        counters) and flushed when the connection closes.
        """
        from ._batcher import MessageBatcher

        created: list[MessageBatcher] = []

        def wrap(inner: SendFunc) -> SendFunc:
            batcher = MessageBatcher(
                inner,
                max_batch=self.config.max_batch,
                interval=self.config.interval,
                max_queue=self.config.max_queue,
                connection=connection,
            )
            created.append(batcher)
            return batcher.send

        connection.wrap_send(wrap)
        batcher = created[0]
        self.batchers.add(batcher)
        connection.state[NAME] = batcher

        async def closed() -> None:
            self.batchers.discard(batcher)
            await batcher.flush()

        connection.on_close(closed)


def __getattr__(name: str) -> Any:
    if name in ("BatchSendError", "MessageBatcher"):
        from . import _batcher

        return getattr(_batcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
