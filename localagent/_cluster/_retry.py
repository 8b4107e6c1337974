"""Waiting out a Redis outage: a growing backoff, and a lost cancellation seen for what it is."""

from __future__ import annotations

import asyncio
import time

__all__ = ["Backoff", "raise_if_cancelled"]


class Backoff:
    """Waits growing from 0.1 s to 2 s between attempts while Redis is away."""

    def __init__(self) -> None:
        self.delay = 0.0
        #: When the first wait of the current outage began.
        self.since = 0.0

    async def wait(self) -> None:
        if not self.delay:
            self.since = time.monotonic()
        self.delay = min(2.0, max(0.1, self.delay * 2))
        await asyncio.sleep(self.delay)

    def reset(self) -> None:
        self.delay = 0.0


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was asked to stop but the request was lost.

    A cancellation that lands while redis-py waits under ``asyncio.timeout`` can
    come out as a ``TimeoutError`` (Python 3.11), which the retry loops take for
    an outage: the task is then still "cancelling" but nothing raises again, and
    the agent's shutdown would wait for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
