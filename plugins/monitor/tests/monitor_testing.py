"""Helpers for the monitor's tests: the plugin of an agent, a raw HTTP client, a raising plugin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from localagent_monitor import Plugin

import localagent
from localagent import hookimpl


class RaisingPlugin:
    """Answers ``boom`` by raising ``ValueError`` (a third-party handler's bug)."""

    __name__ = "raising"

    @hookimpl(specname="on_message")
    @localagent.handles("boom")
    def boom(self, message: localagent.Message) -> None:
        raise ValueError("raised on purpose")


def plugin_of(server: localagent.Server) -> Plugin:
    plugin = server.runtime.pm.get_plugin("monitor")
    assert isinstance(plugin, Plugin)
    return plugin


class HttpReply(msgspec.Struct, frozen=True):
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_raw(port: int, data: bytes) -> HttpReply:
    """Send ``data`` as is to 127.0.0.1:``port`` and read the whole response.

    A connection closed without an answer gives status 0.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        # No write_eof(): websockets takes a half-closed request for a client gone away.
        raw = await reader.read()  # one request per connection: the server closes it
    finally:
        writer.close()
        await writer.wait_closed()
    if not raw:
        return HttpReply(0, {}, b"")  # closed without an answer
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpReply(int(lines[0].split()[1]), headers, body)


async def http_get(
    port: int,
    target: str,
    *,
    token: str | None = None,
    host: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
) -> HttpReply:
    """A GET (with a bearer token, if given) to the monitor on 127.0.0.1:``port``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return await http_raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode())


async def until(check: Callable[[], Awaitable[bool]], attempts: int = 400) -> None:
    """Ask ``check`` (which does real I/O) again until it holds; fail after ``attempts``."""
    for _ in range(attempts):
        if await check():
            return
    raise AssertionError("the condition never held")


async def handshake_status(port: int, headers: Mapping[str, str]) -> int:
    """The status of a WebSocket opening handshake to ``/`` with ``headers`` (Host included)."""
    lines = [
        "GET / HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


def write_config(config_dir: Path, table: str) -> None:
    """Write ``config.toml`` with ``table`` as its ``[plugins.monitor]`` table."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(f"[plugins.monitor]\n{table}")
