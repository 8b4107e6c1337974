"""Raw WebSocket plumbing for the suite: hand-written handshakes and frames over plain sockets.

Written by hand so a test controls every byte: a client library would never
send half a request or a malformed frame.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping

import attrs

from ..helpers import opening_handshake

__all__ = [
    "ServerFrame",
    "close_frame",
    "handshake",
    "masked_frame",
    "read_frame",
    "read_until_closed",
    "server_frames",
]


def handshake(
    port: int,
    headers: Mapping[str, str],
    *,
    path: str = "/",
    timeout: float = 10.0,
    rcvbuf: int | None = None,
) -> tuple[socket.socket, bytes]:
    """Open a socket, send an opening handshake, return it and the response head.

    ``rcvbuf`` sets the socket's receive buffer before it connects: small, for
    a client that reads nothing, so that the agent's writes back up at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(opening_handshake(headers, path))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client-to-server frame (clients must mask)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def close_frame(code: int, reason: str = "") -> bytes:
    """A client's close frame (masked)."""
    return masked_frame(0x8, struct.pack("!H", code) + reason.encode())


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError(f"the peer closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> ServerFrame:
    """Read the server's next frame (unmasked), however large.

    Raises:
        EOFError: The peer closed the connection first.
    """
    opcode, size = _read_exactly(sock, 2)
    size &= 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", _read_exactly(sock, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", _read_exactly(sock, 8))
    return ServerFrame(opcode & 0x0F, _read_exactly(sock, size))


def read_until_closed(sock: socket.socket, *, timeout: float) -> bytes:
    """Everything the peer sends until it closes the TCP connection.

    Raises:
        TimeoutError: The peer neither sent nor closed within ``timeout`` seconds.
    """
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


@attrs.frozen
class ServerFrame:
    """One frame sent by the server (unmasked)."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The close code of a close frame with a body."""
        if self.opcode != 0x8 or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> str | None:
        """The reason of a close frame with a body."""
        if self.close_code is None:
            return None
        return self.payload[2:].decode()


def server_frames(data: bytes) -> list[ServerFrame]:
    """Split the bytes a server sent into frames (a truncated tail is dropped)."""
    frames = []
    while len(data) >= 2:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            (size,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif size == 127:
            (size,) = struct.unpack("!Q", data[2:10])
            offset = 10
        if len(data) < offset + size:
            break
        frames.append(ServerFrame(opcode, data[offset : offset + size]))
        data = data[offset + size :]
    return frames
