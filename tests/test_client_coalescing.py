"""``Client(coalesce=True)``: requests made in one loop iteration travel as one batch frame.

Frames are observed on a real WebSocket server on 127.0.0.1 that records what
it receives and answers each message; the agent tests check that the answers
are the ones a client sending frame by frame would get.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from localagent import Client, ReplyError, Server
from localagent._client import BATCH_BYTES
from localagent._protocol import batch_frames, unbatch
from localagent.codec import EncodeError


class Recorder:
    """A WebSocket server that records each frame and answers every message with its data."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        async for frame in ws:
            decoded = json.loads(frame)
            self.frames.append(decoded)
            for message in unbatch(decoded):
                if message.get("id") is not None:
                    await ws.send(json.dumps({"id": message["id"], "result": message["data"]}))

    def members(self) -> list[Any]:
        return [message for frame in self.frames for message in unbatch(frame)]


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    recording = Recorder()
    async with serve(recording.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        recording.url = f"ws://127.0.0.1:{port}"
        yield recording


async def test_concurrent_requests_share_one_frame_in_order(recorder: Recorder) -> None:
    async with Client(recorder.url, "token") as client:
        results = await asyncio.gather(*(client.request("echo", n) for n in range(20)))
    assert results == list(range(20))
    assert len(recorder.frames) == 1
    assert recorder.frames[0]["type"] == "batch"
    assert [m["data"] for m in recorder.frames[0]["messages"]] == list(range(20))


async def test_a_lone_request_is_a_plain_frame(recorder: Recorder) -> None:
    async with Client(recorder.url, "token") as client:
        assert await client.request("echo", "a") == "a"
        assert await client.request("echo", "b") == "b"
    assert [frame["type"] for frame in recorder.frames] == ["echo", "echo"]


async def test_without_coalescing_each_request_is_its_own_frame(recorder: Recorder) -> None:
    async with Client(recorder.url, "token", coalesce=False) as client:
        await asyncio.gather(*(client.request("echo", n) for n in range(5)))
    assert len(recorder.frames) == 5 and all(f["type"] == "echo" for f in recorder.frames)


async def test_batch_frames_stay_under_the_size_bound(recorder: Recorder) -> None:
    big = "x" * (BATCH_BYTES // 3)
    async with Client(recorder.url, "token") as client:
        payloads = [big, "s", big, big, "x" * (BATCH_BYTES * 2), "t"]
        assert await asyncio.gather(*(client.request("echo", p) for p in payloads)) == payloads
    assert [m["data"] for m in recorder.members()] == payloads  # order kept across frames
    assert len(recorder.frames) > 1
    for frame in recorder.frames:
        size = len(json.dumps(frame, separators=(",", ":")))
        assert frame["type"] != "batch" or size <= BATCH_BYTES


async def test_notifications_and_raw_frames_keep_their_order(recorder: Recorder) -> None:
    async with Client(recorder.url, "token") as client:
        sends = [client.notify("note", n) for n in range(3)]
        await asyncio.gather(*sends, client.send_raw('{"type": "raw", "data": 3}'))
        assert await client.request("echo", 4) == 4
    assert [m["data"] for m in recorder.members()] == [0, 1, 2, 3, 4]


async def test_an_unencodable_payload_fails_its_own_caller_only(recorder: Recorder) -> None:
    async with Client(recorder.url, "token") as client:
        results = await asyncio.gather(
            client.request("echo", 1),
            client.request("echo", {1j}),
            client.request("echo", 3),
            return_exceptions=True,
        )
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], EncodeError)


def test_batch_frames_split_by_size_and_keep_lone_messages_as_they_are() -> None:
    assert list(batch_frames([], 100)) == []
    assert list(batch_frames([b'{"a":1}'], 100)) == [b'{"a":1}']
    assert list(batch_frames([b'{"a":1}', b'{"b":2}'], 100)) == [
        b'{"type":"batch","messages":[{"a":1},{"b":2}]}'
    ]
    big, small = b'"' + b"x" * 60 + b'"', b"1"
    frames = list(batch_frames([big, big, small], 100))
    assert frames == [big, b'{"type":"batch","messages":[%s,1]}' % big]
    assert all(len(frame) <= 100 for frame in frames[1:])


async def test_the_agent_answers_each_member_as_if_sent_alone(agent: Server) -> None:
    async with Client(agent.url, agent.token_file.get()) as client:
        calls = [client.request("echo", n) for n in range(100)]
        calls.append(client.request("no.such.type"))
        calls.append(client.request("ping"))
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:100] == [{"data": n} for n in range(100)]
    assert isinstance(results[100], ReplyError) and results[100].code == "unknown_type"
    assert results[101] == {"pong": True}
