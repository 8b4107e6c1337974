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

__all__ = ["ServerFrame", "handshake", "masked_frame", "read_until_closed", "server_frames"]


def handshake(
    port: int, headers: Mapping[str, str], *, path: str = "/", timeout: float = 10.0
) -> tuple[socket.socket, bytes]:
    """Open a socket, send an opening handshake, return it and the response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
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
