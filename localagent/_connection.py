"""``WebSocketConnection``: the :class:`~localagent_hookspecs.Connection` the hooks receive."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sized
from typing import Any, Final

from localagent_hookspecs import BufferSource, CloseCallback, SendFunc
from websockets.asyncio.connection import Connection as WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from . import _codec
from ._budget import OutboundBudget
from ._requests import RunningRequests
from .exceptions import ConnectionLost

__all__ = ["ConnectionBase", "WebSocketConnection", "run_callbacks"]

logger = logging.getLogger("localagent")
_ids = itertools.count(1)
#: Seconds a shed connection's client may read nothing before the transport,
#: and what it still holds, is dropped.
SHED_CLOSE_TIMEOUT: Final = 2.0
#: The limit of a connection given no budget: never reached.
_UNLIMITED = sys.maxsize


async def run_callbacks(
    callbacks: list[CloseCallback], failed: Callable[[Exception], None]
) -> None:
    """Call each callback (sync or async) in order; ``failed`` hears of each that raises."""
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            failed(exc)


class ConnectionBase:
    """What the runtime's connections share: a wrappable send path and close callbacks.

    A subclass sets ``id``, ``send_path``, ``_close_callbacks`` (a list) and
    ``_report`` (who hears of a failing close callback; ``None``: the log).
    """

    __slots__ = ("_close_callbacks", "_report", "id", "send_path")

    id: str
    send_path: SendFunc
    _close_callbacks: list[CloseCallback]
    _report: Callable[[BaseException, Any], None] | None

    def wrap_send(self, wrapper: Callable[[SendFunc], SendFunc]) -> None:
        self.send_path = wrapper(self.send_path)

    def use_buffers(self, source: BufferSource | None) -> None:
        """Ignored: this connection writes no WebSocket frames of its own."""

    @property
    def congested(self) -> bool:
        """Never: this connection writes no WebSocket frames of its own."""
        return False

    @property
    def more_inbound(self) -> bool:
        """Always: this connection cannot tell whether more of its messages are at hand."""
        return True

    def reserve(self, size: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Nothing to wait for: this connection writes no WebSocket frames of its own."""
        return _NO_RESERVATION

    def on_close(self, callback: CloseCallback) -> None:
        self._close_callbacks.append(callback)

    async def run_close_callbacks(self) -> None:
        """Run the close callbacks (once); failures go to the error reporter."""
        callbacks, self._close_callbacks = self._close_callbacks, []
        await run_callbacks(callbacks, self._close_failed)

    def _close_failed(self, exc: Exception) -> None:
        if self._report is not None:
            self._report(exc, self)
        else:
            logger.error("close callback of %s failed", self.id, exc_info=exc)


class _NoReservation(contextlib.AbstractAsyncContextManager[None]):
    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_RESERVATION: Final = _NoReservation()


class _Reservation(contextlib.AbstractAsyncContextManager[None]):
    """``async with connection.reserve(size)``: see :meth:`WebSocketConnection.reserve`."""

    __slots__ = ("_connection", "_held", "_size")

    def __init__(self, connection: WebSocketConnection, size: int) -> None:
        if size < 0:
            raise ValueError("a reservation cannot be negative")
        self._connection = connection
        self._size = size
        self._held = False

    async def __aenter__(self) -> None:
        await self._connection._charge_reserved(self._size)
        self._held = True

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if not self._held:
            return
        self._held = False
        task = asyncio.current_task()
        if exc_type is None and task is not None:
            # The block built a reply that its handler is about to return: keep
            # it charged until the task (the runtime's, for one message) ends,
            # which is once the reply has been handed to the send path.
            self._connection._hold_until_done(task, self._size)
        else:
            self._connection._refund(self._size)


class WebSocketConnection(ConnectionBase):
    """One WebSocket connection with a wrappable send path.

    ``send`` goes through the send path, which starts as "encode with the
    codec and write one text frame"; plugins replace it with
    :meth:`wrap_send`. ``send_frame`` always writes directly. With
    :meth:`use_buffers`, that last step encodes batch frames into reused
    buffers.

    The last step charges each encoded frame to the agent's
    :class:`~localagent._budget.OutboundBudget` until websockets has written
    it out, and writes one frame at a time: while a frame waits for the
    client to read (websockets' write buffer is full), the next ones wait
    their turn here, in order, so the closing frame of :meth:`shed` is
    queued behind at most one of them. A reply for a connection that is
    closing is dropped before it is encoded.

    Attributes:
        pending_bytes: Bytes of this connection's encoded frames charged and
            not yet written out.
        requests: Its asynchronous handlers still running, by request id.
        in_batch: The runtime is dispatching the members of a batch frame
            (set per frame; part of :attr:`more_inbound`).
    """

    __slots__ = (
        "_budget",
        "_buffers",
        "_closer",
        "_closing",
        "_frame_hint",
        "_inbound",
        "_over_budget",
        "_room",
        "_shed",
        "_turns",
        "_writing",
        "_ws",
        "in_batch",
        "origin",
        "outbound",
        "pending_bytes",
        "remote_address",
        "requests",
        "state",
    )

    def __init__(
        self,
        ws: WebSocket,
        *,
        outbound: bool,
        origin: str | None = None,
        report: Callable[[BaseException, WebSocketConnection], None] | None = None,
        budget: OutboundBudget | None = None,
        over_budget: Callable[[WebSocketConnection], None] | None = None,
    ) -> None:
        self._ws = ws
        self._report = report
        self.id = f"c{next(_ids)}"
        self.outbound = outbound
        self.origin = origin
        address = ws.remote_address
        self.remote_address: str | None = (
            f"{address[0]}:{address[1]}" if isinstance(address, tuple) else None
        )
        self.state: dict[str, Any] = {}
        #: The current send path; the runtime calls it directly on the hot path.
        self.send_path: SendFunc = self._send_encoded
        self._close_callbacks: list[CloseCallback] = []
        self._closing = False
        self._buffers: BufferSource | None = None
        #: The size of the last batch frame, to ask the buffer source for.
        self._frame_hint = 0
        self._budget = budget if budget is not None else OutboundBudget(_UNLIMITED)
        #: Called when a charge takes the budget over its limit (may :meth:`shed` anyone).
        self._over_budget = over_budget
        self.pending_bytes = 0
        #: A frame of this connection is in websockets' send (or has the turn to be).
        self._writing = False
        #: Senders waiting for their turn to write, first come first served.
        self._turns: deque[asyncio.Future[None]] = deque()
        #: Reservations waiting for this connection's waiting bytes to go down.
        self._room: deque[asyncio.Future[None]] = deque()
        self._shed: str | None = None
        self._closer: asyncio.Task[None] | None = None
        self.requests = RunningRequests()
        self.in_batch = False
        # websockets' frames read and not yet received (an internal; the locked 17.4
        # has it). Without it, more_inbound is True: batching holds every reply.
        self._inbound: Sized | None = getattr(getattr(ws, "recv_messages", None), "frames", None)

    def __repr__(self) -> str:
        direction = "outbound" if self.outbound else "inbound"
        return f"<WebSocketConnection {self.id} {direction} {self.remote_address}>"

    @property
    def closed(self) -> bool:
        return self._closing or self._ws.close_code is not None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def shed_reason(self) -> str | None:
        """Why :meth:`shed` disconnected this connection; ``None`` if it did not."""
        return self._shed

    @property
    def congested(self) -> bool:
        """Whether more than this connection's share of the outbound budget waits."""
        return self.pending_bytes > self._budget.share

    @property
    def more_inbound(self) -> bool:
        """Whether more inbound messages are at hand: the rest of a batch frame, or frames read."""
        inbound = self._inbound
        return self.in_batch or inbound is None or len(inbound) > 0

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.send_path(message)

    def reserve(self, size: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Count ``size`` bytes of a reply about to be built, from now until it is sent.

        ``async with connection.reserve(n):`` waits while this connection has
        bytes waiting and ``n`` more would take it over its share of the
        outbound budget, then charges ``n`` to it and to the agent. The charge
        lasts until the block ends and, if it ends without an exception, until
        the task that entered it is done: for a handler, once the runtime has
        handed its reply to the send path, which charges the encoded frame.
        A handler that builds a large reply (``fs.read``) holds one around
        the building: a client that does not read its replies then gets one
        large reply built at a time, not one per request in flight. When
        nothing of this connection waits, a reservation goes through
        whatever its size, so a reply larger than the share is still served.

        Raises (on entering):
            ConnectionLost: The connection is closed, or was shed to keep the
                agent within its budget (possibly for this charge).
        """
        return _Reservation(self, size)

    async def _charge_reserved(self, size: int) -> None:
        share = self._budget.share
        while self.pending_bytes and self.pending_bytes + size > share:
            if self._shed is not None or self.closed:
                raise self._dropped()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                del waiter  # see _wait_turn: an exception's traceback holds this frame
        if self._shed is not None or self.closed:
            raise self._dropped()
        budget = self._budget
        self.pending_bytes += size
        budget.pending += size
        if budget.pending > budget.limit and self._over_budget is not None:
            self._over_budget(self)  # sheds the heaviest connection, maybe this one
            if self.shed_reason is not None:  # a property: mypy narrowed _shed above
                self._refund(size)
                raise self._dropped()

    def _hold_until_done(self, task: asyncio.Task[Any], size: int) -> None:
        task.add_done_callback(lambda _: self._refund(size))

    def _refund(self, size: int) -> None:
        """Stop charging ``size`` bytes; wake a reservation if there is room now."""
        self.pending_bytes -= size
        self._budget.pending -= size  # read again: shed() may have detached it
        if self._room:
            self._wake_room()

    def _wake_room(self) -> None:
        # Wake every waiter: each checks again whether it fits (in order of arrival).
        room, self._room = self._room, deque()
        for waiter in room:
            if not waiter.done():
                waiter.set_result(None)

    def use_buffers(self, source: BufferSource | None) -> None:
        self._buffers = source

    async def _send_encoded(
        self,
        message: Mapping[str, Any] | None,
        frame: bytes | bytearray | memoryview | None = None,
    ) -> None:
        # The send path's last step (and send_frame's, with ``frame``). Kept to
        # one coroutine whether or not it takes a buffer: each layer is another
        # frame object per message.
        if self._shed is not None or self._ws.protocol.state is not OPEN:
            raise self._dropped()  # before encoding: nobody will read it
        buffers = self._buffers
        buffer = None
        if message is None:
            assert frame is not None
        elif buffers is None or message.get("type") != "batch":
            frame = _codec.dumps(message)
        else:
            buffer = buffers.acquire(self._frame_hint)
            try:
                _codec.encode_into(message, buffer)
            except BaseException:
                buffers.release(buffer)
                raise
            self._frame_hint = len(buffer)
            frame = buffer
        # Charged twice: while websockets writes it, the frame is held here and
        # the transport keeps a copy of what the socket did not take at once.
        size = 2 * len(frame)
        budget = self._budget
        self.pending_bytes += size
        budget.pending += size
        try:
            if budget.pending > budget.limit and self._over_budget is not None:
                self._over_budget(self)  # sheds the heaviest connection, maybe this one
                if self._shed is not None:
                    raise self._dropped()
            if self._writing or self._turns:
                await self._wait_turn()
            else:
                self._writing = True
            try:
                # websockets copies the frame into its framed output before
                # send() first yields, so a buffer is free when it returns.
                await self._ws.send(frame, text=True)
            finally:
                self._writing = False
                if self._turns:
                    self._next_turn()
        except ConnectionClosed as exc:
            raise self._lost(exc) from None
        finally:
            self._refund(size)
            if buffer is not None:
                buffers.release(buffer)  # type: ignore[union-attr]

    async def send_frame(self, frame: bytes | bytearray | memoryview) -> None:
        # Charged, and in turn, like any frame of the send path: websockets
        # serialises it (a copy) before send() first yields, so the caller's
        # buffer is free again when this returns.
        await self._send_encoded(None, frame)

    async def _wait_turn(self) -> None:
        """Wait until the frames queued before this one are written; then it is this one's turn.

        Raises:
            ConnectionLost: The connection was shed or closed meanwhile.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._pass_turn()  # handed the turn, then cancelled: hand it on
            else:
                with contextlib.suppress(ValueError):
                    self._turns.remove(waiter)
            # The future holds the exception, whose traceback holds this frame:
            # without this, the sender's frame (and its encoded reply) would
            # wait for the cyclic garbage collector.
            del waiter
            raise
        if self._shed is not None or self._ws.protocol.state is not OPEN:
            self._pass_turn()
            raise self._dropped()

    def _next_turn(self) -> None:
        """Hand the turn to the first live waiter (it owns ``_writing`` from now on)."""
        turns = self._turns
        while turns:
            waiter = turns.popleft()
            if not waiter.done():
                self._writing = True
                waiter.set_result(None)
                return

    def _pass_turn(self) -> None:
        self._writing = False
        if self._turns:
            self._next_turn()

    async def written(self) -> None:
        """Wait until the frames waiting now have been written out.

        The runtime awaits this before it starts another handler for a
        connection that holds more than its share of the budget.

        Raises:
            ConnectionLost: The connection was shed or closed meanwhile.
        """
        if self._writing or self._turns:
            await self._wait_turn()
            self._pass_turn()

    def shed(self, code: int, reason: str) -> None:
        """Disconnect this connection because of what it holds; frees what it can now.

        Its waiting frames are dropped at once (their senders get
        :class:`ConnectionLost`), its bytes stop counting against the agent's
        budget, and a task closes it with ``code`` and ``reason``: the closing
        frame follows at most the one frame websockets is writing, for a
        client that reads again. One that never does is cut off after
        websockets' close timeout.
        """
        if self._shed is not None:
            return
        self._shed = reason
        self._closing = True
        self._budget.write_off(self.pending_bytes)
        self._budget = self._budget.detached()
        turns, self._turns = self._turns, deque()
        for waiter in turns:
            if not waiter.done():
                waiter.set_exception(self._dropped())
        self._wake_room()  # they find the connection shed and raise
        self._closer = asyncio.get_running_loop().create_task(self._close_shed(code, reason))

    async def _close_shed(self, code: int, reason: str) -> None:
        """Close after :meth:`shed`; cut off a client that stops reading before its close frame.

        What the transport still holds for it (the rest of a large frame) is
        no longer charged to the budget, so it must not linger for websockets'
        whole close timeout: a client that reads nothing for
        :data:`SHED_CLOSE_TIMEOUT` seconds is cut off; one that reads gets to
        the close frame.
        """
        closing = asyncio.ensure_future(self.close(code, reason))
        transport = self._ws.transport
        left = transport.get_write_buffer_size()
        while not closing.done():
            await asyncio.wait((closing,), timeout=SHED_CLOSE_TIMEOUT)
            now = transport.get_write_buffer_size()
            if not closing.done() and now >= left:  # it read nothing meanwhile
                transport.abort()
            left = now
        with contextlib.suppress(Exception):
            closing.result()

    async def wait_shed(self) -> None:
        """If :meth:`shed` closed this connection, wait until its close is done."""
        if self._closer is not None:
            await self._closer

    def _dropped(self) -> ConnectionLost:
        reason = self._shed or "closing"
        return ConnectionLost(f"connection {self.id} is closed ({reason})")

    def _lost(self, exc: ConnectionClosed) -> ConnectionLost:
        return ConnectionLost(
            f"connection {self.id} is closed",
            code=exc.rcvd.code if exc.rcvd else None,
            reason=exc.rcvd.reason if exc.rcvd else "",
        )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closing = True
        self._wake_room()  # reservations waiting find it closed and raise
        await self.run_close_callbacks()
        await self._ws.close(code, reason)
