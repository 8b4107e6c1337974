"""The batching plugin in a real agent, and ``MessageBatcher`` on a real event loop.

The unit tests give the batcher a recording inner send path: a plain async function that
appends each frame it is handed (the layer below the batcher), sometimes held on an
``asyncio.Event`` the test releases, to make a write "slow" without any timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from localagent_batching import NAME, BatchingConfig, BatchSendError, MessageBatcher, Plugin
from websockets.asyncio.client import ClientConnection, connect

import localagent

# -- helpers ---------------------------------------------------------------


class Inner:
    """A recording send path: appends every frame; optionally held by ``gate``, or failing."""

    def __init__(self, *, gated: bool = False, fail: BaseException | None = None) -> None:
        self.frames: list[Mapping[str, Any]] = []
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail = fail
        self.writing = 0
        self.wrote = asyncio.Event()  # set after each frame; tests clear it

    async def __call__(self, frame: Mapping[str, Any]) -> None:
        self.writing += 1
        try:
            await self.gate.wait()
            if self.fail is not None:
                error, self.fail = self.fail, None  # fails once
                raise error
            self.frames.append(frame)
            self.wrote.set()
        finally:
            self.writing -= 1

    @property
    def messages(self) -> list[Any]:
        """Every message received, batch frames unpacked, in order."""
        return [item for frame in self.frames for item in unpack(frame)]

    @property
    def sizes(self) -> list[int]:
        return [len(unpack(frame)) for frame in self.frames]


def unpack(frame: Mapping[str, Any]) -> list[Any]:
    if frame.get("type") == "batch":
        return list(frame["messages"])
    return [frame]


def msg(n: int) -> dict[str, Any]:
    return {"id": n, "result": n}


async def settle(iterations: int = 5) -> None:
    """Let the loop run a few iterations (no wall-clock time involved)."""
    for _ in range(iterations):
        await asyncio.sleep(0)


# -- MessageBatcher: adaptive flushing --------------------------------------


class Peer:
    """What the batcher reads of its connection: ``congested`` and ``more_inbound``."""

    def __init__(self, *, more_inbound: bool) -> None:
        self.congested = False
        self.more_inbound = more_inbound


async def test_a_lone_message_is_written_by_send_itself() -> None:
    inner = Inner()
    batcher = MessageBatcher(inner, connection=Peer(more_inbound=False))  # type: ignore[arg-type]
    await batcher.send(msg(1))
    assert inner.frames == [msg(1)]  # written before send() returned, not wrapped
    assert (batcher.frames, batcher.messages) == (1, 1)


async def test_a_message_with_more_inbound_waits_for_its_company() -> None:
    inner = Inner()
    peer = Peer(more_inbound=True)
    batcher = MessageBatcher(inner, connection=peer)  # type: ignore[arg-type]
    await batcher.send(msg(0))
    assert inner.frames == []  # queued: the replies to what is at hand come this iteration
    peer.more_inbound = False
    await batcher.send(msg(1))  # the last, but not lone: msg(0) is queued ahead of it
    assert inner.frames == []
    await asyncio.sleep(0)
    assert inner.frames == [{"type": "batch", "messages": [msg(0), msg(1)]}]


async def test_without_a_connection_a_message_goes_out_on_the_next_iteration() -> None:
    inner = Inner()
    batcher = MessageBatcher(inner)
    await batcher.send(msg(1))
    assert inner.frames == []  # queued, not written inline
    await asyncio.sleep(0)
    assert inner.frames == [msg(1)]  # not wrapped in a batch frame


async def test_messages_of_one_iteration_go_out_as_one_batch_frame() -> None:
    inner = Inner()
    batcher = MessageBatcher(inner)
    for n in range(3):
        await batcher.send(msg(n))
    await asyncio.sleep(0)
    assert inner.frames == [{"type": "batch", "messages": [msg(0), msg(1), msg(2)]}]


async def test_frames_hold_at_most_max_batch_messages() -> None:
    inner = Inner()
    batcher = MessageBatcher(inner, max_batch=4)
    for n in range(10):
        await batcher.send(msg(n))
    await batcher.flush()
    assert inner.sizes == [4, 4, 2]
    assert inner.messages == [msg(n) for n in range(10)]


async def test_messages_queued_during_a_write_go_in_the_next_frame() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner)
    await batcher.send(msg(0))
    await settle()
    assert inner.writing == 1  # msg(0) is being written
    await batcher.send(msg(1))
    await batcher.send(msg(2))
    inner.gate.set()
    await settle()
    assert inner.frames == [msg(0), {"type": "batch", "messages": [msg(1), msg(2)]}]


async def test_after_a_full_frame_the_writer_lingers_until_the_batch_fills() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=2, interval=60.0)  # the linger never times out
    await batcher.send(msg(0))
    await batcher.send(msg(1))
    await settle()  # the full frame [0, 1] is being written
    await batcher.send(msg(2))
    inner.gate.set()
    await settle()
    assert inner.sizes == [2]  # msg(2) waits for a second message, under "load"
    await batcher.send(msg(3))  # the batch is full: written at once
    await settle()
    assert inner.sizes == [2, 2]
    assert inner.messages == [msg(n) for n in range(4)]


async def test_the_rest_of_a_burst_larger_than_max_batch_goes_out_at_once() -> None:
    # All queued before the first write, nothing more during it: no load to wait for.
    inner = Inner()
    batcher = MessageBatcher(inner, max_batch=2, interval=60.0)  # a linger would never end
    for n in range(5):
        await batcher.send(msg(n))
    await settle()
    assert inner.sizes == [2, 2, 1]
    assert inner.messages == [msg(n) for n in range(5)]


async def test_the_linger_ends_after_interval() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=2, interval=0.001)
    await batcher.send(msg(0))
    await batcher.send(msg(1))
    await settle()
    await batcher.send(msg(2))
    inner.gate.set()
    async with asyncio.timeout(10):  # a generous bound, not a speed assertion
        while inner.sizes != [2, 1]:
            inner.wrote.clear()
            await inner.wrote.wait()


async def test_flush_ends_a_linger_and_writes_everything() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=2, interval=60.0)
    await batcher.send(msg(0))
    await batcher.send(msg(1))
    await settle()
    await batcher.send(msg(2))
    inner.gate.set()
    await settle()
    assert batcher.pending == 1
    await batcher.flush()
    assert inner.messages == [msg(n) for n in range(3)]
    assert batcher.pending == 0


async def test_flush_writes_what_is_queued() -> None:
    inner = Inner()
    batcher = MessageBatcher(inner)
    for n in range(5):
        await batcher.send(msg(n))
    await batcher.flush()  # no loop iteration in between
    assert inner.messages == [msg(n) for n in range(5)]
    await batcher.flush()  # nothing queued: a no-op
    assert len(inner.frames) == 1


# -- MessageBatcher: order and backpressure ---------------------------------


async def test_order_is_kept_under_concurrent_senders() -> None:
    async def yielding(frame: Mapping[str, Any]) -> None:
        await asyncio.sleep(0)  # a write that suspends, so senders pile up
        received.extend(unpack(frame))

    received: list[Any] = []
    batcher = MessageBatcher(yielding, max_batch=7, interval=0.0, max_queue=7)
    await asyncio.gather(*(batcher.send(msg(n)) for n in range(500)))
    await batcher.flush()
    assert received == [msg(n) for n in range(500)]


async def test_a_full_queue_makes_senders_wait_and_loses_nothing() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=2, max_queue=2)
    await batcher.send(msg(0))
    await settle()  # msg(0) is being written; the queue is empty
    await batcher.send(msg(1))
    await batcher.send(msg(2))  # the queue is full now
    senders = [asyncio.create_task(batcher.send(msg(n))) for n in range(3, 10)]
    await settle()
    assert not any(sender.done() for sender in senders)
    assert batcher.pending == 9
    inner.gate.set()
    await asyncio.gather(*senders)
    await batcher.flush()
    assert inner.messages == [msg(n) for n in range(10)]
    assert max(inner.sizes) <= 2


async def test_a_cancelled_waiting_sender_does_not_block_the_others() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=1, max_queue=1)
    await batcher.send(msg(0))
    await settle()
    await batcher.send(msg(1))
    cancelled = asyncio.create_task(batcher.send(msg(2)))
    waiting = asyncio.create_task(batcher.send(msg(3)))
    await settle()
    cancelled.cancel()
    inner.gate.set()
    await waiting
    await batcher.flush()
    assert inner.messages == [msg(0), msg(1), msg(3)]


# -- MessageBatcher: failures -----------------------------------------------


async def test_a_failed_write_fails_waiting_senders_and_the_next_send() -> None:
    inner = Inner(gated=True, fail=RuntimeError("boom"))
    batcher = MessageBatcher(inner, max_batch=1, max_queue=1)
    await batcher.send(msg(0))  # its write will fail
    await settle()
    await batcher.send(msg(1))  # queued: still written after the failure
    waiting = asyncio.create_task(batcher.send(msg(2)))
    await settle()
    inner.gate.set()
    with pytest.raises(BatchSendError) as failed_waiter:
        await waiting
    assert isinstance(failed_waiter.value.__cause__, RuntimeError)
    await settle()
    with pytest.raises(BatchSendError, match="boom") as failed_send:
        await batcher.send(msg(3))  # not queued: the runtime sends it directly
    assert isinstance(failed_send.value.__cause__, RuntimeError)
    # Reported once: the batcher goes on. msg(0) was retried on its own and went out.
    await batcher.send(msg(4))
    await batcher.flush()
    assert inner.messages == [msg(0), msg(1), msg(4)]


async def test_one_unencodable_message_does_not_cost_the_batch_its_replies() -> None:
    sent: list[bytes] = []

    async def encoding_inner(frame: Mapping[str, Any]) -> None:
        sent.append(orjson.dumps(frame))  # raises for a value JSON cannot encode

    batcher = MessageBatcher(encoding_inner)
    await batcher.send({"id": 1, "result": "a"})
    await batcher.send({"id": 2, "result": object()})
    await batcher.send({"id": 3, "result": "c"})
    with pytest.raises(BatchSendError):
        await batcher.flush()
    frames = [orjson.loads(frame) for frame in sent]
    assert frames == [
        {"id": 1, "result": "a"},
        {"id": 2, "error": {"code": "internal_error", "message": frames[1]["error"]["message"]}},
        {"id": 3, "result": "c"},
    ]
    assert "could not be sent" in frames[1]["error"]["message"]


async def test_a_failure_found_by_flush_is_raised_by_flush() -> None:
    inner = Inner(fail=ValueError("cannot encode"))
    batcher = MessageBatcher(inner)
    await batcher.send(msg(0))
    with pytest.raises(BatchSendError, match="cannot encode"):
        await batcher.flush()
    await batcher.send(msg(1))  # already reported by flush
    await batcher.flush()
    assert inner.messages == [msg(0), msg(1)]  # msg(0) went out when retried alone


async def test_a_closed_connection_fails_every_later_send_but_not_flush() -> None:
    inner = Inner(fail=ConnectionResetError("gone"))
    batcher = MessageBatcher(inner)
    await batcher.send(msg(0))
    await batcher.flush()  # what cannot be written is gone with the connection
    for n in (1, 2):
        with pytest.raises(ConnectionResetError):
            await batcher.send(msg(n))


# -- MessageBatcher: counters and arguments ---------------------------------


async def test_counters() -> None:
    inner = Inner()
    batcher = MessageBatcher(inner, max_batch=3)
    assert batcher.stats() == {"frames": 0, "messages": 0, "mean_batch_size": 0.0}
    for n in range(5):
        await batcher.send(msg(n))
    await batcher.flush()  # frames of 3 and 2
    await batcher.send(msg(5))
    await batcher.flush()  # a lone frame
    assert (batcher.frames, batcher.messages) == (3, 6)
    assert batcher.mean_batch_size == 2.0
    assert batcher.stats() == {"frames": 3, "messages": 6, "mean_batch_size": 2.0}


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"interval": -1}, "interval"),
        ({"max_batch": 10, "max_queue": 9}, "max_queue"),
    ],
)
def test_bad_batcher_arguments_are_refused(arguments: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        MessageBatcher(Inner(), **arguments)


# -- configuration ----------------------------------------------------------


def settings(**table: Any) -> BatchingConfig:
    """``table`` as ``[plugins.batching]``, read the way ``on_load`` reads it."""
    config = localagent.Settings(config_dir=Path("/cfg"), plugins={NAME: table})
    return config.plugin_settings(NAME, BatchingConfig)


def test_the_defaults() -> None:
    assert settings() == BatchingConfig(max_batch=50, interval=0.005, max_queue=None)
    assert settings(max_batch=10).max_queue is None  # the batcher makes it 20 * max_batch
    assert MessageBatcher(Inner(), max_batch=10, max_queue=None).max_queue == 200
    assert settings(max_batch=10, interval=0, max_queue=10) == BatchingConfig(
        max_batch=10, interval=0.0, max_queue=10
    )


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"colour": 1}, "plugins.batching.colour: unknown setting"),
        ({"max_batch": 0}, "plugins.batching.max_batch = 0: 'max_batch' must be >= 1"),
        ({"max_batch": 2.5}, "plugins.batching.max_batch = 2.5: expected int, got float"),
        ({"max_batch": True}, "plugins.batching.max_batch = True: expected int, got bool"),
        ({"max_batch": "50"}, "plugins.batching.max_batch = '50': expected int, got str"),
        ({"interval": -0.1}, "plugins.batching.interval = -0.1: interval must be a number"),
        ({"interval": "fast"}, "plugins.batching.interval = 'fast': expected float, got str"),
        ({"interval": float("nan")}, "plugins.batching.interval = nan: interval must be"),
        ({"interval": False}, "plugins.batching.interval = False: expected float, got bool"),
        ({"max_queue": 49}, "plugins.batching.max_queue = 49: max_queue (49) must be at least"),
        ({"max_batch": 20, "max_queue": 10}, "[plugins.batching]: max_queue (10) must be at"),
        ({"max_queue": 1.5e3}, "plugins.batching.max_queue = 1500.0: expected int, got float"),
    ],
)
def test_a_bad_config_value_names_its_key(table: dict[str, Any], complaint: str) -> None:
    with pytest.raises(localagent.ConfigError) as caught:
        settings(**table)
    assert str(caught.value).startswith("/cfg/config.toml: ")
    assert complaint in str(caught.value)


@pytest.fixture
def bad_config(localagent_config_dir: Path) -> None:
    localagent_config_dir.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text("[plugins.batching]\nmax_batch = 0\n")


@pytest.mark.usefixtures("bad_config")
async def test_a_bad_config_table_fails_the_plugin_in_the_agent() -> None:
    settings = localagent.load_settings(overrides={"port": 0})
    server = localagent.Server.create(settings, extra_plugins={"batching": Plugin()}, strict=True)
    with pytest.raises(localagent.PluginError, match="max_batch"):
        async with server:
            pass


def test_the_bench_runs_the_websocket_area_with_it_off_and_on() -> None:
    assert Plugin.bench_areas == ("websocket",)
    ((area, on, off, _label),) = Plugin.bench_pairs
    assert (area, on, off) == (
        "websocket",
        "echo throughput, client batch frames of 50",
        "echo throughput, pipelined, unbatched",
    )


# -- the plugin in a real agent ---------------------------------------------


@pytest.fixture(params=["on"])
def batching(request: pytest.FixtureRequest) -> str:
    """``"on"`` or ``"off"``; tests that compare both parametrize it indirectly."""
    return str(request.param)


@pytest.fixture
def localagent_plugins(batching: str) -> Sequence[Any]:
    return [Plugin()] if batching == "on" else []


@pytest.fixture
async def raw(localagent_agent: localagent.Server) -> AsyncIterator[ClientConnection]:
    """A plain websockets client: it sees the frames as they are, batch frames included."""
    token = localagent_agent.token_file.get()
    async with connect(
        localagent_agent.url,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
    ) as ws:
        yield ws


async def read_replies(ws: ClientConnection, count: int) -> tuple[list[Any], list[Any]]:
    """Read frames until ``count`` messages arrived; return (frames, messages)."""
    frames: list[Any] = []
    messages: list[Any] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            frame = orjson.loads(await ws.recv(decode=False))
            frames.append(frame)
            messages.extend(unpack(frame))
    return frames, messages


async def test_a_lone_request_gets_a_plain_reply_frame(raw: ClientConnection) -> None:
    await raw.send(orjson.dumps({"id": 1, "type": "ping"}), text=True)
    frames, _ = await read_replies(raw, 1)
    assert frames == [{"id": 1, "result": {"pong": True}}]


async def test_requests_read_off_the_socket_together_are_answered_in_one_frame(
    raw: ClientConnection,
) -> None:
    # Five frames in one write (websockets' Sans-I/O protocol encodes them): the
    # agent reads them together, so none of their replies is lone.
    for n in range(5):
        raw.protocol.send_text(orjson.dumps({"id": n, "type": "echo", "data": n}))
    raw.transport.write(b"".join(raw.protocol.data_to_send()))
    frames, _ = await read_replies(raw, 5)
    assert frames == [
        {"type": "batch", "messages": [{"id": n, "result": {"data": n}} for n in range(5)]}
    ]


async def test_an_inbound_batch_is_answered_in_batch_frames(
    localagent_agent: localagent.Server, raw: ClientConnection
) -> None:
    requests = [{"id": n, "type": "echo", "data": n} for n in range(100)]
    await raw.send(orjson.dumps({"type": "batch", "messages": requests}), text=True)
    frames, messages = await read_replies(raw, 100)
    assert len(frames) < 100
    assert any(frame.get("type") == "batch" for frame in frames)
    assert messages == [{"id": n, "result": {"data": n}} for n in range(100)]
    (connection,) = localagent_agent.runtime.connections
    batcher = connection.state["batching"]
    assert isinstance(batcher, MessageBatcher)
    assert batcher.messages == 100 and batcher.frames == len(frames)


@pytest.mark.parametrize("batching", ["off", "on"], indirect=True)
async def test_the_client_gets_the_same_results_with_it_on_and_off(
    localagent_client: localagent.Client,
) -> None:
    results = await asyncio.gather(
        *(localagent_client.request("echo", {"n": n}) for n in range(300)),
        localagent_client.request("ping"),
    )
    assert results == [{"data": {"n": n}} for n in range(300)] + [{"pong": True}]
    with pytest.raises(localagent.ReplyError) as caught:
        await localagent_client.request("no.such.type")
    assert caught.value.code == "unknown_type"
    batch = [{"id": f"b{n}", "type": "echo", "data": n} for n in range(60)]
    await localagent_client.send_raw(orjson.dumps({"type": "batch", "messages": batch}))
    # Replies to ids the client did not issue land in its events, unbatched, in order.
    events = [await localagent_client.events.get() for _ in range(60)]
    assert events == [{"id": f"b{n}", "result": {"data": n}} for n in range(60)]


async def test_disabling_it_writes_one_message_per_frame_in_order() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=10)
    for n in range(5):
        await batcher.send(msg(n))  # queued behind a held write
    batcher.enabled = False
    waiting = asyncio.ensure_future(batcher.send(msg(5)))  # queued too: something is ahead
    await asyncio.sleep(0)
    inner.gate.set()
    await waiting
    await batcher.flush()
    assert [m["id"] for m in inner.messages] == list(range(6))
    await batcher.send(msg(6))  # nothing ahead now: straight through, as itself
    assert inner.frames[-1] == msg(6)
    assert all(frame.get("type") != "batch" for frame in inner.frames[1:])
    batcher.enabled = True
    for n in range(7, 12):
        await batcher.send(msg(n))
    await batcher.flush()
    assert inner.frames[-1] == {"type": "batch", "messages": [msg(n) for n in range(7, 12)]}
    assert [m["id"] for m in inner.messages] == list(range(12))
    assert batcher.messages == 12


async def test_send_with_room_returns_a_finished_awaitable() -> None:
    inner = Inner(gated=True)
    batcher = MessageBatcher(inner, max_batch=2, max_queue=2)
    first, second = batcher.send(msg(1)), batcher.send(msg(2))
    assert isinstance(first, asyncio.Future) and first.done() and second.done()
    third = batcher.send(msg(3))  # no room: a coroutine that waits for it
    assert asyncio.iscoroutine(third)
    inner.gate.set()
    await third
    await batcher.flush()
    assert [m["id"] for m in inner.messages] == [1, 2, 3]
