"""The running monitor: what the hooks record into, the ticker, and the HTTP endpoints.

One :class:`Monitor` per agent, created by the plugin's ``on_load``. The hooks
call :meth:`Monitor.connected` and :meth:`Monitor.failed` (and the message
wrapper bumps :attr:`Monitor.metrics` directly); a background task samples
the figures every ``tick`` seconds, judges health and runs the auto-optimizer;
the handlers of :meth:`Monitor.routes` answer the HTTP requests, on the
agent's own port (``agent.add_route``) or on the monitor's own (``_port``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
from localagent_hookspecs import (
    Agent,
    Connection,
    ErrorContext,
    HttpRequest,
    HttpResponse,
    MessageError,
    RouteHandler,
    SendFunc,
)

from ._config import MonitorConfig
from ._health import Health, HealthTracker, Reading, assess
from ._metrics import Metrics, Sample

if TYPE_CHECKING:  # each is imported where its setting or the first tick needs it
    from ._actions import PressureActions
    from ._optimizer import AutoOptimizer, Decision
    from ._port import MonitorPort
    from ._window import WindowFigures

__all__ = ["Monitor"]

logger = logging.getLogger("localagent.monitor")

#: How many throughput samples the dashboard's sparkline shows.
HISTORY = 120
#: How many auto-optimizer decisions are kept for the dashboard.
DECISIONS = 50
#: The batching and mempool plugins' keys in ``connection.state``.
BATCHING = "batching"
MEMPOOL = "mempool"

#: The endpoints, in the order the log line names them.
PATHS = ("/performance", "/performance.json", "/metrics", "/livez", "/readyz")


class ConnectionFigures(msgspec.Struct):
    """What the monitor keeps per open connection.

    Attributes:
        connection: The connection.
        sent: Outbound messages counted (only with the auto-optimizer on).
        sent_before: ``sent`` at the previous tick.
        rate: Outbound msg/s over the last tick.
    """

    connection: Connection
    sent: int = 0
    sent_before: int = 0
    rate: float = 0.0


def _plugin_rows(agent: Agent) -> list[dict[str, Any]]:
    """Name, version, load and import time of each plugin the agent knows.

    Reads ``agent.plugin_infos`` (JSON rows) where the agent offers it, else
    the runtime's ``plugins.infos`` records; an agent with neither gives none.
    """
    rows = getattr(agent, "plugin_infos", None)
    if rows is None:
        rows = getattr(getattr(agent, "plugins", None), "infos", None)
    found = []
    for row in rows or ():
        data = row.to_json() if hasattr(row, "to_json") else row
        if isinstance(data, Mapping) and data.get("registered", True):
            found.append(
                {key: data.get(key) for key in ("name", "version", "import_ms", "load_ms")}
            )
    return found


class Monitor:
    """Counters, health, auto-optimizer and HTTP endpoints of one agent.

    Args:
        config: The validated ``[plugins.monitor]`` settings.
        agent: The agent (for its token, its plugins, and its background tasks).
    """

    def __init__(self, config: MonitorConfig, agent: Agent) -> None:
        self.config = config
        self.agent = agent
        #: The runtime's counters of all traffic feed throughput and error rate.
        self.metrics = Metrics(traffic=getattr(agent, "traffic", None))
        self.health = HealthTracker(self.metrics.started)
        self.figures: WindowFigures | None = None
        self.history: deque[float] = deque(maxlen=HISTORY)
        self.decisions: deque[Decision] = deque(maxlen=DECISIONS)
        self.connections: dict[str, ConnectionFigures] = {}
        #: The auto-optimizer (``None`` unless ``auto_optimize = true``).
        self.optimizer: AutoOptimizer | None = None
        if config.auto_optimize:
            from ._optimizer import AutoOptimizer  # imported only when it is on

            self.optimizer = AutoOptimizer(
                config.batch_above, config.unbatch_below, config.min_switch_interval
            )
        #: The optimization cycle's actions (``None`` unless ``actions = true``).
        self.actions: PressureActions | None = None
        if config.actions:
            from ._actions import PressureActions  # imported only when it is on

            self.actions = PressureActions(config, agent, self.buffer_pools)
        self._samples: deque[Sample] = deque()
        self._warned_no_switch = False
        #: The monitor's own port, when ``port`` is set (else the agent's port serves).
        self.own_port: MonitorPort | None = None
        self._dashboard: str | None = None  # read at the first request for it
        self._ready = False

    # -- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The monitor's own port, or ``None`` when the endpoints are on the agent's port."""
        return None if self.own_port is None else self.own_port.port

    def routes(self) -> list[tuple[str, RouteHandler, bool]]:
        """The endpoints as (path, handler, needs_token), in :data:`PATHS` order."""
        return [
            ("/performance", self._dashboard_response, True),
            ("/performance.json", self._snapshot_response, True),
            ("/metrics", self._metrics_response, not self.config.open_metrics),
            ("/livez", self._liveness, False),
            ("/readyz", self._readiness, False),
        ]

    async def start(self) -> None:
        """Add the HTTP endpoints (or bind the monitor's own port) and start the ticker.

        Raises:
            OSError: The monitor's own port cannot be bound; the message names it.
            ValueError: Another plugin has a route for one of the paths.
        """
        config = self.config
        # prometheus_client is imported at the first scrape (~10 ms), not here: an agent
        # nobody scrapes never pays for it, and the start stays short.
        if config.port is None:
            for path, handler, needs_token in self.routes():
                self.agent.add_route(path, handler, needs_token=needs_token)
            where = "the agent's port"
            if config.host != "127.0.0.1" or config.allowed_hosts:
                logger.warning(
                    "monitor: host and allowed_hosts apply to a port of the monitor's own "
                    "([plugins.monitor] port); on the agent's port, the agent's "
                    "server.allowed_hosts apply"
                )
        else:
            from localagent._security import TokenFile

            from ._port import MonitorPort  # a second websockets server: only with `port` set

            token = TokenFile(self.agent.config_dir).get
            self.own_port = await MonitorPort.open(config, self.routes(), token)
            where = self.own_port.url
        self.metrics.gc.install()
        self._samples.append(self.metrics.sample(time.monotonic()))
        self._ticker = self.agent.spawn(self._run(), name="monitor ticker")
        self._ready = True
        logger.info("monitor listening on %s (%s)", where, ", ".join(PATHS))

    async def stop(self) -> None:
        """Stop the ticker, the GC watch and the monitor's own port (the plugin's teardown)."""
        self._ready = False
        self.metrics.gc.remove()
        if self.actions is not None:
            self.actions.undo()
        ticker = getattr(self, "_ticker", None)
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        elif self.own_port is not None:
            await self.own_port.aclose()

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.config.tick)
                try:
                    self.tick(time.monotonic())
                except Exception:
                    logger.exception("monitor: a tick failed; the next one runs as usual")
        finally:
            if self.own_port is not None:
                await self.own_port.aclose()

    # -- what the hooks call -------------------------------------------------

    def connected(self, connection: Connection) -> None:
        """Count ``connection`` and, with the auto-optimizer, watch its outbound rate."""
        metrics = self.metrics
        metrics.connections_open += 1
        metrics.connections_total += 1
        figures = ConnectionFigures(connection)
        self.connections[connection.id] = figures

        def closed() -> None:
            metrics.connections_open -= 1
            self.connections.pop(connection.id, None)
            if self.optimizer is not None:
                self.optimizer.forget(connection.id)

        connection.on_close(closed)
        if self.optimizer is None:
            return

        def count(inner: SendFunc) -> SendFunc:
            async def send(message: Mapping[str, Any]) -> None:
                batch = message.get("messages") if message.get("type") == "batch" else None
                figures.sent += len(batch) if isinstance(batch, list) else 1
                await inner(message)

            return send

        connection.wrap_send(count)
        batcher = connection.state.get(BATCHING)
        if batcher is not None and self._can_switch(batcher):
            batcher.enabled = False  # on only once the rate calls for it

    def failed(self, error: BaseException, context: ErrorContext) -> None:
        """Count a failure reported to ``on_error``."""
        kind = error.code if isinstance(error, MessageError) else type(error).__name__
        self.metrics.error(context.stage, context.plugin, kind)

    # -- the ticker ----------------------------------------------------------

    def buffer_pools(self) -> list[Any]:
        """The mempool plugin's buffer pools the open connections use (one per agent)."""
        pools: dict[int, Any] = {}
        for figures in self.connections.values():
            pool = figures.connection.state.get(MEMPOOL)
            if pool is not None:
                pools[id(pool)] = pool
        return list(pools.values())

    def queue_depth(self) -> int:
        """Outbound messages the batching plugin holds, over every open connection."""
        total = 0
        for figures in self.connections.values():
            pending = getattr(figures.connection.state.get(BATCHING), "pending", 0)
            total += pending if isinstance(pending, int) else 0
        return total

    def tick(self, now: float) -> None:
        """Sample, update the window figures and health, and run the auto-optimizer."""
        from ._window import window_figures  # at the first tick: a start never needs it

        sample = self.metrics.sample(now, self.queue_depth())
        samples = self._samples
        samples.append(sample)
        while len(samples) > 2 and now - samples[1].time >= self.config.window:
            samples.popleft()
        self.figures = figures = window_figures(samples[0], sample)
        previous = samples[-2]
        latest = window_figures(previous, sample)
        self.history.append(latest.messages_per_s)
        reading = Reading(
            errors_per_s=figures.errors_per_s,
            p99_ms=figures.p99_ms,
            queue=sample.queue,
            memory_growth_mb=(sample.memory - self.metrics.memory_at_start) / 1e6,
        )
        self.health.update(assess(reading, self.config), now)
        if self.actions is not None:
            self.actions.update(self.health.current, now)
        self._optimize(now, latest.seconds)

    def _optimize(self, now: float, seconds: float) -> None:
        for figures in list(self.connections.values()):
            figures.rate = (figures.sent - figures.sent_before) / seconds
            figures.sent_before = figures.sent
            batcher = figures.connection.state.get(BATCHING)
            if self.optimizer is None or batcher is None or not self._can_switch(batcher):
                continue
            decision = self.optimizer.decide(
                figures.connection.id, figures.rate, bool(batcher.enabled), now
            )
            if decision is not None:
                batcher.enabled = decision.enable
                self.decisions.append(decision)
                logger.info("monitor: %s", decision.describe())

    def _can_switch(self, batcher: Any) -> bool:
        if hasattr(batcher, "enabled"):
            return True
        if not self._warned_no_switch:
            self._warned_no_switch = True
            logger.warning(
                "monitor: auto_optimize is on, but this batching plugin cannot switch "
                "batching per connection (no MessageBatcher.enabled); doing nothing"
            )
        return False

    # -- what the endpoints show ---------------------------------------------

    def gauges(self) -> dict[str, float]:
        """Current values for ``/metrics`` besides the counters."""
        from ._metrics import resident_bytes

        now = time.monotonic()
        return {
            "health": self.health.current.rank,
            "healthy_share": self.health.healthy_share(now),
            "send_queue": self.queue_depth(),
            "memory_growth_bytes": resident_bytes() - self.metrics.memory_at_start,
            "cpu_percent": self.figures.cpu_percent if self.figures else 0.0,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything the dashboard shows (``/performance.json``)."""
        from ._metrics import resident_bytes

        now = time.monotonic()
        metrics, figures, health = self.metrics, self.figures, self.health.current
        traffic = metrics.traffic
        types = {}
        for name, stats in sorted(metrics.types.items()):
            latency = stats.latency
            row: dict[str, Any] = {
                "handled": stats.handled,
                "failed": stats.failed,
                "rate": figures.rates.get(name, 0.0) if figures else 0.0,
                "mean_ms": latency.sum / latency.count * 1000 if latency.count else None,
            }
            row.update(figures.percentiles.get(name, {}) if figures else {})
            types[name] = row
        memory = resident_bytes()
        return {
            "pid": os.getpid(),
            "uptime_s": now - metrics.started,
            "window_s": figures.seconds if figures else 0.0,
            "health": {
                "status": health.status,
                "reasons": list(health.reasons),
                "healthy_share": self.health.healthy_share(now),
            },
            "monitored": {
                "all_paths": self.config.all_paths,
                "types": list(self.config.types),
                "hooks": ["on_connect", "on_error"],
            },
            "throughput": {
                "total_rate": figures.messages_per_s if figures else 0.0,
                "handled": traffic.messages if traffic is not None else None,
                "monitored_rate": figures.total_rate if figures else 0.0,
                "monitored_handled": sum(stats.handled for stats in metrics.types.values()),
                "history": list(self.history),
            },
            "latency": {"p99_ms": figures.p99_ms if figures else None},
            "types": types,
            "errors": {
                "total": metrics.errors_total,
                "per_s": figures.errors_per_s if figures else 0.0,
                "replies": traffic.errors if traffic is not None else None,
                "replies_per_s": figures.error_replies_per_s if figures else 0.0,
                "ratio": figures.error_ratio if figures else None,
                "by": [
                    {"stage": stage, "plugin": plugin or None, "kind": kind, "count": count}
                    for (stage, plugin, kind), count in sorted(
                        metrics.errors.items(), key=lambda item: -item[1]
                    )
                ],
            },
            "connections": {
                "open": metrics.connections_open,
                "total": metrics.connections_total,
            },
            "queue": {"pending": self.queue_depth()},
            "memory": {
                "resident_bytes": memory,
                "growth_bytes": memory - metrics.memory_at_start,
            },
            "cpu": {
                "percent": figures.cpu_percent if figures else 0.0,
                "seconds": time.process_time(),
            },
            "gc": {
                "collections": list(metrics.gc.collections),
                "pause_ms": [seconds * 1000 for seconds in metrics.gc.pause],
                "per_s": figures.gc_per_s if figures else 0.0,
                "pause_percent": figures.gc_pause_percent if figures else 0.0,
            },
            "plugins": _plugin_rows(self.agent),
            "actions": {
                "enabled": self.actions is not None,
                "active": list(self.actions.active.values()) if self.actions else [],
                "log": [
                    {"at": event.at, "level": event.level, "text": event.text}
                    for event in reversed(self.actions.events if self.actions else ())
                ],
            },
            "optimizer": {
                "enabled": self.optimizer is not None,
                "connections": [
                    {"id": cid, "rate": c.rate, "batching": _batching_state(c.connection)}
                    for cid, c in self.connections.items()
                ],
                "decisions": [
                    {"connection": d.connection, "enable": d.enable, "text": d.describe()}
                    for d in reversed(self.decisions)
                ],
            },
        }

    # -- HTTP ------------------------------------------------------------------

    # The handlers get requests that passed the Host, Origin and token checks already.

    def _liveness(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse.text("ok")

    def _readiness(self, request: HttpRequest) -> HttpResponse:
        health: Health = self.health.current
        if not self._ready:
            return HttpResponse.text("starting", HTTPStatus.SERVICE_UNAVAILABLE)
        if health.status == "critical":
            reasons = "; ".join(health.reasons)
            return HttpResponse.text(f"critical: {reasons}", HTTPStatus.SERVICE_UNAVAILABLE)
        return HttpResponse.text(health.status)

    def _metrics_response(self, request: HttpRequest) -> HttpResponse:
        from ._prometheus import CONTENT_TYPE, exposition

        return HttpResponse(HTTPStatus.OK, exposition(self.registry), CONTENT_TYPE)

    def _snapshot_response(self, request: HttpRequest) -> HttpResponse:
        body = json.dumps(self.snapshot(), allow_nan=False).encode()
        return HttpResponse(HTTPStatus.OK, body, "application/json")

    def _dashboard_response(self, request: HttpRequest) -> HttpResponse:
        import secrets

        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        if self._dashboard is None:
            page = resources.files(__package__).joinpath("dashboard.html")
            self._dashboard = page.read_text(encoding="utf-8")
        body = self._dashboard.replace("{{nonce}}", nonce).encode()
        return HttpResponse(
            HTTPStatus.OK,
            body,
            "text/html; charset=utf-8",
            {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"},
        )

    @property
    def registry(self) -> Any:
        """The prometheus_client registry behind ``/metrics`` (built on first use)."""
        registry = getattr(self, "_registry", None)
        if registry is None:
            from ._prometheus import MonitorCollector, registry_for

            collector = MonitorCollector(self.metrics, self.gauges, self._plugin_load_times)
            registry = self._registry = registry_for(collector)
        return registry

    def _plugin_load_times(self) -> Sequence[tuple[str, float | None]]:
        return [
            (str(row["name"]), None if row["load_ms"] is None else row["load_ms"] / 1000)
            for row in _plugin_rows(self.agent)
        ]


def _batching_state(connection: Connection) -> bool | None:
    """Whether the connection's batcher batches (``None`` without batching)."""
    batcher = connection.state.get(BATCHING)
    if batcher is None:
        return None
    return bool(getattr(batcher, "enabled", True))
