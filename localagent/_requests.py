"""The asynchronous handlers of one connection still running, by request id (``agent.cancel``)."""

from __future__ import annotations

import asyncio

__all__ = ["RunningRequests"]


class RunningRequests:
    """The tasks of a connection's asynchronous handlers while they run, by request id."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[str | int, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def track(self, request_id: str | int | None, task: asyncio.Task[None]) -> None:
        """Record ``task`` as request ``request_id``'s until it is done (no id: nothing)."""
        if request_id is None:
            return
        self._tasks[request_id] = task

        def untrack(done: asyncio.Task[None]) -> None:
            if self._tasks.get(request_id) is done:
                del self._tasks[request_id]

        task.add_done_callback(untrack)

    def cancel(self, request_id: str | int) -> bool:
        """Cancel request ``request_id``'s handler; ``False`` if none is running.

        The handler is not answered by the runtime then: the caller answers it.
        """
        task = self._tasks.pop(request_id, None)
        if task is None or task.done():
            return False
        task.cancel()
        return True
