"""Stdio the loop's pipe transports do not serve: a reader thread, plain writes, a socket writer.

The event loop watches only pipes and sockets (``connect_read_pipe`` refuses a
regular file, and epoll cannot wait on one or on ``/dev/null``; a tty is left
to a blocking read so both loops behave alike). For those, :class:`ThreadReader`
reads the descriptor in a daemon thread and hands each piece to the same
protocol the pipe transport would, on the loop's thread; :class:`BlockingWriter`
writes with ``os.write`` (a file or a terminal takes a line at once).

A host written with Node.js or libuv gives its child sockets, not pipes, for
stdio. ``connect_write_pipe`` on a socket reads it to notice a hang-up, which
breaks when the socket is stdin's too (uvloop's transport fails on the data);
:class:`SocketWriter` only writes, and waits for the socket to take more when it
is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable

__all__ = ["BlockingWriter", "SocketWriter", "ThreadReader"]

_CHUNK = 65536


class ThreadReader(asyncio.ReadTransport):
    """Reads ``fd`` (it takes it over and closes it) in a thread, feeding ``protocol``.

    End of file, a hung-up terminal (``EIO`` from a pty whose other side
    closed) and any other read error reach the protocol as ``eof_received``.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        self._may_read = threading.Event()
        self._may_read.set()
        self._closing = False
        protocol.connection_made(self)
        self._thread = threading.Thread(target=self._run, name="localagent-mcp-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self._may_read.wait()
                if self._closing:
                    return
                try:
                    data = os.read(self._fd, _CHUNK)
                except OSError:  # EIO: the terminal hung up; any other: unreadable
                    data = b""  # as good as end of file
                if not data:
                    self._call(self._protocol.eof_received)
                    return
                self._call(self._protocol.data_received, data)
        finally:
            os.close(self._fd)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(callback, *args)

    def pause_reading(self) -> None:
        self._may_read.clear()

    def resume_reading(self) -> None:
        self._may_read.set()

    def is_reading(self) -> bool:
        return self._may_read.is_set() and not self._closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop after the read under way (a blocked read ends with the process)."""
        self._closing = True
        self._may_read.set()


class BlockingWriter(asyncio.WriteTransport):
    """Writes to ``fd`` (it takes it over and closes it) at once, from the loop's thread."""

    def __init__(self, fd: int, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._fd = fd
        self._protocol = protocol
        self._closing = False
        protocol.connection_made(self)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:  # EPIPE and the like: the reader is gone
            self._close(exc)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._close(None)

    def _close(self, exc: Exception | None) -> None:
        if self._closing:
            return
        self._closing = True
        os.close(self._fd)
        self._protocol.connection_lost(exc)


class SocketWriter(asyncio.WriteTransport):
    """Writes to socket ``fd`` (it takes it over and closes it) without ever reading it.

    A write goes out at once; what the socket does not take is kept and sent
    when it is writable again, with ``pause_writing`` / ``resume_writing`` to
    the protocol past 64 KiB kept.
    """

    _HIGH = 64 * 1024
    _LOW = 16 * 1024

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, protocol: asyncio.BaseProtocol
    ) -> None:
        super().__init__()
        os.set_blocking(fd, False)
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        self._buffer = bytearray()
        self._paused = False
        self._closing = False
        self._closed = False
        protocol.connection_made(self)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if not self._buffer:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # EPIPE and the like: the reader is gone
                self._finish(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._flush)
        self._buffer += data
        if not self._paused and len(self._buffer) > self._HIGH:
            self._paused = True
            self._protocol.pause_writing()

    def _flush(self) -> None:
        try:
            sent = os.write(self._fd, self._buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(exc)
            return
        del self._buffer[:sent]
        if self._paused and len(self._buffer) <= self._LOW:
            self._paused = False
            self._protocol.resume_writing()
        if not self._buffer:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close once what is kept is written."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = self._closing = True
        if self._buffer:
            self._loop.remove_writer(self._fd)
            self._buffer.clear()
        os.close(self._fd)
        self._protocol.connection_lost(exc)
