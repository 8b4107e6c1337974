"""``ClientPool`` against real agents: an in-process one, and ``localagent serve`` subprocesses.

Nothing here is timed: waits are bounded by ``asyncio.timeout`` only so that a bug
fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from localagent_pooling import ClientPool, PoolClosed, PoolTimeout

import localagent
from localagent import Client, ConnectFailed, ConnectionLost, Server
from localagent.testing import free_port, running_agent


@pytest_asyncio.fixture
async def pool(localagent_agent: Server) -> AsyncIterator[ClientPool]:
    async with ClientPool(
        localagent_agent.url, localagent_agent.token_file.get(), min_size=2, max_size=4
    ) as pool:
        yield pool


def server_connections(server: Server) -> int:
    """Connections the agent serves right now (its own count, server side)."""
    return len(server.runtime.connections)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def until(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Wait (bounded) for a state the pool's timers or the agent bring about.

    Polled: the state changes in another process or on a timer, with no event
    to wait on; the sleep is a polling period, not a stand-in for I/O.
    """
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert condition(), what


# -- sizes, reuse, counters -------------------------------------------------------


async def test_prewarm_opens_min_size_connections(
    pool: ClientPool, localagent_agent: Server
) -> None:
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.created, stats.acquired) == (2, 2, 2, 0)
    await until(lambda: server_connections(localagent_agent) == 2, "the agent sees 2")


async def test_a_released_connection_is_reused(pool: ClientPool) -> None:
    first = await pool.acquire()
    pool.release(first)
    second = await pool.acquire()
    pool.release(second)
    assert second is first
    assert pool.stats().acquired == 2
    assert pool.stats().created == 2


async def test_requests_work_through_every_api(pool: ClientPool) -> None:
    assert await pool.request("ping") == {"pong": True}
    async with pool.lease() as client:
        assert await client.request("ping") == {"pong": True}
    async with pool.client() as client:
        assert client.pooled
        assert await client.request("echo", "x") is not None
    assert pool.stats().in_use == 0


async def test_the_pool_never_exceeds_max_size(pool: ClientPool, localagent_agent: Server) -> None:
    seen: list[int] = []

    async def caller(n: int) -> None:
        async with pool.lease() as client:
            seen.append(pool.size)
            seen.append(server_connections(localagent_agent))
            assert await client.request("echo", n) is not None

    await asyncio.gather(*(caller(n) for n in range(50)))
    assert max(seen) <= 4
    stats = pool.stats()
    assert stats.created == 4 and stats.acquired == 50 and stats.in_use == 0


async def test_acquire_times_out_with_a_clear_error(localagent_agent: Server) -> None:
    token = localagent_agent.token_file.get()
    async with ClientPool(localagent_agent.url, token, min_size=1, max_size=1) as pool:
        held = await pool.acquire()
        with pytest.raises(PoolTimeout) as caught:
            await pool.acquire(timeout=0.05)
        assert "max_size" in str(caught.value) and localagent_agent.url in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        assert pool.stats().timeouts == 1 and pool.stats().waiting == 0
        pool.release(held)
        assert await pool.request("ping") == {"pong": True}


async def test_waiting_callers_are_served_first_come_first_served(pool: ClientPool) -> None:
    held = [await pool.acquire() for _ in range(4)]
    order: list[int] = []

    async def waiter(n: int) -> None:
        async with pool.lease():
            order.append(n)

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(waiter(n)))
        await asyncio.sleep(0)  # let it queue up before the next one starts
    assert pool.stats().waiting == 6
    for client in held:
        pool.release(client)
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_a_closed_connection_is_replaced_not_handed_out(
    pool: ClientPool, localagent_agent: Server
) -> None:
    for connection in list(localagent_agent.runtime.connections):
        await connection.close(1001, "going away")
    idle = [entry.client for entry in pool._idle]
    await until(lambda: all(client.closed for client in idle), "the pool's connections closed")
    clients = [await pool.acquire() for _ in range(2)]
    assert all(not client.closed for client in clients)
    for client in clients:
        assert await client.request("ping") == {"pong": True}
        pool.release(client)
    stats = pool.stats()
    assert stats.replaced == 2 and stats.created == 4


async def test_a_connection_closed_by_its_borrower_is_discarded(pool: ClientPool) -> None:
    client = await pool.acquire()
    await client.aclose()
    pool.release(client)
    assert pool.stats().replaced == 1
    again = await pool.acquire()
    assert again is not client and not again.closed
    pool.release(again)


async def test_idle_connections_beyond_min_size_expire(localagent_agent: Server) -> None:
    token = localagent_agent.token_file.get()
    async with ClientPool(
        localagent_agent.url,
        token,
        min_size=1,
        max_size=5,
        idle_timeout=0.05,
        health_check_interval=0.02,
    ) as pool:
        clients = [await pool.acquire() for _ in range(5)]
        for client in clients:
            pool.release(client)
        await until(lambda: pool.stats().expired == 4, "4 expired")
        assert pool.size == 1
        await until(lambda: server_connections(localagent_agent) == 1, "the agent sees 1")
        assert await pool.request("ping") == {"pong": True}


async def test_no_connection_leaks_after_1000_cycles(localagent_agent: Server) -> None:
    token = localagent_agent.token_file.get()
    before = open_fds()
    async with ClientPool(localagent_agent.url, token, min_size=1, max_size=4) as pool:

        async def cycles(worker: int) -> None:
            for n in range(125):
                client = await pool.acquire()
                try:
                    if n == 60:  # now and then a borrower breaks its connection
                        await client.aclose()
                    else:
                        await client.request("ping")
                finally:
                    pool.release(client)

        await asyncio.gather(*(cycles(worker) for worker in range(8)))
        stats = pool.stats()
        assert stats.acquired == 1000 and stats.replaced == 8
        assert stats.size <= 4 and stats.in_use == 0
        assert stats.created == stats.size + stats.replaced + stats.expired
        await until(lambda: server_connections(localagent_agent) == stats.size, "server side")
    await until(lambda: server_connections(localagent_agent) == 0, "all closed server side")
    await until(lambda: open_fds() <= before, "no file descriptor left open")


async def test_a_closed_pool_refuses_and_closes(pool: ClientPool) -> None:
    held = await pool.acquire()
    await pool.aclose()
    with pytest.raises(PoolClosed):
        await pool.acquire()
    pool.release(held)
    await until(lambda: held.closed, "a connection returned to a closed pool closes")


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="min_size"):
        ClientPool("ws://127.0.0.1:1", "t", min_size=3, max_size=2)
    with pytest.raises(ValueError, match="acquire_timeout"):
        ClientPool("ws://127.0.0.1:1", "t", acquire_timeout=0)


async def test_nothing_listening_is_a_connect_error() -> None:
    pool = ClientPool(f"ws://127.0.0.1:{free_port()}", "t", min_size=0, open_timeout=2)
    with pytest.raises(ConnectFailed, match="Is `localagent serve` running"):
        await pool.request("ping")
    assert pool.size == 0
    await pool.aclose()


# -- faults with real agent processes ---------------------------------------------


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    config_dir = tmp_path / "agent"
    config_dir.mkdir()
    workspace = tmp_path / "agent-workspace"
    (config_dir / "config.toml").write_text(
        f'[agent]\nworkspace = "{workspace}"\n[plugins.exec]\nallow = ["sleep"]\n'
    )
    return config_dir


@pytest.fixture
def agent_port() -> int:
    return free_port()


async def test_agent_restart_fails_in_flight_then_recovers(
    agent_env: dict[str, str], agent_dir: Path, agent_port: int
) -> None:
    with running_agent(agent_env, "--port", str(agent_port), config_dir=agent_dir) as agent:
        pool = ClientPool(agent.url, agent.token, min_size=2, max_size=4)
        await pool.prewarm()
        pooled = pool.client()
        await pooled.open()
        in_flight = [
            asyncio.create_task(pool.request("exec", {"argv": ["sleep", "30"]})) for _ in range(3)
        ]
        in_flight.append(asyncio.create_task(pooled.request("exec", {"argv": ["sleep", "30"]})))
        await until(lambda: pool.stats().in_use == 4, "4 connections busy")
    # The agent is gone (SIGTERM; it drains for a while, then closes).
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert all(isinstance(result, ConnectionLost) for result in results), results
    assert all("closed" in str(result) for result in results)
    with pytest.raises(ConnectFailed):  # down: a clear error, nothing hangs
        await pool.request("ping")
    with running_agent(agent_env, "--port", str(agent_port), config_dir=agent_dir):
        # Back: the same pool and the same pooled client work, nothing reset by the caller.
        assert (
            await asyncio.gather(*(pool.request("ping") for _ in range(6))) == [{"pong": True}] * 6
        )
        assert await pooled.request("ping") == {"pong": True}
        stats = pool.stats()
        assert stats.replaced >= 4 and stats.size <= 4
        await pooled.aclose()
        await pool.aclose()


async def test_an_unresponsive_connection_is_never_handed_out(
    agent_env: dict[str, str], agent_dir: Path, agent_port: int
) -> None:
    with running_agent(agent_env, "--port", str(agent_port), config_dir=agent_dir) as agent:
        pool = ClientPool(
            agent.url,
            agent.token,
            min_size=1,
            max_size=1,
            health_check_interval=0.01,
            ping_timeout=0.2,
            open_timeout=0.5,
        )
        await pool.prewarm()
        stale = pool._idle[0].client  # the connection that will stall
        os.kill(agent.pid, signal.SIGSTOP)  # the agent stops answering, sockets stay open
        try:
            await asyncio.sleep(0.05)  # past health_check_interval: a ping is due
            with pytest.raises(ConnectFailed):
                await pool.acquire()  # the stalled one is dropped; a new one cannot open
            assert pool.stats().replaced >= 1
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        client = await pool.acquire()
        assert client is not stale and await client.request("ping") == {"pong": True}
        pool.release(client)
        await pool.aclose()


# -- the plugin in an agent process: Client borrows from the pool --------------------


@pytest.fixture
def localagent_plugins() -> list[str]:
    return ["pooling"]


async def test_with_the_plugin_every_client_borrows_from_a_pool(
    localagent_agent: Server,
) -> None:
    plugin = localagent_agent.runtime.pm.get_plugin("pooling")
    registry = plugin.registry
    url, token = localagent_agent.url, localagent_agent.token_file.get()
    for _ in range(3):
        async with Client(url, token) as client:
            assert client.pooled
            assert await client.request("ping") == {"pong": True}
    pool = registry.pool(url, token)
    stats = pool.stats()
    assert stats.acquired == 3 and stats.created == 1 and stats.in_use == 0
    direct = Client(url, token, direct=True)
    async with direct:
        assert not direct.pooled


async def test_without_the_plugin_a_client_dials_its_own_connection(
    localagent_load: object,
) -> None:
    server = Server.create(port=0)
    async with server, Client(server.url, server.token_file.get()) as client:
        assert not client.pooled
        assert await client.request("ping") == {"pong": True}


def test_the_plugin_is_found_and_lists_its_bench_area() -> None:
    loaded = localagent.load_plugins(options=["pooling"])
    info = loaded.info("pooling")
    assert info is not None and info.error is None
    assert getattr(loaded.manager.get_plugin("pooling"), "bench_areas", ()) == ("pooling", "redis")


async def test_without_prewarm_the_pools_wait_for_the_first_client(
    localagent_agent: Server,
) -> None:
    from localagent import _connectors

    plugin = localagent_agent.runtime.pm.get_plugin("pooling")
    assert plugin._registry is None  # nothing created at on_load: no prewarm URLs
    assert _connectors.factory == plugin._first_client
    url, token = localagent_agent.url, localagent_agent.token_file.get()
    async with Client(url, token) as client:
        assert client.pooled
        assert await client.request("ping") == {"pong": True}
    assert plugin._registry is not None
    assert _connectors.factory is plugin._registry  # the pools answer from now on
    assert plugin._registry.pool(url, token).stats().acquired == 1


async def test_a_stand_in_never_used_is_taken_back_at_shutdown(localagent_load: object) -> None:
    from localagent import _connectors

    async with Server.create(port=0, options=["pooling"], strict=True) as server:
        plugin = server.runtime.pm.get_plugin("pooling")
        assert _connectors.factory == plugin._first_client
    assert plugin._registry is None
    assert _connectors.factory is None
