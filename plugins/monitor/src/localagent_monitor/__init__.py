"""LocalAgent plugin ``monitor``: selective monitoring, metrics, health, dashboard, auto-optimizer.

Only the critical paths get a wrapper: ``on_connect``, ``on_error``, and the
``on_message`` handlers of the message types listed in ``types``. Every other
message type is dispatched exactly as without the plugin. The figures are
served on the agent's own port: ``/metrics`` (Prometheus text), ``/performance``
(a live dashboard), ``/performance.json``, ``/livez`` and ``/readyz``.

Configuration, in ``config.toml`` (all optional; see the README for every key)::

    [plugins.monitor]
    port = 8080                                # a port of its own (default: the agent's)
    types = ["exec", "fs.write", "fs.delete"]  # the message types to time
    all_paths = false                          # true: time every message type
    open_metrics = false                       # true: /metrics without the token
    auto_optimize = false                      # true: switch batching per connection
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar, Final

from localagent_hookspecs import (
    HANDLES_ATTRIBUTE,
    Agent,
    Connection,
    ErrorContext,
    Message,
    hookimpl,
)

from ._config import DEFAULT_TYPES, MonitorConfig

if TYPE_CHECKING:  # asyncio and the HTTP server: only once on_load runs
    from ._monitor import Monitor

__all__ = ["DEFAULT_TYPES", "NAME", "MonitorConfig", "Plugin"]

#: The plugin's name: its entry point and its ``[plugins.monitor]`` table.
NAME: Final = "monitor"


class Plugin:
    """Monitors the agent's critical paths and serves what it measures over HTTP.

    The entry point names this class, so each agent gets its own instance,
    and so its own message wrapper: the types that wrapper declares are set
    from the configuration in ``on_load``, before the agent dispatches its
    first message (until then it declares none, so it wraps nothing).

    Attributes:
        config: The settings read from ``[plugins.monitor]`` in ``on_load``.
        monitor: The running monitor (``None`` before ``on_load``).
        observe_message: The ``on_message`` wrapper that times monitored types.
        bench_areas: ``localagent bench`` runs these areas with the plugin off and on.
        bench_modes: Extra ``localagent serve`` arguments of the bench's "on"
            variants: ``""`` for the plain one, and one more variant per other key.
    """

    bench_areas: ClassVar[tuple[str, ...]] = ("websocket", "errors")
    bench_modes: ClassVar[dict[str, tuple[str, ...]]] = {
        "every path": ("--set", "monitor.all_paths=true"),
    }

    def __init__(self) -> None:
        self.config = MonitorConfig()
        self.monitor: Monitor | None = None

        plugin = self
        clock = time.perf_counter

        def observe(connection: Connection, message: Message) -> Generator[None, Any, Any]:
            """Time one handled message of a monitored type (pluggy wants a generator)."""
            monitor = plugin.monitor
            started = clock()
            try:
                result = yield
            except BaseException:
                if monitor is not None:
                    monitor.metrics.handled(message.type, clock() - started, failed=True)
                raise
            if monitor is not None:
                monitor.metrics.handled(message.type, clock() - started)
            return result

        # Declares no type until on_load reads the configuration.
        setattr(observe, HANDLES_ATTRIBUTE, frozenset())
        self.observe_message = hookimpl(specname="on_message", wrapper=True)(observe)

    @hookimpl
    async def on_load(self, agent: Agent) -> Callable[[], Awaitable[None]]:
        """Read ``[plugins.monitor]``, choose the wrapped types, start the endpoints.

        Returns:
            The teardown (:meth:`stop`).

        Raises:
            ConfigError: An unknown key or a bad value (named in the message).
            ValueError: Another plugin has a route for one of the endpoints' paths.
            OSError: The monitor's own port (``port``) cannot be bound.
        """
        from ._monitor import Monitor

        self.config = config = agent.plugin_settings(NAME, MonitorConfig)
        if config.all_paths:
            delattr(self.observe_message, HANDLES_ATTRIBUTE)  # no declaration: every type
        else:
            setattr(self.observe_message, HANDLES_ATTRIBUTE, frozenset(config.types))
        monitor = Monitor(config, agent)
        await monitor.start()
        self.monitor = monitor
        return self.stop

    async def stop(self) -> None:
        """Stop the monitor's ticker and its own port; the hooks record nothing more."""
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            await monitor.stop()

    @hookimpl(trylast=True)
    def on_connect(self, connection: Connection) -> None:
        """Count the connection (after other plugins, so the optimizer sees batching)."""
        if self.monitor is not None:
            self.monitor.connected(connection)

    @hookimpl
    def on_error(self, error: BaseException, context: ErrorContext) -> None:
        """Count the failure by stage, plugin and kind; never changes the reply."""
        if self.monitor is not None:
            self.monitor.failed(error, context)
