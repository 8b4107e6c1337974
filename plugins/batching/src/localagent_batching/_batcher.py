"""``MessageBatcher``: adaptive batching of one connection's outbound messages.

Pure asyncio, no transport: it wraps a send path (``async (message) -> None``)
and calls it with either one message or a batch frame
``{"type": "batch", "messages": [...]}``.

How a message travels (see the README for the user-facing version):

* ``send()`` appends the message to a queue and returns without suspending.
  Only when ``max_queue`` messages are already waiting (or other senders are
  already waiting) does it wait, until the writer has taken messages off the
  queue; it never drops a message.
* A lone message is written at once, by ``send()`` itself (which then
  returns once it is written): a message is lone when the batcher holds
  nothing and its connection says no more of its client's messages are at
  hand (``Connection.more_inbound`` is ``False``: not in the middle of an
  inbound batch frame, no frames read off the socket waiting).
* Otherwise, when the batcher is idle, the first message starts a writer
  task. A new task's first step is scheduled with ``loop.call_soon``, so the
  writer runs on the next event-loop iteration: all messages queued in the
  same iteration (the replies to an inbound batch frame, or to requests that
  arrived together) go out together. Without a connection, every message
  takes this way.
* The writer sends the queue in frames of at most ``max_batch`` messages (one
  message goes out as itself, not wrapped), one frame at a time, in order.
  Messages queued while a frame is being written go in the next frame, which
  is written as soon as the previous write returns.
* Lingering: if the frame just written was full (``max_batch`` messages) and
  more messages came in while it was being written (sustained load), and
  fewer than ``max_batch`` are queued, the writer waits until the queue holds
  ``max_batch`` messages or ``interval`` seconds have passed, whichever is
  first, then writes what it has. It never lingers with an empty queue (it
  goes idle instead), after a partial frame, after a write during which
  nothing came in (a burst larger than ``max_batch``, such as the replies to
  one big inbound batch: its rest goes out at once), when ``interval`` is 0,
  or during :meth:`MessageBatcher.flush`. So ``interval`` bounds the delay a
  message can get from lingering.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Mapping
from typing import Any

from localagent_hookspecs import Connection, SendFunc

from ._defaults import DEFAULT_INTERVAL, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_FACTOR

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_QUEUE_FACTOR",
    "BatchSendError",
    "MessageBatcher",
]


class BatchSendError(RuntimeError):
    """A batched write failed; its ``__cause__`` is what the inner send path raised.

    Raised from the next :meth:`MessageBatcher.send` (once) and to the senders
    that were waiting for room. A different type from the original on purpose:
    the message given to that ``send()`` is not the one that failed, so the
    runtime must treat it as "the send path is broken" (report, then send the
    reply directly), not, say, as "this reply cannot be encoded".
    """


def _wrap(error: BaseException) -> BaseException:
    """What a sender gets for ``error``: a ``ConnectionError`` as is, else a ``BatchSendError``."""
    if isinstance(error, ConnectionError):
        return error
    wrapped = BatchSendError(f"a batched send failed: {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MessageBatcher:
    """Queues outbound messages and writes them through ``inner`` in batch frames.

    Args:
        inner: The send path to write frames to (the connection's previous one).
        max_batch: Most messages in one frame (>= 1).
        interval: Longest time, in seconds, the writer lingers for a batch to
            fill after a full frame during which more came in (>= 0; 0 never
            lingers).
        max_queue: Most messages waiting before ``send()`` waits for room
            (>= ``max_batch``; default ``20 * max_batch``).
        connection: The connection whose send path this is: while it is
            ``congested`` (its client is not reading what was written), a
            message is not held in the queue but written through ``inner``
            once what is queued has gone, and ``send()`` waits until it is
            written, so a client that does not read slows its senders
            instead of filling the queue. While it has no ``more_inbound``
            and nothing is queued, a message is lone: written at once.
            ``None``: never congested, and no message is lone.

    Attributes:
        enabled: Set to ``False`` to stop batching this connection (what an
            auto-optimizer does when traffic is light): messages queued so
            far are still written, in order, one per frame, and later ones go
            straight to ``inner``. ``True`` again resumes batching.
        frames: Frames written successfully.
        messages: Messages in those frames.
    """

    __slots__ = (
        "_connection",
        "_done",
        "_error",
        "_flushing",
        "_inner",
        "_linger",
        "_queue",
        "_waiters",
        "_writer",
        "enabled",
        "frames",
        "interval",
        "max_batch",
        "max_queue",
        "messages",
    )

    def __init__(
        self,
        inner: SendFunc,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        interval: float = DEFAULT_INTERVAL,
        max_queue: int | None = None,
        connection: Connection | None = None,
    ) -> None:
        if max_queue is None:
            max_queue = DEFAULT_QUEUE_FACTOR * max_batch
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if interval < 0:
            raise ValueError("interval must not be negative")
        if max_queue < max_batch:
            raise ValueError("max_queue must be at least max_batch")
        self._inner = inner
        self._connection = connection
        self.max_batch = max_batch
        self.interval = interval
        self.max_queue = max_queue
        self._queue: deque[Mapping[str, Any]] = deque()
        #: Senders waiting for room, with their messages, first come first served.
        self._waiters: deque[tuple[Mapping[str, Any], asyncio.Future[None]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        #: A finished future: what ``send`` returns for a message it queued at once.
        self._done: asyncio.Future[None] | None = None
        #: Set while the writer lingers; resolving it ends the linger.
        self._linger: asyncio.Future[None] | None = None
        self._flushing = 0
        self._error: BaseException | None = None
        self.enabled = True
        self.frames = 0
        self.messages = 0

    def __repr__(self) -> str:
        return (
            f"<MessageBatcher queued={len(self._queue)} waiting={len(self._waiters)} "
            f"frames={self.frames} messages={self.messages}>"
        )

    @property
    def mean_batch_size(self) -> float:
        """Messages per frame written so far (0.0 before the first frame)."""
        return self.messages / self.frames if self.frames else 0.0

    @property
    def pending(self) -> int:
        """Messages accepted or waiting for room, not yet handed to ``inner``."""
        return len(self._queue) + len(self._waiters)

    def stats(self) -> dict[str, float]:
        """The counters: ``frames``, ``messages``, ``mean_batch_size``."""
        return {
            "frames": self.frames,
            "messages": self.messages,
            "mean_batch_size": self.mean_batch_size,
        }

    def send(self, message: Mapping[str, Any]) -> Awaitable[None]:
        """Queue ``message``; what it returns is already done unless the queue is full.

        Await the result, as with any send path. In the common case under
        load (room in the queue, batching on) this appends and returns a
        finished future, so a caller pays no coroutine per message; otherwise
        it returns a coroutine that writes a lone message (or every message,
        when batching is off) straight through, or waits for room, or raises.

        Raises (when awaited):
            BatchSendError: A previous batched write failed (raised once; the
                message given here is not queued).
            ConnectionError: A previous write found the connection closed
                (raised from every later call).
        """
        queue = self._queue
        connection = self._connection
        if (
            self._error is not None
            or not self.enabled
            or self._waiters
            or len(queue) >= self.max_queue
            or (
                connection is not None
                and (
                    connection.congested
                    or not (queue or self._writer is not None or connection.more_inbound)
                )
            )
        ):
            return self._send_slowly(message)
        queue.append(message)
        if self._writer is None:
            # The task's first step is scheduled with loop.call_soon: the next iteration.
            loop = asyncio.get_running_loop()
            self._writer = loop.create_task(self._write_all())
            if self._done is not None and self._done.get_loop() is not loop:
                self._done = None  # the batcher moved to another event loop
        elif self._linger is not None and len(queue) >= self.max_batch:
            _wake(self._linger)
            self._linger = None  # woken: later sends need not wake it again
        done = self._done
        if done is None:
            done = self._done = asyncio.get_running_loop().create_future()
            done.set_result(None)
        return done

    async def _send_slowly(self, message: Mapping[str, Any]) -> None:
        """``send`` when it does not just queue: an error, a lone message, batching off, no room."""
        if self._error is not None:
            raise self._take_error()
        connection = self._connection
        if connection is not None and connection.congested and not self._waiters:
            # Its client is not reading: hold nothing more here. Write this one
            # after what is queued, and return once it is written.
            while self._writer is not None:
                await asyncio.wait((self._writer,))
            if self._error is not None:
                raise self._take_error()
            await self._inner(message)
            self.frames += 1
            self.messages += 1
            return
        if self._writer is None and not self._queue:
            # Nothing is ahead of this message, and it is lone or batching is off
            # for this connection: write it straight through (errors go to this
            # caller). The connection's turns keep it ahead of anything sent later.
            await self._inner(message)
            self.frames += 1
            self.messages += 1
            return
        if self._waiters or len(self._queue) >= self.max_queue:
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((message, room))
            await room  # resolved once the writer moved the message into the queue
            return
        self._queue.append(message)  # batching off, but messages are ahead: keep the order
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def flush(self) -> None:
        """Write everything queued (and everything waiting for room), without lingering.

        Raises:
            BatchSendError: A batched write failed and no ``send()`` reported
                it yet. A closed connection is not an error here: what could
                not be written is gone with it.
        """
        self._flushing += 1
        try:
            while self._writer is not None:
                if self._linger is not None:
                    _wake(self._linger)
                # Shielded: a cancelled flush must not cancel a write half-way.
                await asyncio.shield(self._writer)
        finally:
            self._flushing -= 1
        if self._error is not None and not isinstance(self._error, ConnectionError):
            raise self._take_error()

    def _take_error(self) -> BaseException:
        error = self._error
        assert error is not None
        if not isinstance(error, ConnectionError):
            self._error = None  # reported once; the batcher goes on
        return _wrap(error)

    async def _write_all(self) -> None:
        """The writer: drain the queue frame by frame, then go idle."""
        queue = self._queue
        full = grew = False
        try:
            while queue:
                enabled = self.enabled
                if (
                    full
                    and grew
                    and enabled
                    and len(queue) < self.max_batch
                    and self.interval
                    and not self._flushing
                ):
                    await self._wait_to_fill()
                count = min(len(queue), self.max_batch if enabled else 1)
                if count == len(queue):  # the common case: take everything, in C
                    batch = list(queue)
                    queue.clear()
                else:
                    batch = [queue.popleft() for _ in range(count)]
                self._admit()
                left = len(queue)
                frame = batch[0] if count == 1 else {"type": "batch", "messages": batch}
                try:
                    await self._inner(frame)
                except ConnectionError as exc:
                    self._failed(exc)
                except Exception as exc:
                    # Reported (through the next send) and waiting senders failed; but
                    # one bad message (say, a reply JSON cannot encode) must not cost
                    # the others their replies: send them one by one instead.
                    self._failed(exc)
                    for message in batch:
                        await self._write_alone(message)
                else:
                    self.frames += 1
                    self.messages += count
                full = count == self.max_batch
                # Came in during the write: queued, or waiting for room.
                grew = len(queue) > left or bool(self._waiters)
        finally:
            self._writer = None

    async def _write_alone(self, message: Mapping[str, Any]) -> None:
        """Write one message; if it cannot be, answer its request with an error instead."""
        try:
            await self._inner(message)
        except ConnectionError as exc:
            self._failed(exc)
            return
        except Exception as exc:
            self._failed(exc)  # reported through the next send(), as any failed write
            msg_id = message.get("id")
            if msg_id is None:
                return
            reply = {  # the wire protocol's error reply (docs/protocol.md)
                "id": msg_id,
                "error": {
                    "code": "internal_error",
                    "message": f"the reply could not be sent: {type(exc).__name__}",
                },
            }
            try:
                await self._inner(reply)
            except Exception as second:
                self._failed(second)
                return
        self.frames += 1
        self.messages += 1

    async def _wait_to_fill(self) -> None:
        loop = asyncio.get_running_loop()
        self._linger = waiter = loop.create_future()
        timer = loop.call_later(self.interval, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._linger = None

    def _admit(self) -> None:
        """Move waiting senders' messages into the queue while there is room."""
        waiters, queue = self._waiters, self._queue
        while waiters and len(queue) < self.max_queue:
            message, room = waiters.popleft()
            if room.done():  # the sender was cancelled: its message is not sent
                continue
            queue.append(message)
            room.set_result(None)

    def _failed(self, error: Exception) -> None:
        """Remember the first failure and fail every sender waiting for room."""
        if self._error is None:
            self._error = error
        waiters, self._waiters = self._waiters, deque()
        for _message, room in waiters:
            if not room.done():
                room.set_exception(_wrap(error))
