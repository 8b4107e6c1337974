"""The send path's last step on real sockets: dropped replies, turns, the budget and shedding.

An agent runs in this process (``Server.create(port=0)``) so a test can reach
the :class:`~localagent._connection.WebSocketConnection` its client is served
on; the clients are raw sockets that read nothing until the test says so. The
agent's side of such a socket gets a small send buffer (a real socket option),
so that its writes back up after a few hundred KiB rather than after the
several MiB Linux's autotuning would let through.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

import localagent
from localagent import Client, ConnectionLost, Server, handles, hookimpl
from localagent._connection import WebSocketConnection
from localagent._runtime import OVER_BUDGET_REASON, POLICY_VIOLATION

from .reliability._frames import ServerFrame, close_frame, handshake, masked_frame, read_frame

MIB = 1 << 20
#: The bound on any single wait: longer means the agent hung.
HANG = 60.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition()`` to become true, polling (no I/O stand-in)."""
    async with asyncio.timeout(HANG):
        while not condition():  # noqa: ASYNC110 - polls a condition
            await asyncio.sleep(0.02)
    assert condition(), what


async def _silent_client(server: Server) -> tuple[socket.socket, WebSocketConnection]:
    """A raw client that reads nothing, and the agent's connection to it."""
    known = set(server.runtime.connections)
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {server.token_file.get()}"}
    sock, head = await asyncio.to_thread(handshake, server.port, headers, rcvbuf=16384)
    assert b" 101 " in head.split(b"\r\n")[0], head
    await _until(lambda: len(server.runtime.connections - known) == 1, "the agent serves it")
    (connection,) = server.runtime.connections - known
    _small_send_buffer(connection)
    return sock, connection


def _small_send_buffer(connection: WebSocketConnection) -> None:
    agent_side = connection._ws.transport.get_extra_info("socket")
    agent_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)


def _read_frames(sock: socket.socket, until: Callable[[ServerFrame], bool]) -> list[ServerFrame]:
    """The frames the agent sends, up to and including the first for which ``until`` is true."""
    sock.settimeout(HANG)
    frames = [read_frame(sock)]
    while not until(frames[-1]):
        frames.append(read_frame(sock))
    return frames


def _answer_close(sock: socket.socket, code: int) -> None:
    """Complete the closing handshake: echo the close frame, then wait for the agent's EOF."""
    sock.sendall(close_frame(code))
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass


def _payload(frame: ServerFrame) -> Any:
    return orjson.loads(frame.payload)


def _ids(frames: list[ServerFrame]) -> list[Any]:
    return [_payload(frame)["id"] for frame in frames if frame.opcode == 0x1]


class Blob:
    """``blob``: an asynchronous handler whose reply carries ``data`` bytes of text."""

    @hookimpl(specname="on_message")
    @handles("blob")
    async def blob(self, message: localagent.Message) -> str:
        return "x" * message.data


async def test_a_reply_to_a_closed_connection_is_dropped_before_it_is_encoded() -> None:
    async with Server.create(port=0) as server:
        sock, connection = await _silent_client(server)
        sock.close()
        await _until(lambda: connection.close_code is not None, "the agent saw it close")
        reply = {"id": 1, "result": "x" * (32 * MIB)}
        tracemalloc.start()
        try:
            with pytest.raises(ConnectionLost):
                await connection.send(reply)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MIB, "encoding the reply would have taken 32 MiB"
        assert connection.pending_bytes == server.runtime.budget.pending == 0


async def _frames_then_close(sock: socket.socket) -> list[ServerFrame]:
    return await asyncio.to_thread(_read_frames, sock, lambda frame: frame.opcode == 0x8)


async def _replies_waiting(connection: Any, count: int) -> list[asyncio.Task[None]]:
    """Send ``count`` replies of 1 MiB; return once several wait for the client."""
    sends = [
        asyncio.create_task(connection.send({"id": n, "result": "x" * MIB})) for n in range(count)
    ]
    await _until(lambda: connection.pending_bytes > 4 * MIB, "replies waiting")
    return sends


async def test_the_replies_to_a_client_that_reads_late_arrive_in_order() -> None:
    count = 24
    async with Server.create(port=0) as server:
        budget = server.runtime.budget
        sock, connection = await _silent_client(server)
        with sock:
            sends = await _replies_waiting(connection, count)
            assert budget.pending == connection.pending_bytes  # charged while they wait
            assert not all(send.done() for send in sends)
            frames = await asyncio.to_thread(
                _read_frames, sock, lambda frame: orjson.loads(frame.payload)["id"] == count - 1
            )
            await asyncio.gather(*sends)
        assert _ids(frames) == list(range(count))
        assert connection.pending_bytes == budget.pending == 0  # refunded once written
        assert budget.shed == 0


async def test_shed_drops_the_waiting_frames_at_once_and_closes_after_the_one_being_written() -> (
    None
):
    count = 24
    async with Server.create(port=0) as server:
        budget = server.runtime.budget
        sock, connection = await _silent_client(server)
        with sock:
            sends = await _replies_waiting(connection, count)
            connection.shed(POLICY_VIOLATION, "test: not reading")
            assert budget.pending == 0  # written off at once
            assert connection.closed and connection.shed_reason == "test: not reading"
            # Every frame but the one websockets is writing ends now, without the client.
            await _until(lambda: sum(not send.done() for send in sends) == 1, "frames dropped")
            frames = await _frames_then_close(sock)
            await asyncio.to_thread(_answer_close, sock, POLICY_VIOLATION)
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            await connection.wait_shed()
        written = _ids(frames)
        assert written == list(range(len(written)))
        assert [isinstance(outcome, ConnectionLost) for outcome in outcomes] == (
            [False] * len(written) + [True] * (count - len(written))
        )
        assert frames[-1].close_code == POLICY_VIOLATION
        assert frames[-1].close_reason == "test: not reading"
        assert connection.close_code == POLICY_VIOLATION


async def test_over_budget_the_heaviest_connection_is_shed_not_the_one_that_went_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Server.create(
        port=0, extra_plugins={"blob": Blob()}, max_pending_bytes=16 * MIB
    ) as server:
        budget = server.runtime.budget
        sock, silent = await _silent_client(server)
        with sock:
            sends = [
                # 7 frames of 1 MiB, each counted twice while it is written.
                asyncio.create_task(silent.send({"id": n, "result": "x" * MIB}))
                for n in range(7)
            ]
            await _until(lambda: silent.pending_bytes > 13 * MIB, "replies waiting")
            assert budget.shed == 0
            async with Client(server.url, server.token_file.get()) as client:
                with caplog.at_level(logging.WARNING, logger="localagent"):
                    # 4 MiB more (8 counted) takes the agent over 16 MiB: the silent client pays.
                    assert await client.request("blob", 4 * MIB) == "x" * (4 * MIB)
                assert budget.shed == 1
                assert silent.shed_reason == OVER_BUDGET_REASON
                assert await client.request("ping") == {"pong": True}
            frames = await _frames_then_close(sock)
            await asyncio.to_thread(_answer_close, sock, POLICY_VIOLATION)
            await asyncio.gather(*sends, return_exceptions=True)
            await silent.wait_shed()
        assert frames[-1].close_code == POLICY_VIOLATION
        assert frames[-1].close_reason == OVER_BUDGET_REASON
        assert budget.pending == 0
        assert f"closing connection {silent.id}" in caplog.text
        assert "server.max_pending_bytes" in caplog.text


class Inbound:
    """``more``: answers with its connection's ``more_inbound`` as the handler runs."""

    @hookimpl(specname="on_message")
    @handles("more")
    def more(self, connection: localagent.Connection) -> bool:
        return connection.more_inbound


async def test_more_inbound_says_whether_more_of_the_clients_messages_are_at_hand() -> None:
    def text(message: Any) -> bytes:
        return masked_frame(0x1, orjson.dumps(message))

    async with Server.create(port=0, extra_plugins={"inbound": Inbound()}) as server:
        sock, _connection = await _silent_client(server)
        with sock:
            batch = {
                "type": "batch",
                "messages": [{"id": 2, "type": "more"}, {"id": 3, "type": "more"}],
            }
            # Three frames in one write: the agent reads them off the socket together.
            burst = text({"id": 1, "type": "more"}) + text(batch) + text({"id": 4, "type": "more"})
            await asyncio.to_thread(sock.sendall, burst)
            frames = await asyncio.to_thread(_read_frames, sock, lambda f: _ids([f]) == [4])
            replies = {reply["id"]: reply["result"] for reply in map(_payload, frames)}
            # 1: the batch frame and 4 wait; 2, 3: members of a batch frame; 4: nothing left.
            assert replies == {1: True, 2: True, 3: True, 4: False}
            await asyncio.to_thread(sock.sendall, text({"id": 5, "type": "more"}))
            (frame,) = await asyncio.to_thread(_read_frames, sock, lambda f: True)
            assert _payload(frame) == {"id": 5, "result": False}
            alone = {
                "type": "batch",
                "messages": [{"id": 6, "type": "more"}, {"id": 7, "type": "more"}],
            }
            await asyncio.to_thread(sock.sendall, text(alone))
            frames = await asyncio.to_thread(_read_frames, sock, lambda f: _ids([f]) == [7])
            members = [{"id": 6, "result": True}, {"id": 7, "result": True}]  # to its last
            assert [_payload(frame) for frame in frames] == members
