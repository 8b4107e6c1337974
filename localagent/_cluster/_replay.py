"""Telling a copy of a request from the request: sliding windows over request numbers.

Pure code, no I/O. A request's uid is ``TOKEN-N``: ``TOKEN`` names the sending
node (random, one per process) and ``N`` counts its requests. A node writes its
requests in the order it numbers them, so an inbox sees each sender's numbers
rise, give or take a few that overtake each other on two connections. A guard keeps,
per sender, the highest number seen and a bitmap of the :data:`WINDOW` numbers
below it (as IPsec's anti-replay window does): a number seen before is a copy. The
memory is bounded by the senders, not by the traffic.
"""

from __future__ import annotations

from typing import Final

__all__ = ["WINDOW", "ReplayGuard"]

#: Numbers remembered below a sender's highest (a bitmap of this many bits).
WINDOW: Final = 4096
_FULL: Final = (1 << WINDOW) - 1


class _Window:
    __slots__ = ("highest", "last_seen", "mask")

    def __init__(self) -> None:
        self.highest = -1
        self.mask = 0  # bit k: number highest - k was seen
        self.last_seen = 0.0


class ReplayGuard:
    """The request numbers seen from each sender, within a sliding window."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, uid: str, now: float) -> bool | None:
        """Record ``uid``; ``True`` if it is new, ``False`` if it was seen before.

        ``None``: too far below the sender's highest number to tell (the
        caller asks the "handled" records), or not a ``TOKEN-N`` uid.
        """
        token, _, number = uid.rpartition("-")
        if not token or not number.isdigit():
            return None
        n = int(number)
        window = self._windows.get(token)
        if window is None:
            window = self._windows[token] = _Window()
        window.last_seen = now
        shift = n - window.highest
        if shift > 0:
            window.mask = ((window.mask << shift) | 1) & _FULL if shift < WINDOW else 1
            window.highest = n
            return True
        if -shift >= WINDOW:
            return None
        bit = 1 << -shift
        if window.mask & bit:
            return False
        window.mask |= bit
        return True

    def forget_before(self, oldest: float) -> None:
        """Drop the senders not heard from since ``oldest`` (their entries have expired)."""
        self._windows = {
            token: window for token, window in self._windows.items() if window.last_seen >= oldest
        }
