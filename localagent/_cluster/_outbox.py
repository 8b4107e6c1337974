"""``Outbox``: the messages for one agent's stream, gathered into one entry per write.

Several requests (or replies) for the same agent travel in one stream entry
with one MAC, so that what each entry costs (its ``XADD``, its parsing on the
reading side, its ``XACK``, its MAC) is paid once per batch. No timer: what is
put during one event-loop iteration is written at its end (built when the
node's auto-pipeline sends that iteration's commands, in the same pipeline), and while the entry
for an agent is being written, what is put for that agent meanwhile waits for
that write to complete and goes in the next entry. A lone message therefore
leaves at once, and under load the entries grow with the load. One write per
agent at a time also keeps the entries for an agent in the order they were put.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Batch", "Outbox"]

T = TypeVar("T")


class Batch(Generic[T]):
    """The messages of one entry, and the future of its ``XADD``'s reply."""

    __slots__ = ("items", "written")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Outbox(Generic[T]):
    """Writes what is put for each agent as entries carrying several messages.

    Args:
        write: Queues a command in the node's auto-pipeline (the future of its reply).
        defer: Calls its argument when the auto-pipeline's commands of this iteration
            are about to be sent (:meth:`AutoPipeline.before_flush`).
        command: The ``XADD`` (its arguments) of an entry with ``items`` for ``agent``.
        after: Called with the batch right after its ``XADD`` is queued (commands it
            queues go in the same pipeline, after the ``XADD``).
    """

    def __init__(
        self,
        write: Callable[..., asyncio.Future[Any]],
        defer: Callable[[Callable[[], None]], None],
        command: Callable[[str, Sequence[T]], tuple[Any, ...]],
        after: Callable[[Batch[T]], None] | None = None,
    ) -> None:
        self._write = write
        self._defer = defer
        self._command = command
        self._after = after
        self._open: dict[str, Batch[T]] = {}
        self._busy: set[str] = set()
        self._scheduled = False

    def put(self, agent: str, item: T) -> Batch[T]:
        """Queue ``item`` for ``agent``'s stream; the batch it will be written in."""
        batch = self._open.get(agent)
        if batch is None:
            batch = self._open[agent] = Batch()
            if agent not in self._busy:
                self._schedule()
        batch.items.append(item)
        return batch

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._defer(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        for agent in [agent for agent in self._open if agent not in self._busy]:
            batch = self._open.pop(agent)
            try:
                written = self._write(*self._command(agent, batch.items))
            except Exception as exc:  # not even queued: fail its senders
                if not batch.written.done():
                    batch.written.set_exception(exc)
                    batch.written.exception()
                continue
            self._busy.add(agent)
            if self._after is not None:
                self._after(batch)
            written.add_done_callback(functools.partial(self._written, agent, batch))

    def _written(self, agent: str, batch: Batch[T], future: asyncio.Future[Any]) -> None:
        self._busy.discard(agent)
        if not batch.written.done():
            if future.cancelled():
                batch.written.cancel()
            elif (error := future.exception()) is not None:
                batch.written.set_exception(error)
                batch.written.exception()  # retrieved: the senders that care await it
            else:
                batch.written.set_result(future.result())
        if agent in self._open:
            self._schedule()
