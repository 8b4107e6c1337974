"""The bridge's stdio transport: stdin and stdout as event-loop pipes, feeding the MCP server.

:func:`claimed_stdio` takes the protocol's descriptors away from fds 0 and 1
before anything runs: the wire gets private copies, fd 0 becomes
``/dev/null`` and fd 1 a copy of stderr, so a stray ``print`` (of a library, of
a child process) lands on stderr and cannot corrupt the JSON-RPC stream. fds
0-2 closed at start are opened on ``/dev/null`` first (libuv asserts otherwise).

:func:`stdio_streams` then reads the private stdin with the loop's
``connect_read_pipe`` (pipes and sockets; a thread for a regular file, a tty or
``/dev/null``: :mod:`._stdio_files`), splits it into messages (:mod:`._framing`)
and hands them to the SDK's ``Server.run`` through an anyio memory stream; the
server's replies are written straight to the private stdout (``connect_write_pipe``
for a pipe, a write-only transport for a socket, plain writes for a file). A line that is no message
is answered with its JSON-RPC error at once. At the end of stdin, requests
still being answered get ``EOF_GRACE`` seconds to send their responses
before the server is told the input ended (it cancels what is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Final, cast

import anyio
import attrs
import mcp_types as types
from mcp.shared.message import SessionMessage

from ._framing import MAX_LINE, Decoded, LineDecoder, encode
from ._stdio_files import BlockingWriter, SocketWriter, ThreadReader

__all__ = ["EOF_GRACE", "Wire", "claimed_stdio", "server_streams", "stdio_streams"]

#: Seconds the requests in flight at the end of stdin may take to answer.
EOF_GRACE: Final = 1.5
#: Messages read but not yet taken by the server past which stdin is not read.
_PAUSE_AT: Final = 256
_RESUME_AT: Final = 32


@attrs.frozen
class Wire:
    """The protocol's descriptors: private copies of the process's stdin and stdout.

    Attributes:
        read_fd: Where requests come from (fd 0 at start).
        write_fd: Where responses go (fd 1 at start).
    """

    read_fd: int
    write_fd: int


def open_closed_std_fds() -> None:
    """Open ``/dev/null`` on each of fds 0-2 that is closed (before a loop is created)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # a lower one was free: cannot be, they are checked in order
                os.dup2(opened, fd)
                os.close(opened)


@contextlib.contextmanager
def claimed_stdio() -> Iterator[Wire | None]:
    """Move stdin and stdout to private descriptors while serving; put them back after.

    On Windows it does nothing and gives ``None``: :func:`server_streams` uses
    the SDK's transport there, which claims the handles itself.
    """
    if sys.platform == "win32":
        yield None
        return
    open_closed_std_fds()
    wire = Wire(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield wire
    finally:
        os.dup2(wire.read_fd, 0)
        os.dup2(wire.write_fd, 1)
        os.close(wire.read_fd)
        os.close(wire.write_fd)


def _kind(fd: int) -> str:
    """``"pipe"``, ``"socket"`` or ``"file"`` (a regular file, a tty, ``/dev/null``)."""
    mode = os.fstat(fd).st_mode
    return "pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "file"


class _InFlight:
    """The ids of the requests read and not answered yet."""

    def __init__(self) -> None:
        self._ids: set[Any] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self, request_id: Any) -> None:
        self._ids.add(request_id)
        self._idle.clear()

    def ended(self, request_id: Any) -> None:
        self._ids.discard(request_id)
        if not self._ids:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)


class _Outbox(asyncio.BaseProtocol):
    """stdout: the server's write stream, written through at once, with the pipe's backpressure."""

    def __init__(self, in_flight: _InFlight) -> None:
        self._in_flight = in_flight
        self._transport: asyncio.WriteTransport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost = asyncio.Event()
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)  # uvloop's: no subclass

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self._writable.set()

    def write(self, message: types.JSONRPCMessage) -> None:
        """Send one message now (no await: the line leaves in this loop turn)."""
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self._in_flight.ended(message.id)
        if self._transport is not None and not self.lost.is_set():
            self._transport.write(encode(message))

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self.lost.is_set():
            raise anyio.BrokenResourceError("stdout is closed")
        self.write(item.message)
        if not self._writable.is_set():
            await self._writable.wait()

    async def aclose(self) -> None:
        self._closed = True  # the transport itself is closed by stdio_streams, after a flush

    async def __aenter__(self) -> _Outbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def flush_and_close(self, timeout: float) -> None:
        if self._transport is None:
            return
        self._transport.close()  # a pipe transport writes out its buffer first
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.lost.wait(), timeout)


class _Inbox(asyncio.Protocol):
    """stdin: the pipe's protocol on one side, the server's read stream on the other."""

    def __init__(
        self, outbox: _Outbox, in_flight: _InFlight, eof_grace: float, max_line: int = MAX_LINE
    ) -> None:
        self._outbox = outbox
        self._in_flight = in_flight
        self._eof_grace = eof_grace
        self._decoder = LineDecoder(max_line)
        self._send, self._receive = anyio.create_memory_object_stream[SessionMessage | Exception](
            math.inf
        )
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False
        self._ending: asyncio.Task[None] | None = None
        self._closed = False

    # -- the protocol: called by the loop (or the reader thread, through the loop) --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.ReadTransport, transport)

    def data_received(self, data: bytes) -> None:
        self._deliver(self._decoder.feed(data))

    def eof_received(self) -> bool:
        self._deliver(self._decoder.finish())
        self.end(self._eof_grace)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(self._eof_grace)

    def _deliver(self, decoded: list[Decoded]) -> None:
        for message, error in decoded:
            if message is None:  # no message: its error reply goes straight back
                assert error is not None
                self._outbox.write(error)
                continue
            if isinstance(message, types.JSONRPCRequest):
                self._in_flight.started(message.id)
            elif (
                isinstance(message, types.JSONRPCNotification)
                and message.method == "notifications/cancelled"
                and message.params
            ):  # a cancelled request gets no response
                self._in_flight.ended(message.params.get("requestId"))
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._send.send_nowait(SessionMessage(message))
        if not self._paused and self._send.statistics().current_buffer_used >= _PAUSE_AT:
            assert self._transport is not None
            self._paused = True
            self._transport.pause_reading()

    def end(self, grace: float) -> None:
        """No more input: after ``grace`` seconds at most for the calls in flight, close."""
        if self._ending is None and not self._closed:
            self._ending = asyncio.get_running_loop().create_task(self._end_after(grace))

    async def _end_after(self, grace: float) -> None:
        await self._in_flight.wait_idle(grace)
        self._send.close()

    # -- the read stream: what the SDK's Server.run iterates --

    async def receive(self) -> SessionMessage | Exception:
        item = await self._receive.receive()
        if self._paused and self._send.statistics().current_buffer_used <= _RESUME_AT:
            assert self._transport is not None
            self._paused = False
            self._transport.resume_reading()
        return item

    def __aiter__(self) -> _Inbox:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._receive.close()

    async def __aenter__(self) -> _Inbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def close(self) -> None:
        self._closed = True
        self._send.close()
        self._receive.close()
        if self._ending is not None:
            self._ending.cancel()


@contextlib.asynccontextmanager
async def stdio_streams(
    wire: Wire, *, eof_grace: float = EOF_GRACE, max_line: int = MAX_LINE
) -> AsyncIterator[tuple[_Inbox, _Outbox]]:
    """The read and write streams of ``Server.run`` over ``wire``, open while in the block.

    ``max_line``: the longest input line kept, in bytes (see :class:`~._framing.LineDecoder`).
    """
    loop = asyncio.get_running_loop()
    in_flight = _InFlight()
    outbox = _Outbox(in_flight)
    # Each transport gets its own copy of the descriptor: it closes it when done.
    write_fd = os.dup(wire.write_fd)
    match _kind(write_fd):
        case "pipe":
            await loop.connect_write_pipe(lambda: outbox, os.fdopen(write_fd, "wb", buffering=0))
        case "socket":
            SocketWriter(loop, write_fd, outbox)
        case _:
            BlockingWriter(write_fd, outbox)
    inbox = _Inbox(outbox, in_flight, eof_grace, max_line)
    read_fd = os.dup(wire.read_fd)
    reader: asyncio.ReadTransport
    if _kind(read_fd) != "file":
        reader, _ = await loop.connect_read_pipe(
            lambda: inbox, os.fdopen(read_fd, "rb", buffering=0)
        )
    else:
        reader = ThreadReader(loop, read_fd, inbox)
    # The host stopped reading our replies: nothing more can be answered.
    watch_stdout = loop.create_task(_end_when_lost(outbox, inbox))
    try:
        yield inbox, outbox
    finally:
        watch_stdout.cancel()
        reader.close()
        inbox.close()
        await outbox.flush_and_close(timeout=2.0)


@contextlib.asynccontextmanager
async def server_streams(
    wire: Wire | None = None, max_line: int = MAX_LINE
) -> AsyncIterator[tuple[Any, Any]]:
    """The streams of ``Server.run`` on this process's stdio (``wire``: already claimed).

    On Windows the loop cannot wait on inherited stdio handles: the SDK's own
    ``stdio_server`` (a thread per direction) serves there, as before (and
    ``max_line`` does not apply).
    """
    if sys.platform == "win32":
        from mcp.server.stdio import stdio_server

        async with stdio_server() as streams:
            yield streams
        return
    with contextlib.ExitStack() as claim:
        wire = wire or claim.enter_context(claimed_stdio())
        assert wire is not None
        async with stdio_streams(wire, max_line=max_line) as streams:
            yield streams


async def _end_when_lost(outbox: _Outbox, inbox: _Inbox) -> None:
    await outbox.lost.wait()
    inbox.end(0)
