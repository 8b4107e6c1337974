"""Hostile handshakes against a real agent: CSWSH, DNS rebinding, tokens, slow and huge requests.

The policy's unit tests are in ``tests/test_security.py`` and the basic
real-socket refusals in ``tests/test_server.py``; this module adds the
variants and the handshake abuse they do not cover.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
import signal
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import localagent
from localagent import Client, Server
from localagent._security import HandshakePolicy

from ..helpers import handshake_status
from ._frames import handshake, read_until_closed
from .conftest import agent_env

#: Generous: the agent's open_timeout is 1 s in these tests; this is the "hang" bound.
HANG = 30.0


@pytest.fixture
async def strict_agent() -> AsyncIterator[Server]:
    """An agent with a short handshake timeout and one listed browser origin."""
    server = Server.create(port=0, open_timeout=1.0, origins=("http://localhost:3000",))
    async with server:
        yield server


def _raw(port: int, data: bytes, *, shutdown: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock, timeout=HANG)


async def _still_serves(server: Server) -> None:
    async with Client(server.url, server.token_file.get()) as client:
        assert await client.request("ping") == {"pong": True}


# -- cross-site WebSocket hijacking and DNS rebinding ---------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "http://localhost:3000.evil.example",
        "http://localhost:30000",
        "https://localhost:3000",
        "http://evil.example/http://localhost:3000",
        "http://127.0.0.1:3000",
        "",
    ],
)
async def test_origin_near_misses_are_refused_with_the_token(
    strict_agent: Server, origin: str
) -> None:
    token = strict_agent.token_file.get()
    headers = {"Host": "127.0.0.1", "Origin": origin, "Authorization": f"Bearer {token}"}
    assert await handshake_status(strict_agent.port, headers) == 403
    headers["Origin"] = "http://localhost:3000"  # the listed one, same request otherwise
    assert await handshake_status(strict_agent.port, headers) == 101


@pytest.mark.parametrize(
    "host",
    [
        "localhost.evil.example",
        "127.0.0.1.evil.example:80",
        "evil.example:127.0.0.1",
        "[::1].evil.example",
        "0.0.0.0",
        "127.0.0.2",
        "",
    ],
)
async def test_rebinding_host_variants_are_refused(strict_agent: Server, host: str) -> None:
    token = strict_agent.token_file.get()
    assert await handshake_status(strict_agent.port, {"Host": host}, path=f"/?token={token}") == 403


async def test_duplicate_security_headers_are_refused(strict_agent: Server) -> None:
    token = strict_agent.token_file.get()
    lines = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    response = await asyncio.to_thread(_raw, strict_agent.port, lines.encode())
    assert response.startswith(b"HTTP/1.1 400")
    assert token.encode() not in response


# -- tokens ----------------------------------------------------------------------------


def _near_misses(token: str) -> list[tuple[str, str]]:
    """(how the token is offered, header or path) pairs that must all be refused."""
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return [
        ("Authorization", ""),
        ("Authorization", "Bearer"),
        ("Authorization", "Bearer "),
        ("Authorization", f"Basic {token}"),
        ("Authorization", f"Token {token}"),
        ("Authorization", f"Bearer {token[:-1]}"),
        ("Authorization", f"Bearer {flipped}"),
        ("Authorization", f"Bearer {token}{token}"),
        ("Authorization", f"Bearer {token.swapcase()}"),
        ("Authorization", f"Bearer {token[: len(token) // 2]}"),
        ("path", f"/?Token={token}"),
        ("path", f"/?token={token[:-1]}"),
        ("path", f"/?token=&token={token}x"),
        ("path", f"/{token}"),
        ("path", f"/?tok%65n={flipped}"),
    ]


async def test_missing_wrong_and_near_miss_tokens_are_401_and_never_echoed(
    strict_agent: Server,
) -> None:
    token = strict_agent.token_file.get()
    for where, value in _near_misses(token):
        headers = {"Host": "127.0.0.1"}
        path = "/"
        if where == "Authorization":
            headers["Authorization"] = value
        else:
            path = value
        sock, head = await asyncio.to_thread(handshake, strict_agent.port, headers, path=path)
        with sock:
            body = await asyncio.to_thread(read_until_closed, sock, timeout=HANG)
        response = head + body
        assert response.startswith(b"HTTP/1.1 401"), (where, value, response[:60])
        # Neither the token nor half of it is ever sent back.
        assert token[: len(token) // 2].encode() not in response
    await _still_serves(strict_agent)


def test_token_compare_is_constant_time_by_construction() -> None:
    """The token is compared only through ``hmac.compare_digest``, never with ``==``.

    ``tests/test_security.py::test_compare_uses_hmac_compare_digest`` checks that
    the call happens; this checks that no other comparison touches the token.
    """
    source = textwrap.dedent(inspect.getsource(HandshakePolicy.check))
    tree = ast.parse(source)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "hmac.compare_digest"
    ]
    assert len(calls) == 1
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and not all(
            isinstance(op, ast.Is | ast.IsNot) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & {"offered", "expected"}, ast.unparse(node)


async def test_token_never_in_debug_logs_of_failed_handshakes(
    strict_agent: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Handshakes that fail inside websockets (not the policy) log at DEBUG too."""
    caplog.set_level(logging.DEBUG)
    token = strict_agent.token_file.get()
    port = strict_agent.port
    requests = [
        # a header too long, carrying the token in the query
        f"GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 10000}\r\n\r\n",
        # not a WebSocket upgrade, token in the header
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n",
        # a bad Sec-WebSocket-Version after an accepted token
        f"GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 8\r\n\r\n",
        # an unfinished request with the token, cut off by open_timeout
        f"GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n",
    ]
    for request in requests:
        response = await asyncio.to_thread(_raw, port, request.encode())
        assert token.encode() not in response
    async with Client(strict_agent.url, token) as client:
        await client.request("echo", "payload")
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert token not in caplog.text


def test_token_never_in_the_log_of_an_agent_subprocess_at_debug(tmp_path: Path) -> None:
    from localagent.testing import running_agent

    with running_agent(agent_env(tmp_path), "--log-level", "debug") as agent:
        token = (tmp_path / "config" / "token").read_text().strip()
        port = int(agent.url.rsplit(":", 1)[1])
        for where, value in _near_misses(token):
            headers = {"Host": "127.0.0.1"}
            if where == "Authorization":
                headers["Authorization"] = value
            sock, _ = handshake(port, headers, path=value if where == "path" else "/")
            sock.close()
        sock, head = handshake(
            port, {"Host": "127.0.0.1", "Authorization": f"Bearer {token}"}, path="/"
        )
        sock.close()
        assert head.startswith(b"HTTP/1.1 101")
        agent.process.terminate()
        agent.process.wait(HANG)
    assert "invalid token" in agent.output  # the refusals were logged...
    assert token not in agent.output  # ...without the token
    assert token[: len(token) // 2] not in agent.output


# -- handshake abuse ---------------------------------------------------------------------


def test_open_timeout_is_a_finite_setting_passed_to_websockets() -> None:
    settings = localagent.load_settings()
    assert 0 < settings.server.open_timeout <= 60
    source = inspect.getsource(Server.start)
    assert "open_timeout=server.open_timeout" in source


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello start
    ],
    ids=["nothing", "request-line", "half-headers", "tls"],
)
async def test_unfinished_handshakes_are_closed_by_the_agent(
    strict_agent: Server, partial: bytes
) -> None:
    # The socket stays open on our side: only the agent's open_timeout can end it.
    response = await asyncio.to_thread(_raw, strict_agent.port, partial)
    assert b"101" not in response
    await _still_serves(strict_agent)


def _dribble(port: int) -> tuple[int, bool]:
    """Send a never-ending header one line at a time; return bytes sent, whether closed."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: a\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return sent, True
            sent += 1
            sock.settimeout(0.1)
            try:
                if sock.recv(4096) == b"":
                    return sent, True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return sent, True
    return sent, False


async def test_a_slowloris_handshake_is_cut_off(strict_agent: Server) -> None:
    sent, closed = await asyncio.to_thread(_dribble, strict_agent.port)
    assert closed, f"still open after {sent} header lines"
    await _still_serves(strict_agent)


async def test_many_half_open_handshakes_do_not_block_real_clients(strict_agent: Server) -> None:
    port = strict_agent.port

    def half_open() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        return sock

    # From threads: the agent runs on this event loop and must accept meanwhile.
    socks = list(await asyncio.gather(*(asyncio.to_thread(half_open) for _ in range(200))))
    try:
        await _still_serves(strict_agent)  # while 200 handshakes hang
        closed = await asyncio.gather(
            *(asyncio.to_thread(read_until_closed, s, timeout=HANG) for s in socks)
        )
        assert all(b"101" not in c for c in closed)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    "extra",
    [
        b"X-Big: " + b"a" * 100_000 + b"\r\n",
        b"X-Big: " + b"a" * 9_000 + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % n for n in range(300)),
        b"Cookie: " + b"c=" * 50_000 + b"\r\n",
    ],
    ids=["100k-line", "9k-line", "300-headers", "huge-cookie"],
)
async def test_oversized_headers_are_refused(strict_agent: Server, extra: bytes) -> None:
    token = strict_agent.token_file.get()
    request = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + extra
        + b"\r\n"
    )
    response = await asyncio.to_thread(_raw, strict_agent.port, request)
    assert re.match(rb"HTTP/1.1 4\d\d", response), response[:80]
    assert b"101" not in response.split(b"\r\n")[0]
    await _still_serves(strict_agent)


def test_an_agent_subprocess_applies_its_open_timeout(tmp_path: Path) -> None:
    """The setting reaches the server through config and env, not only Server.create."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("[server]\nopen_timeout = 1.0\n")
    from localagent.testing import running_agent

    with running_agent(agent_env(tmp_path)) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        assert b"101" not in _raw(port, b"GET / HTTP/1.1\r\n")
        assert agent.process.poll() is None
        agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(HANG) == 0
