"""``WebSocketConnection``: the :class:`~localagent_hookspecs.Connection` the hooks receive."""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from localagent_hookspecs import BufferSource, CloseCallback, SendFunc
from websockets.asyncio.connection import Connection as WebSocket
from websockets.exceptions import ConnectionClosed

from . import _codec
from .exceptions import ConnectionLost

__all__ = ["ConnectionBase", "WebSocketConnection", "run_callbacks"]

logger = logging.getLogger("localagent")
_ids = itertools.count(1)


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


class WebSocketConnection(ConnectionBase):
    """One WebSocket connection with a wrappable send path.

    ``send`` goes through the send path, which starts as "encode with the
    codec and write one text frame"; plugins replace it with
    :meth:`wrap_send`. ``send_frame`` always writes directly. With
    :meth:`use_buffers`, that last step encodes batch frames into reused
    buffers.
    """

    __slots__ = (
        "_buffers",
        "_closing",
        "_frame_hint",
        "_ws",
        "origin",
        "outbound",
        "remote_address",
        "state",
    )

    def __init__(
        self,
        ws: WebSocket,
        *,
        outbound: bool,
        origin: str | None = None,
        report: Callable[[BaseException, WebSocketConnection], None] | None = None,
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

    def __repr__(self) -> str:
        direction = "outbound" if self.outbound else "inbound"
        return f"<WebSocketConnection {self.id} {direction} {self.remote_address}>"

    @property
    def closed(self) -> bool:
        return self._closing or self._ws.close_code is not None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.send_path(message)

    def use_buffers(self, source: BufferSource | None) -> None:
        self._buffers = source

    async def _send_encoded(self, message: Mapping[str, Any]) -> None:
        # The send path's last step. Kept to one coroutine whether or not it
        # takes a buffer: each layer is another frame object per message.
        buffers = self._buffers
        try:
            if buffers is None or message.get("type") != "batch":
                await self._ws.send(_codec.dumps(message), text=True)
                return
            buffer = buffers.acquire(self._frame_hint)
            try:
                _codec.encode_into(message, buffer)
                self._frame_hint = len(buffer)
                # websockets copies the frame into its framed output before
                # send() first yields, so the buffer is free when it returns.
                await self._ws.send(buffer, text=True)
            finally:
                buffers.release(buffer)
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    async def send_frame(self, frame: bytes | bytearray | memoryview) -> None:
        # websockets serialises the frame (a copy) before send() first yields,
        # so the caller's buffer is free again when this returns.
        try:
            await self._ws.send(frame, text=True)
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: ConnectionClosed) -> ConnectionLost:
        return ConnectionLost(
            f"connection {self.id} is closed",
            code=exc.rcvd.code if exc.rcvd else None,
            reason=exc.rcvd.reason if exc.rcvd else "",
        )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closing = True
        await self.run_close_callbacks()
        await self._ws.close(code, reason)
