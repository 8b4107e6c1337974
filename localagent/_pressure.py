"""What the agent holds back under pressure: a smaller outbound budget, refused connections.

Plugins that judge the agent's health (the ``monitor`` plugin's optimization
actions) call :meth:`Pressure.limit_outbound` and
:meth:`Pressure.refuse_connections` through the Agent; both are bounded and
undone by calling them again with ``1.0`` and ``None``.
"""

from __future__ import annotations

import logging

from ._budget import SHARE_DIVISOR, OutboundBudget

__all__ = ["MIN_BUDGET_FACTOR", "TRY_AGAIN_LATER", "Pressure"]

logger = logging.getLogger("localagent")

#: The WebSocket close code "Try Again Later" (RFC 6455 section 7.4.1, IANA registry).
TRY_AGAIN_LATER = 1013
#: The smallest share of ``server.max_pending_bytes`` the budget may be cut to.
MIN_BUDGET_FACTOR = 0.05


class Pressure:
    """The agent's adjustable limits, within the bounds its settings give.

    Args:
        budget: The agent's outbound budget.
        configured: ``server.max_pending_bytes``, the budget it returns to.

    Attributes:
        refusing: While not ``None``, new WebSocket connections are closed
            right after their handshake with 1013 and this reason.
    """

    def __init__(self, budget: OutboundBudget, configured: int) -> None:
        self.budget = budget
        self.configured = configured
        self.refusing: str | None = None

    def limit_outbound(self, factor: float) -> int:
        """Set the outbound budget to ``factor`` times the configured one; return it in bytes.

        ``factor`` is clamped to ``[MIN_BUDGET_FACTOR, 1.0]``: the budget never
        grows past the configuration, and never shrinks to nothing.
        """
        factor = min(1.0, max(MIN_BUDGET_FACTOR, factor))
        limit = max(1, int(self.configured * factor))
        self.budget.limit = limit
        self.budget.share = max(1, limit // SHARE_DIVISOR)
        return limit

    def refuse_connections(self, reason: str | None) -> None:
        """Close new connections with 1013 and ``reason`` from now on; ``None`` stops it."""
        if reason is not None and len(reason.encode()) > 120:
            reason = reason.encode()[:120].decode(errors="ignore")  # a close reason's room
        self.refusing = reason
