"""Clients that do not read their replies, clients that read slowly, and too many clients.

The attack: connections that each send one batch frame of large ``fs.read``
requests and never read a byte. Without an outbound budget every finished
reply waited in the agent (4 connections of 200 reads of a 4 MiB file took it
from 50 MB to 4.3 GB); with it, each gets one large reply built at a time
(``Connection.reserve``), the agent disconnects the heaviest with 1008 while it
is over its budget, and its resident memory stays within
``server.max_pending_bytes`` plus a small allowance.
Read from ``/proc/PID/status`` of a real ``localagent serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import localagent
from localagent import Client, HandshakeRejected, Server, handles, hookimpl
from localagent._runtime import OVER_BUDGET_REASON, POLICY_VIOLATION
from localagent.testing import AgentProcess, running_agent

from ..helpers import opening_handshake
from ._frames import ServerFrame, close_frame, handshake, masked_frame, read_frame
from .conftest import agent_env

MIB = 1 << 20
#: The bound on any single wait: longer means the agent hung.
HANG = 60.0

# The attack, scaled to run in seconds: 4 connections x 40 reads of a 1 MiB file
# (1.4 MB of base64 per reply). Without the budget it takes the agent ~0.8 GB.
ATTACKERS = 4
READS = 40
FILE_SIZE = MIB
BUDGET = 8 * MIB
#: What the agent may hold besides its budget: reads in worker threads whose
#: connection was shed meanwhile (their bytes no longer count), and the
#: allocator's slack. Measured: 9-13 MiB of growth in all; without the budget,
#: the agent passes 800 MiB.
ALLOWANCE_MIB = 40


def _status_mib(pid: int, field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak) of process ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _sheds(agent: AgentProcess) -> int:
    return sum("closing connection" in line and "max_pending_bytes" in line for line in agent.lines)


def _attack(port: int, token: str) -> socket.socket:
    """Open a connection, send one batch frame of big reads, and never read."""
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {token}"}
    sock, head = handshake(port, headers, rcvbuf=16384, timeout=HANG)
    assert b" 101 " in head.split(b"\r\n")[0], head
    reads = [
        {"id": n, "type": "fs.read", "data": {"path": "big.bin", "encoding": "base64"}}
        for n in range(READS)
    ]
    sock.sendall(masked_frame(0x1, orjson.dumps({"type": "batch", "messages": reads})))
    return sock


def _read_what_is_left(sock: socket.socket) -> tuple[list[int], ServerFrame | None]:
    """Read every reply the agent wrote this client, up to its close frame if it sends one.

    A client that was slowed gets all its replies once it reads; one that was
    shed gets the replies already on their way, then the close frame.
    """
    sock.settimeout(HANG)
    ids: list[int] = []
    while len(ids) < READS:
        frame = read_frame(sock)
        if frame.opcode == 0x8:
            sock.sendall(close_frame(frame.close_code or 1000))
            return ids, frame
        ids.append(orjson.loads(frame.payload)["id"])
    return ids, None


@pytest.fixture
def budgeted(tmp_path: Path) -> Path:
    """A config dir with ``max_pending_bytes = BUDGET``, and ``big.bin`` in the workspace."""
    config_dir, workspace = tmp_path / "config", tmp_path / "workspace"
    config_dir.mkdir()
    workspace.mkdir()
    (config_dir / "config.toml").write_text(f"[server]\nmax_pending_bytes = {BUDGET}\n")
    (workspace / "big.bin").write_bytes(os.urandom(FILE_SIZE))
    return config_dir


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
async def test_clients_that_never_read_are_slowed_or_shed_and_the_agent_stays_within_budget(
    tmp_path: Path, budgeted: Path
) -> None:
    # The well-behaved client reads 256 KiB at a time: it never holds as much as
    # an attacker, so it is never the heaviest when the agent goes over its budget.
    read = {"path": "big.bin", "encoding": "base64", "length": 256 * 1024}
    with running_agent(agent_env(tmp_path), config_dir=budgeted) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        async with Client(agent.url, agent.token) as client:
            expected = await client.request("fs.read", read)
            before = _status_mib(agent.pid, "VmRSS")
            bound = before + BUDGET / MIB + ALLOWANCE_MIB
            attackers = await asyncio.gather(
                *(asyncio.to_thread(_attack, port, agent.token) for _ in range(ATTACKERS))
            )
            try:
                # Their replies take the agent over its budget: it sheds the heaviest.
                # A client that reads is answered all along.
                async with asyncio.timeout(HANG):
                    rounds = 0
                    while _sheds(agent) < 1 or rounds < 20:
                        if _status_mib(agent.pid, "VmHWM") > bound:
                            break  # the old agent: no need to wait for it to run out
                        assert await client.request("ping") == {"pong": True}
                        assert await client.request("fs.read", read) == expected
                        rounds += 1
                peak = _status_mib(agent.pid, "VmHWM")
                assert peak <= bound, (
                    f"the agent grew from {before:.0f} to {peak:.0f} MiB under the attack; "
                    f"the budget is {BUDGET / MIB:.0f} MiB"
                )
                outcomes = await asyncio.gather(
                    *(asyncio.to_thread(_read_what_is_left, s) for s in attackers)
                )
            finally:
                for sock in attackers:
                    sock.close()
            shed = [(ids, frame) for ids, frame in outcomes if frame is not None]
            assert len(shed) == _sheds(agent) >= 1
            for _ids, frame in shed:  # the close frame came after the replies on their way
                assert (frame.close_code, frame.close_reason) == (
                    POLICY_VIOLATION,
                    OVER_BUDGET_REASON,
                )
            for ids, frame in outcomes:  # slowed, not shed: nothing of theirs was lost
                if frame is None:
                    assert sorted(ids) == list(range(READS))
            assert await client.request("fs.read", read) == expected
        assert agent.process.poll() is None
    assert "Traceback" not in agent.output, agent.output[-5000:]


# -- a client that reads slowly is slowed, not disconnected ----------------------------------


class Blob:
    """``blob``: an asynchronous handler whose reply carries ``data`` bytes; counts its starts."""

    def __init__(self) -> None:
        self.started = 0

    @hookimpl(specname="on_message")
    @handles("blob")
    async def blob(self, message: localagent.Message) -> str:
        self.started += 1
        return "x" * message.data


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition()`` to become true, polling (no I/O stand-in)."""
    async with asyncio.timeout(HANG):
        while not condition():  # noqa: ASYNC110 - polls a condition
            await asyncio.sleep(0.02)
    assert condition(), what


def _read_replies(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    sock.settimeout(HANG)
    return [orjson.loads(read_frame(sock).payload) for _ in range(count)]


async def test_a_client_whose_replies_wait_gets_no_new_handler_until_it_reads() -> None:
    blob = Blob()
    size = 512 * 1024
    async with Server.create(
        port=0, extra_plugins={"blob": blob}, max_pending_bytes=32 * MIB
    ) as server:
        budget = server.runtime.budget  # share: 2 MiB
        headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {server.token_file.get()}"}
        sock, head = await asyncio.to_thread(handshake, server.port, headers, rcvbuf=16384)
        with sock:
            assert b" 101 " in head.split(b"\r\n")[0], head
            await _until(lambda: len(server.runtime.connections) == 1, "served")
            (connection,) = server.runtime.connections
            agent_side = connection._ws.transport.get_extra_info("socket")
            agent_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            sent = 0
            # One request at a time, each once the last one's handler ran, until
            # the agent holds one back: its replies wait for a client that reads nothing.
            while not budget.slowed:
                frame = {"id": sent, "type": "blob", "data": size}
                await asyncio.to_thread(sock.sendall, masked_frame(0x1, orjson.dumps(frame)))
                sent += 1
                await _until(lambda n=sent: blob.started == n or budget.slowed > 0, "handled")
                assert sent < 200, "the agent never held a handler back"
            assert blob.started == sent - 1  # the last request waits: its handler never ran
            assert connection.pending_bytes > budget.share
            assert budget.shed == 0 and not connection.closed
            replies = await asyncio.to_thread(_read_replies, sock, sent)
        assert sorted(reply["id"] for reply in replies) == list(range(sent))
        assert all(reply["result"] == "x" * size for reply in replies)
        assert blob.started == sent
        assert budget.shed == 0


# -- the connection limit --------------------------------------------------------------------


def _response(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    """A hand-written handshake's HTTP status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(opening_handshake(headers))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def three_connections(isolated_env: Path) -> None:
    """``max_connections = 3`` in the config file the in-process agent reads."""
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text("[server]\nmax_connections = 3\n")


@pytest.mark.usefixtures("three_connections")
async def test_past_max_connections_handshakes_get_503_and_existing_ones_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Server.create(port=0) as server:
        token = server.token_file.get()
        headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {token}"}
        clients = [await Client.connect(server.url, token) for _ in range(3)]
        try:
            with caplog.at_level(logging.WARNING, logger="localagent"):
                status, body = await asyncio.to_thread(_response, server.port, headers)
                with pytest.raises(HandshakeRejected) as caught:
                    await Client.connect(server.url, token)
            assert status == caught.value.status == 503
            assert body == b"too many connections: this agent serves at most 3 at once\n"
            assert "server.max_connections is 3" in caplog.text
            for client in clients:
                assert await client.request("ping") == {"pong": True}
            await clients.pop().aclose()
            clients.append(await Client.connect(server.url, token))
            assert await clients[-1].request("ping") == {"pong": True}
            # Refused handshakes (a wrong token, say) never count.
            wrong = {**headers, "Authorization": "Bearer nope"}
            assert (await asyncio.to_thread(_response, server.port, wrong))[0] == 401
        finally:
            for client in clients:
                await client.aclose()
