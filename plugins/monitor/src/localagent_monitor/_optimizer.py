"""The auto-optimizer's decisions: batching on above a message rate, off below another.

Pure: :meth:`AutoOptimizer.decide` gets a connection's rate, whether its
batching is on, and the time, and says what to do. The monitor applies the
decision to the connection's batcher and logs it.
"""

from __future__ import annotations

import msgspec

__all__ = ["AutoOptimizer", "Decision"]


class Decision(msgspec.Struct, frozen=True):
    """Switch batching of one connection.

    Attributes:
        connection: The connection's id.
        enable: ``True`` to batch, ``False`` to pass messages through.
        rate: Its outbound messages per second that led to the decision.
        threshold: The threshold that rate passed.
        at: When it was decided (``time.monotonic()``).
    """

    connection: str
    enable: bool
    rate: float
    threshold: float
    at: float

    def describe(self) -> str:
        """One log line with the figures behind the decision."""
        if self.enable:
            return (
                f"batching on for connection {self.connection}: {self.rate:.0f} msg/s out "
                f"> batch_above {self.threshold:g} msg/s"
            )
        return (
            f"batching off for connection {self.connection}: {self.rate:.0f} msg/s out "
            f"< unbatch_below {self.threshold:g} msg/s"
        )


class AutoOptimizer:
    """Hysteresis between two rates, and at most one switch per connection per period.

    Args:
        batch_above: Switch batching on when a connection sends more msg/s than this.
        unbatch_below: Switch it off when it sends fewer (below ``batch_above``).
        min_switch_interval: Seconds that must pass between two switches of a connection.
    """

    def __init__(
        self, batch_above: float, unbatch_below: float, min_switch_interval: float
    ) -> None:
        if unbatch_below >= batch_above:
            raise ValueError("unbatch_below must be below batch_above")
        self.batch_above = batch_above
        self.unbatch_below = unbatch_below
        self.min_switch_interval = min_switch_interval
        self._switched: dict[str, float] = {}

    def decide(self, connection: str, rate: float, enabled: bool, now: float) -> Decision | None:
        """What to do with ``connection`` at ``now``; ``None`` to leave it as it is."""
        last = self._switched.get(connection)
        if last is not None and now - last < self.min_switch_interval:
            return None
        if not enabled and rate > self.batch_above:
            decision = Decision(connection, True, rate, self.batch_above, now)
        elif enabled and rate < self.unbatch_below:
            decision = Decision(connection, False, rate, self.unbatch_below, now)
        else:
            return None
        self._switched[connection] = now
        return decision

    def forget(self, connection: str) -> None:
        """Drop what is known about a closed connection."""
        self._switched.pop(connection, None)
