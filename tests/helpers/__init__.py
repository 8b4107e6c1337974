"""Helpers shared by the integration tests (real sockets and subprocesses only)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping

from localagent.testing import AgentProcess, localagent_cmd, running_agent

__all__ = ["AgentProcess", "handshake_status", "localagent_cmd", "running_agent"]


async def handshake_status(port: int, headers: Mapping[str, str], path: str = "/") -> int:
    """Send a hand-written WebSocket opening handshake and return the HTTP status.

    Written by hand so a test controls every header (a client library would
    set Host itself).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [
            f"GET {path} HTTP/1.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()
