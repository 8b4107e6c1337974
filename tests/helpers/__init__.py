"""Helpers shared by the integration tests (real sockets and subprocesses only)."""

from __future__ import annotations

import ast
import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence

import attrs

from localagent.testing import AgentProcess, localagent_cmd, running_agent

__all__ = [
    "AgentProcess",
    "HttpReply",
    "handshake_status",
    "http_request",
    "imported_by",
    "localagent_cmd",
    "opening_handshake",
    "running_agent",
]


def imported_by(env: Mapping[str, str], args: Sequence[str], modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` (top-level or dotted names) ``localagent ARGS`` imports.

    Runs the command in a fresh interpreter and looks at ``sys.modules`` after it.
    """
    probe = (
        "import sys\n"
        "from localagent.cli import main\n"
        f"main({list(args)!r}, standalone_mode=False)\n"
        f"print('IMPORTED', sorted({set(modules)!r} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=dict(env), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("IMPORTED "))
    return list(ast.literal_eval(line.removeprefix("IMPORTED ")))


def opening_handshake(headers: Mapping[str, str], path: str = "/") -> bytes:
    """A WebSocket opening handshake request with exactly ``headers`` besides the required ones."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def handshake_status(port: int, headers: Mapping[str, str], path: str = "/") -> int:
    """Send a hand-written WebSocket opening handshake and return the HTTP status.

    Written by hand so a test controls every header (a client library would
    set Host itself).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(opening_handshake(headers, path))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


@attrs.frozen
class HttpReply:
    """A raw HTTP response: status, headers by lower-case name, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


async def http_request(
    port: int, target: str, headers: Mapping[str, str] | None = None, *, method: str = "GET"
) -> HttpReply:
    """Send one plain HTTP request (no Upgrade) to 127.0.0.1:``port``; read until closed.

    ``Host`` is ``127.0.0.1:PORT`` unless ``headers`` gives one (``""`` leaves it out).
    """
    fields = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items() if v)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)  # the server closes after one answer
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return HttpReply(int(status_line.split()[1]), parsed, body)
