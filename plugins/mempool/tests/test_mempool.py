"""The mempool plugin: ``BufferPool`` alone, and the plugin in a real agent over real sockets."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from localagent_batching import Plugin as Batching
from localagent_bench._context import BenchContext
from localagent_bench.areas import load_areas
from localagent_hookspecs import handles, hookimpl
from localagent_mempool import NAME, BufferPool, MempoolConfig, Plugin
from websockets.asyncio.client import ClientConnection, connect

import localagent
from localagent.codec import encode_into

# -- BufferPool ----------------------------------------------------------------


def test_a_released_buffer_is_reused() -> None:
    pool = BufferPool()
    first = pool.acquire(3000)
    encode_into({"x": "y" * 2900}, first)
    pool.release(first)
    again = pool.acquire(3000)
    assert again is first
    assert pool.stats() == {
        "created": 1,
        "reused": 1,
        "dropped": 0,
        "idle": 0,
        "pooled_bytes": 0,
    }


def test_two_buffers_in_use_are_never_the_same() -> None:
    pool = BufferPool()
    held = [pool.acquire(2000) for _ in range(50)]
    assert len({id(buffer) for buffer in held}) == 50
    for buffer in held:
        pool.release(buffer)
    again = [pool.acquire(2000) for _ in range(50)]
    assert len({id(buffer) for buffer in again}) == 50


def test_the_pool_never_grows_past_its_bounds() -> None:
    pool = BufferPool(max_per_class=4, max_pooled=64 * 1024, max_buffer=32 * 1024)
    sizes = [1000, 5000, 20_000, 40_000, 3000, 9000] * 50
    buffers = [pool.acquire(size) for size in sizes]
    for buffer in buffers:
        pool.release(buffer)
        assert pool.pooled_bytes <= 64 * 1024
        assert all(len(free) <= 4 for free in pool._free.values())
    assert pool.pooled_bytes == sum(
        buffer.__alloc__() for free in pool._free.values() for buffer in free
    )
    assert pool.dropped == len(sizes) - pool.idle
    # The 40,000-byte buffers are over max_buffer: never pooled.
    assert all(b.__alloc__() <= 32 * 1024 for free in pool._free.values() for b in free)


def test_releasing_a_buffer_twice_is_refused() -> None:
    pool = BufferPool()
    buffer = pool.acquire(100)
    pool.release(buffer)
    with pytest.raises(ValueError, match="released twice"):
        pool.release(buffer)


def test_a_buffer_from_a_larger_class_serves_a_smaller_frame() -> None:
    pool = BufferPool()
    big = pool.acquire(4096)
    pool.release(big)
    assert pool.acquire(3000) is big  # 3000 is class 2**11; 4097 bytes allocated is 2**12


def settings(**table: Any) -> MempoolConfig:
    """``table`` as ``[plugins.mempool]``, read the way ``on_load`` reads it."""
    config = localagent.Settings(config_dir=Path("/cfg"), plugins={NAME: table})
    return config.plugin_settings(NAME, MempoolConfig)


def test_config_is_validated() -> None:
    assert settings() == MempoolConfig()
    assert settings(max_per_class=2).max_per_class == 2
    with pytest.raises(localagent.ConfigError, match=r"plugins\.mempool\.size: unknown setting"):
        settings(size=1)
    with pytest.raises(localagent.ConfigError, match="max_pooled = -1: 'max_pooled' must be >= 0"):
        settings(max_pooled=-1)
    with pytest.raises(localagent.ConfigError, match=r"max_buffer = 1\.5: expected int, got float"):
        settings(max_buffer=1.5)


def test_the_bench_runs_its_areas_with_it_off_and_on() -> None:
    assert Plugin.bench_areas == ("websocket", "allocations")


async def test_the_allocations_area_traces_fewer_bytes_and_blocks_with_it(tmp_path: Path) -> None:
    # The area's real run (quick): the same frames through a real connection, off and on.
    (area,) = load_areas(["allocations"])
    figures = {}
    for variant in ((), ("-p", "mempool")):
        workdir = tmp_path / ("on" if variant else "off")
        workdir.mkdir()
        context = BenchContext(quick=True, repetitions=1, workdir=workdir, plugin_options=variant)
        result = await area.run(context)
        assert result.error is None and result.skipped is None
        figures[variant] = {c.figure.name: c.figure.median for c in result.comparisons}
    off, on = figures[()], figures[("-p", "mempool")]
    assert (
        set(on)
        == set(off)
        == {
            "traced bytes per 10k messages, batch frames",
            "traced blocks per 10k messages, alive as each frame is written",
            "batch frames written",
        }
    )
    # Each frame's encoded copy is gone: ~5 KB and at least a block per frame of 50.
    bytes_ = "traced bytes per 10k messages, batch frames"
    assert on[bytes_] < 0.6 * off[bytes_]
    blocks = "traced blocks per 10k messages, alive as each frame is written"
    assert 0 < on[blocks] <= off[blocks] - 200
    assert on["batch frames written"] > 0
    assert not tracemalloc.is_tracing()


# -- the plugin in a real agent ---------------------------------------------------


@pytest.fixture(params=["mempool"])
def plugins(request: pytest.FixtureRequest) -> str:
    """Which optimization plugins the agent runs; tests that compare parametrize it."""
    return str(request.param)


@pytest.fixture
def mempool() -> Plugin:
    """The mempool plugin object the agent runs (when ``plugins`` names it)."""
    return Plugin()


@pytest.fixture
def localagent_plugins(plugins: str, mempool: Plugin) -> Sequence[Any]:
    chosen: dict[str, Any] = {"mempool": mempool, "batching": Batching()}
    return [(name, chosen[name]) for name in plugins.split("+") if name in chosen]


async def _raw(agent: localagent.Server) -> ClientConnection:
    return await connect(
        agent.url,
        additional_headers={"Authorization": f"Bearer {agent.token_file.get()}"},
        compression=None,
        max_size=None,
    )


async def _exchange(ws: ClientConnection, requests: list[dict[str, Any]]) -> list[Any]:
    """Send ``requests`` as one batch frame; return the replies, batch frames unpacked."""
    await ws.send(json.dumps({"type": "batch", "messages": requests}), text=True)
    replies: list[Any] = []
    async with asyncio.timeout(20):
        while len(replies) < len(requests):
            frame = json.loads(await ws.recv())
            replies.extend(frame["messages"] if frame.get("type") == "batch" else [frame])
    return replies


@pytest.fixture
async def raw(localagent_agent: localagent.Server) -> AsyncIterator[ClientConnection]:
    ws = await _raw(localagent_agent)
    async with ws:
        yield ws


@pytest.mark.parametrize("plugins", ["none", "mempool", "batching+mempool"], indirect=True)
async def test_a_plain_client_sees_the_same_replies_with_it_on_and_off(
    raw: ClientConnection,
) -> None:
    requests = [{"id": n, "type": "echo", "data": {"n": n, "s": "é" * n}} for n in range(200)]
    replies = await _exchange(raw, requests)
    assert replies == [{"id": n, "result": {"data": {"n": n, "s": "é" * n}}} for n in range(200)]
    await raw.send(json.dumps({"id": "p", "type": "ping"}), text=True)
    assert json.loads(await raw.recv()) == {"id": "p", "result": {"pong": True}}


@pytest.mark.parametrize("plugins", ["batching+mempool"], indirect=True)
async def test_concurrent_connections_never_share_a_buffer(
    localagent_agent: localagent.Server, mempool: Plugin
) -> None:
    # Twelve clients, each with its own payloads of very different sizes, all in
    # flight at once: a buffer reused before its frame was written would show up
    # as one client's bytes in another's replies, or as a frame that is not JSON.
    async def one_client(index: int) -> None:
        async with await _raw(localagent_agent) as ws:
            for round_ in range(5):
                size = (index * 997 + round_ * 4099) % 20_000
                requests = [
                    {
                        "id": f"{index}-{round_}-{n}",
                        "type": "echo",
                        "data": f"{index}:" + "x" * size,
                    }
                    for n in range(40)
                ]
                replies = await _exchange(ws, requests)
                assert replies == [
                    {"id": request["id"], "result": {"data": request["data"]}}
                    for request in requests
                ]

    await asyncio.gather(*(one_client(index) for index in range(12)))
    pool = mempool.pool
    assert pool.reused > 0
    assert pool.pooled_bytes <= pool.max_pooled


@pytest.mark.parametrize("plugins", ["batching+mempool"], indirect=True)
async def test_every_batch_frame_the_batcher_assembles_is_encoded_into_a_pooled_buffer(
    mempool: Plugin, raw: ClientConnection
) -> None:
    requests = [{"id": n, "type": "echo", "data": n} for n in range(100)]
    await raw.send(json.dumps({"type": "batch", "messages": requests}), text=True)
    frames = []
    async with asyncio.timeout(10):
        while sum(len(f.get("messages", [f])) for f in frames) < 100:
            frames.append(json.loads(await raw.recv()))
    batches = [frame for frame in frames if frame.get("type") == "batch"]
    assert batches  # batching ran outside
    pool = mempool.pool
    assert pool.created + pool.reused == len(batches)  # mempool encoded every batch frame


@pytest.mark.parametrize("plugins", ["mempool"], indirect=True)
async def test_single_messages_take_the_core_path(mempool: Plugin, raw: ClientConnection) -> None:
    for n in range(20):
        await raw.send(json.dumps({"id": n, "type": "ping"}), text=True)
        assert json.loads(await raw.recv()) == {"id": n, "result": {"pong": True}}
    assert mempool.pool.created == mempool.pool.reused == 0


@pytest.fixture
def small_max_buffer(localagent_config_dir: Path) -> None:
    localagent_config_dir.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text("[plugins.mempool]\nmax_buffer = 65536\n")


@pytest.mark.usefixtures("small_max_buffer")
@pytest.mark.parametrize("plugins", ["batching+mempool"], indirect=True)
async def test_a_frame_larger_than_max_buffer_is_sent_and_its_buffer_freed(
    mempool: Plugin, raw: ClientConnection
) -> None:
    pool = mempool.pool
    assert pool.max_buffer == 65536
    big = "z" * 40_000  # two replies make one batch frame of ~80 KB
    requests = [{"id": n, "type": "echo", "data": big} for n in (1, 2)]
    replies = await _exchange(raw, requests)
    assert replies == [{"id": n, "result": {"data": big}} for n in (1, 2)]
    assert pool.created == 1 and pool.dropped == 1
    assert pool.idle == 0 and pool.pooled_bytes == 0


class Unencodable:
    @hookimpl(specname="on_message")
    @handles("bad")
    def bad(self) -> Any:
        return {"value": object()}


@pytest.mark.usefixtures("localagent_config_dir")  # only the plugins named here
async def test_an_unencodable_reply_still_gets_an_error_reply() -> None:
    settings = localagent.load_settings(overrides={"port": 0})
    mempool = Plugin()
    plugins = {"mempool": mempool, "batching": Batching(), "bad": Unencodable()}
    async with localagent.Server.create(settings, extra_plugins=plugins, strict=True) as agent:
        async with await _raw(agent) as ws:
            requests = [
                {"id": 1, "type": "echo", "data": 1},
                {"id": 2, "type": "bad"},
                {"id": 3, "type": "echo", "data": 3},
            ]
            replies = sorted(await _exchange(ws, requests), key=lambda reply: reply["id"])
            assert replies[0] == {"id": 1, "result": {"data": 1}}
            assert replies[1]["id"] == 2 and replies[1]["error"]["code"] == "internal_error"
            assert replies[2] == {"id": 3, "result": {"data": 3}}
            await ws.send(json.dumps({"id": 4, "type": "ping"}), text=True)
            assert json.loads(await ws.recv()) == {"id": 4, "result": {"pong": True}}
        pool = mempool.pool
        # The batch frame that failed to encode gave its buffer back: nothing leaked.
        assert pool.created >= 1 and pool.idle == pool.created


@pytest.fixture
def bad_config(localagent_config_dir: Path) -> None:
    localagent_config_dir.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text("[plugins.mempool]\nmax_buffer = -5\n")


@pytest.mark.usefixtures("bad_config")
async def test_a_bad_config_table_fails_the_plugin_in_the_agent() -> None:
    settings = localagent.load_settings(overrides={"port": 0})
    server = localagent.Server.create(settings, extra_plugins={"mempool": Plugin()}, strict=True)
    with pytest.raises(localagent.PluginError, match="max_buffer"):
        async with server:
            pass
