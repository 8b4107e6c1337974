"""Fuzzing a real agent over real WebSockets: every frame is answered or closed, never hung.

One ``localagent serve`` subprocess (``shared_agent``) receives every example.
Each example opens its own authenticated connection, sends the fuzzed frame,
then a sentinel ``ping``; it must get a well-formed reply for every message
that asks for one (the pure parser, itself fuzzed in ``test_protocol_fuzz.py``,
says how many), the sentinel's reply, and nothing malformed, within a
timeout. Raw-byte examples go below the WebSocket layer: the agent must
answer with a proper close code or close the socket, and keep serving.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from localagent._protocol import Invalid, Message, parse_frame
from localagent.testing import AgentProcess

from ._frames import handshake, masked_frame, read_until_closed, server_frames
from .test_protocol_fuzz import batch_like, json_values, message_like

#: Seconds any single answer may take before the test calls it a hang.
ANSWER_TIMEOUT = 20.0
#: Close codes a framing violation may end with (RFC 6455 section 7.4.1).
PROPER_CLOSE_CODES = {1000, 1002, 1003, 1007, 1008, 1009}

OVER_WEBSOCKET = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_sentinels = itertools.count()

frames = (
    st.binary(max_size=4096)
    | st.text(max_size=4096)
    | json_values.map(orjson.dumps)
    | message_like.map(orjson.dumps)
    | batch_like.map(orjson.dumps)
)


def open_client(agent: AgentProcess) -> ClientConnection:
    return connect(
        agent.url,
        additional_headers={"Authorization": f"Bearer {agent.token}"},
        compression=None,
        open_timeout=ANSWER_TIMEOUT,
        close_timeout=5,
    )


def expected_answers(frame: bytes | str) -> tuple[int, set[Any]]:
    """How many replies ``frame`` must get at least, and which ids may appear."""
    items = parse_frame(frame)
    needed = sum(1 for i in items if isinstance(i, Invalid) or (i.id is not None))
    ids = {i.id for i in items if isinstance(i, Message | Invalid)} | {None}
    return needed, ids


def assert_well_formed_reply(reply: Any, ids: set[Any]) -> None:
    assert type(reply) is dict, reply
    assert reply.get("id") in ids, reply
    assert ("result" in reply) != ("error" in reply), reply
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error.get("code"), str) and error["code"], reply
        assert isinstance(error.get("message"), str) and error["message"], reply


@OVER_WEBSOCKET
@given(frame=frames, as_binary=st.booleans())
def test_every_frame_is_answered_and_the_connection_keeps_serving(
    shared_agent: AgentProcess, frame: bytes | str, as_binary: bool
) -> None:
    needed, ids = expected_answers(frame)
    sentinel = f"sentinel-{next(_sentinels)}"
    with open_client(shared_agent) as ws:
        if as_binary and isinstance(frame, str):
            frame = frame.encode()
        elif not as_binary and isinstance(frame, bytes):
            frame = frame.decode("utf-8", "replace")
        ws.send(frame)
        ws.send(orjson.dumps({"id": sentinel, "type": "ping"}), text=True)
        answered = 0
        sentinel_seen = False
        while not sentinel_seen or answered < needed:
            reply = orjson.loads(ws.recv(timeout=ANSWER_TIMEOUT))  # TimeoutError = a hang
            if type(reply) is dict and reply.get("id") == sentinel:
                assert reply == {"id": sentinel, "result": {"pong": True}}
                sentinel_seen = True
                continue
            assert_well_formed_reply(reply, ids)
            answered += 1


@OVER_WEBSOCKET
@given(junk=st.binary(min_size=1, max_size=512))
def test_raw_bytes_after_the_handshake_end_in_a_proper_close(
    shared_agent: AgentProcess, junk: bytes
) -> None:
    port = int(shared_agent.url.rsplit(":", 1)[1])
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {shared_agent.token}"}
    sock, head = handshake(port, headers)
    with sock:
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(junk)
        # Junk may be an unfinished frame the agent still waits for: end our side.
        sock.shutdown(socket.SHUT_WR)
        received = read_until_closed(sock, timeout=ANSWER_TIMEOUT)
    for frame in server_frames(received):
        if frame.opcode == 0x1:  # junk that happened to be a valid masked message
            assert type(orjson.loads(frame.payload)) is dict
        elif frame.opcode == 0x8 and frame.close_code is not None:
            assert frame.close_code in PROPER_CLOSE_CODES, frame
    with open_client(shared_agent) as ws:  # the agent keeps serving
        ws.send(orjson.dumps({"id": 1, "type": "ping"}), text=True)
        assert orjson.loads(ws.recv(timeout=ANSWER_TIMEOUT))["result"] == {"pong": True}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (masked_frame(0x3, b"x"), 1002),  # reserved opcode
        (bytes([0x81, 0x05]) + b"hello", 1002),  # unmasked client frame
        (bytes([0xC1]) + masked_frame(0x1, b"{}")[1:], 1002),  # RSV1 without deflate
        (masked_frame(0x9, b"p" * 126), 1002),  # control frame over 125 bytes
        (masked_frame(0x1, b"{", fin=False) + masked_frame(0x1, b"}"), 1002),  # no continuation
        (masked_frame(0x8, b"\x03\xe7"), 1002),  # close code 999 is invalid
        (masked_frame(0x2, b"x" * ((1 << 20) + 1)), 1009),  # over max_message_size
        (
            masked_frame(0x1, b"[" * (700 << 10), fin=False)
            + masked_frame(0x0, b"]" * (700 << 10)),
            1009,
        ),  # fragments that add up to more than max_message_size
    ],
    ids=[
        "reserved-opcode",
        "unmasked",
        "rsv1",
        "long-control",
        "missing-continuation",
        "bad-close-code",
        "oversized",
        "oversized-fragments",
    ],
)
def test_framing_violations_close_with_the_proper_code(
    shared_agent: AgentProcess, frame: bytes, code: int
) -> None:
    port = int(shared_agent.url.rsplit(":", 1)[1])
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {shared_agent.token}"}
    sock, head = handshake(port, headers)
    with sock:
        assert head.startswith(b"HTTP/1.1 101"), head
        # The agent may close before it has read the whole oversized frame.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(frame)
        received = read_until_closed(sock, timeout=ANSWER_TIMEOUT)
    closes = [f.close_code for f in server_frames(received) if f.opcode == 0x8]
    assert closes == [code]
    with open_client(shared_agent) as ws:
        ws.send(orjson.dumps({"id": 1, "type": "ping"}), text=True)
        assert orjson.loads(ws.recv(timeout=ANSWER_TIMEOUT))["result"] == {"pong": True}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": 1, "type": "\xff\xfe"}',  # never a UTF-8 byte
        b'{"id": 1, "type": "\xc3"}',  # a character cut short
        b'{"id": 1, "type": "\xed\xa0\x80"}',  # a surrogate, which UTF-8 excludes
        b'{"id": 1, "type": "\xc0\xaf"}',  # an overlong "/"
        b'{"id": 1, "type": "\xf4\x90\x80\x80"}',  # past U+10FFFF
    ],
    ids=["invalid-byte", "truncated", "surrogate", "overlong", "too-high"],
)
def test_invalid_utf8_in_a_text_frame_closes_1007(
    shared_agent: AgentProcess, payload: bytes
) -> None:
    """RFC 6455 section 8.1: a text frame that is not UTF-8 fails the connection with 1007.
    Nothing after it is handled, and other connections go on."""
    port = int(shared_agent.url.rsplit(":", 1)[1])
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {shared_agent.token}"}
    sock, head = handshake(port, headers)
    with sock:
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(masked_frame(0x1, payload))
        sock.sendall(masked_frame(0x1, b'{"id": 2, "type": "ping"}'))
        sock.shutdown(socket.SHUT_WR)
        received = read_until_closed(sock, timeout=ANSWER_TIMEOUT)
    frames = server_frames(received)
    assert [f.opcode for f in frames] == [0x8], frames
    assert frames[0].close_code == 1007
    with open_client(shared_agent) as ws:
        ws.send(orjson.dumps({"id": 1, "type": "ping"}), text=True)
        assert orjson.loads(ws.recv(timeout=ANSWER_TIMEOUT))["result"] == {"pong": True}


def test_invalid_utf8_in_a_binary_frame_gets_an_error_reply(shared_agent: AgentProcess) -> None:
    """A binary frame carries no promise of UTF-8: its bytes are only not JSON."""
    port = int(shared_agent.url.rsplit(":", 1)[1])
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {shared_agent.token}"}
    sock, head = handshake(port, headers)
    with sock:
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(masked_frame(0x2, b'{"id": 1, "type": "\xff\xfe"}'))
        sock.sendall(masked_frame(0x1, b'{"id": 2, "type": "ping"}'))
        sock.shutdown(socket.SHUT_WR)
        received = read_until_closed(sock, timeout=ANSWER_TIMEOUT)
    replies = [orjson.loads(f.payload) for f in server_frames(received) if f.opcode == 0x1]
    assert replies[0]["error"]["code"] == "invalid_json"
    assert replies[1] == {"id": 2, "result": {"pong": True}}


def test_a_connection_that_sent_junk_messages_still_answers(shared_agent: AgentProcess) -> None:
    """Thousands of bad messages on one connection: each answered, nothing lost after."""
    bad = [b"", b"{", b"[]", b"null", b'{"type": 1}', b'{"id": {}, "type": "x"}', b"\x00\xff"]
    with open_client(shared_agent) as ws:
        for n in range(2000):
            ws.send(bad[n % len(bad)])
        for _ in range(2000):
            reply = orjson.loads(ws.recv(timeout=ANSWER_TIMEOUT))
            assert reply["error"]["code"] in ("invalid_json", "invalid_message")
        ws.send(orjson.dumps({"id": "last", "type": "echo", "data": [1]}), text=True)
        assert orjson.loads(ws.recv(timeout=ANSWER_TIMEOUT)) == {
            "id": "last",
            "result": {"data": [1]},
        }
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=1)
