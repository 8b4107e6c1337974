"""Helpers shared by the integration tests (real sockets and subprocesses only)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import attrs

__all__ = ["AgentProcess", "handshake_status", "localagent_cmd", "running_agent"]

LISTENING = re.compile(r"listening on (ws://\S+)")


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


def localagent_cmd(*args: str) -> list[str]:
    """The argv that runs the ``localagent`` CLI of this interpreter."""
    return [sys.executable, "-m", "localagent", *args]


@attrs.define
class AgentProcess:
    """A ``localagent serve`` subprocess and everything it wrote to stderr."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str]

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def running_agent(env: Mapping[str, str], *args: str) -> Iterator[AgentProcess]:
    """Run ``localagent serve --port 0`` in a subprocess until the block ends.

    stderr is drained by a thread for the whole run, so a chatty agent never
    blocks on a full pipe, and tests can inspect the log afterwards.
    """
    process = subprocess.Popen(
        localagent_cmd("serve", "--port", "0", *args),
        env=dict(env),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()
    url: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = LISTENING.search(line)
            if match and not started.is_set():
                url.append(match.group(1))
                started.set()
        started.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        started.wait(30)
        if not url:
            raise AssertionError("the agent did not start:\n" + "".join(lines))
        yield AgentProcess(url[0], process, lines)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(10)
