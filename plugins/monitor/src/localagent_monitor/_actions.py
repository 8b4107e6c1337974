"""The optimization cycle: bounded, reversible actions while health is warning or critical.

:class:`ActionPlan` is pure: given the health status over time it says which
level of actions to hold (0 none, 1 warning's, 2 critical's). It tightens at
once and relaxes only after the status stayed lower for ``actions_cooldown``
seconds, so a figure hovering at a threshold does not flap the actions.

:class:`PressureActions` applies a level through the agent and the
connections' state, logging each change and keeping the last ones for the
dashboard:

- the outbound budget (``server.max_pending_bytes``) cut to
  ``warning_budget`` / ``critical_budget`` of itself (``agent.limit_outbound``);
- new connections closed with 1013 "try again later" while critical
  (``agent.refuse_connections``), when ``refuse_when_critical``;
- the ``mempool`` plugin's buffer pool trimmed to ``pressure_pooled_bytes``.

Every action is undone when the level drops back, and when the plugin is
disabled or the agent stops (the plugin's teardown).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from ._config import MonitorConfig
from ._health import Health

__all__ = ["REFUSAL_REASON", "ActionEvent", "ActionPlan", "PressureActions"]

logger = logging.getLogger("localagent.monitor")

#: The close reason new connections get while critical.
REFUSAL_REASON = "agent overloaded (health critical); try again later"
#: How many action events the dashboard keeps.
EVENTS = 50
_NAMES = ("healthy", "warning", "critical")


class ActionEvent(msgspec.Struct, frozen=True):
    """One change of the actions in force.

    Attributes:
        at: Wall-clock time (``time.time()``).
        level: The level set: 0 none, 1 warning's, 2 critical's.
        text: What was done and why, as logged.
    """

    at: float
    level: int
    text: str


class ActionPlan:
    """Which level of actions to hold: up at once, down after a calm period.

    Args:
        cooldown: Seconds the status must stay below the level before it drops.
    """

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self.level = 0
        self._calm_since: float | None = None

    def decide(self, rank: int, now: float) -> int | None:
        """The level to hold at ``now`` given the status ``rank``; ``None``: unchanged."""
        if rank > self.level:
            self.level, self._calm_since = rank, None
            return rank
        if rank == self.level:
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since < self.cooldown:
            return None
        self.level, self._calm_since = rank, None
        return rank


class PressureActions:
    """Applies the plan's level to the agent, and undoes it.

    Args:
        config: The monitor's settings (factors, refusal, pool size, cooldown).
        agent: The agent (``limit_outbound``, ``refuse_connections``).
        pools: Returns the ``mempool`` buffer pools of the open connections.
    """

    def __init__(
        self, config: MonitorConfig, agent: Any, pools: Callable[[], Iterable[Any]]
    ) -> None:
        self.config = config
        self.agent = agent
        self.pools = pools
        self.plan = ActionPlan(config.actions_cooldown)
        #: The actions in force, by kind: what the dashboard lists.
        self.active: dict[str, str] = {}
        self.events: deque[ActionEvent] = deque(maxlen=EVENTS)
        self._level = 0
        self._factor = 1.0
        self._refusing = False
        self._trimmed: dict[int, tuple[Any, int]] = {}

    def update(self, health: Health, now: float) -> None:
        """Follow the health verdict reached at ``now`` (``time.monotonic()``)."""
        level = self.plan.decide(health.rank, now)
        if level is not None and level != self._level:
            reasons = f": {'; '.join(health.reasons)}" if health.reasons else ""
            self.apply(level, f"health {health.status}{reasons}")

    def undo(self, why: str = "the monitor stopped") -> None:
        """Undo every action (the plugin's teardown)."""
        self.apply(0, why)
        self.plan.level = 0

    def apply(self, level: int, why: str) -> None:
        """Hold ``level``'s actions; log and record each change with ``why``."""
        tighter = level > self._level
        self._level = level
        config, changes = self.config, []
        factor = (1.0, config.warning_budget, config.critical_budget)[level]
        limit = getattr(self.agent, "limit_outbound", None)
        if limit is not None and factor != self._factor:
            self._factor = factor
            budget = limit(factor)
            changes.append(f"outbound budget {budget} bytes ({factor:.0%} of the configured)")
            self._set("budget", f"outbound budget at {factor:.0%} of server.max_pending_bytes")
            if factor == 1.0:
                self._set("budget", None)
        refuse = level == 2 and config.refuse_when_critical
        refusing = getattr(self.agent, "refuse_connections", None)
        if refusing is not None and refuse != self._refusing:
            self._refusing = refuse
            refusing(REFUSAL_REASON if refuse else None)
            changes.append("new connections refused (1013)" if refuse else "connections accepted")
            self._set("refuse", "new connections closed with 1013 (try again later)")
            if not refuse:
                self._set("refuse", None)
        changes.extend(self._trim_pools(level >= 1))
        if not changes:
            return
        text = f"{_NAMES[level]} actions ({why}): {', '.join(changes)}"
        (logger.warning if tighter else logger.info)("monitor: %s", text)
        self.events.append(ActionEvent(time.time(), level, text))

    def _set(self, kind: str, text: str | None) -> None:
        if text is None:
            self.active.pop(kind, None)
        else:
            self.active[kind] = text

    def _trim_pools(self, trim: bool) -> list[str]:
        changes = []
        if trim:
            for pool in self.pools():
                if id(pool) in self._trimmed or not hasattr(pool, "trim"):
                    continue
                self._trimmed[id(pool)] = (pool, pool.max_pooled)
                dropped = pool.trim(self.config.pressure_pooled_bytes)
                changes.append(f"buffer pool trimmed ({dropped} idle bytes freed)")
        else:
            for pool, bound in self._trimmed.values():
                pool.trim(bound)
                changes.append("buffer pool bound restored")
            self._trimmed.clear()
        self._set(
            "pool",
            f"mempool buffer pool held to {self.config.pressure_pooled_bytes} bytes"
            if self._trimmed
            else None,
        )
        return changes
