"""The runtime's traffic counters: every message and every error reply, at the cost of an add."""

from __future__ import annotations

__all__ = ["Traffic"]


class Traffic:
    """Counts kept by the runtime itself, for all traffic (no wrapper, no hook call).

    Attributes:
        messages: Inbound messages received (each member of a batch frame
            counts), valid or not, since the agent started.
        errors: Error replies sent for them (a handler's failure, an unknown
            type, an invalid message, a reply that could not be encoded).
    """

    __slots__ = ("errors", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.errors = 0
