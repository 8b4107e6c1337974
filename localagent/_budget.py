"""``OutboundBudget``: the bytes of encoded replies that wait to be written, agent-wide.

Pure bookkeeping, no I/O. A connection's send path ends in "encode, write one
frame" (:class:`~localagent._connection.WebSocketConnection`): each encoded
frame is charged there, to its connection and to the agent's budget, and
refunded once websockets has written it out (or it was dropped). A client
that does not read its replies keeps its frames charged; the runtime then
starts no new handler for it while its charge exceeds :attr:`OutboundBudget.share`,
and when the agent's total goes over :attr:`OutboundBudget.limit` it
disconnects the connection that holds the most (:func:`heaviest`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol, TypeVar

__all__ = ["SHARE_DIVISOR", "Account", "OutboundBudget", "heaviest"]

#: A connection holding more than ``limit // SHARE_DIVISOR`` is slowed.
SHARE_DIVISOR: Final = 16


class OutboundBudget:
    """The agent's count of encoded reply bytes charged and not yet written out.

    The counters are plain attributes: the send path updates them twice per
    frame, so no method call stands between a frame and the socket.

    Args:
        limit: The most bytes that may wait across all connections
            (``server.max_pending_bytes``).

    Attributes:
        limit: As given.
        share: What one connection may have waiting before the runtime stops
            starting handlers for it: ``limit // SHARE_DIVISOR`` (at least 1).
        pending: Bytes charged and not refunded.
        slowed: How many times the runtime held back a handler because its
            connection had more than :attr:`share` waiting.
        shed: How many connections were disconnected for going over :attr:`limit`.
    """

    __slots__ = ("limit", "pending", "share", "shed", "slowed")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the outbound budget must be positive")
        self.limit = limit
        self.share = max(1, limit // SHARE_DIVISOR)
        self.pending = 0
        self.slowed = 0
        self.shed = 0

    def __repr__(self) -> str:
        return f"<OutboundBudget pending={self.pending} limit={self.limit} share={self.share}>"

    @property
    def over(self) -> bool:
        """Whether more than :attr:`limit` bytes wait."""
        return self.pending > self.limit

    def write_off(self, amount: int) -> None:
        """Stop counting ``amount`` bytes that a disconnected connection still holds.

        Its frames are dropped or end with the connection; from then on its
        refunds go to a budget of its own (:meth:`detached`), so the agent's
        total counts open connections only.
        """
        self.pending -= amount

    def detached(self) -> OutboundBudget:
        """A budget of the same limit that nothing else shares: where written-off refunds go."""
        return OutboundBudget(self.limit)


class Account(Protocol):
    """What :func:`heaviest` reads of a connection."""

    @property
    def pending_bytes(self) -> int: ...


A = TypeVar("A", bound=Account)


def heaviest(accounts: Iterable[A]) -> A | None:
    """The account with the most bytes waiting; ``None`` if none has any.

    Ties go to the first one met.
    """
    chosen: A | None = None
    most = 0
    for account in accounts:
        if account.pending_bytes > most:
            chosen, most = account, account.pending_bytes
    return chosen
