"""The plugin's Redis pool: the agent's kv store on a private redis-server, plugin on and off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from localagent_pooling import NAME, PoolingConfig
from localagent_pooling._redis_pool import SETINFO_SINCE, redis_version

import localagent
from localagent import Client, ReplyError, Server
from localagent.testing import RedisServer


def kv_clients(url: str) -> int:
    """Connections Redis serves right now, excluding the one asking."""
    with redis.Redis.from_url(url) as probe:
        return len(probe.client_list()) - 1


@pytest_asyncio.fixture
async def pooled_agent(
    localagent_redis_url: str, localagent_config_dir: Any
) -> AsyncIterator[Server]:
    (localagent_config_dir / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text(
        "[plugins.pooling]\nredis_max_connections = 4\nredis_min_connections = 2\n"
    )
    async with Server.create(
        port=0, redis=localagent_redis_url, options=["pooling"], strict=True
    ) as server:
        yield server


async def test_the_plugin_hands_the_store_a_bounded_tuned_pool(
    pooled_agent: Server, localagent_redis_url: str
) -> None:
    store: Any = pooled_agent.runtime.store
    assert store.pipelining
    pool = store.pool
    assert type(pool).__name__ == "BlockingConnectionPool" and pool.max_connections == 4
    assert pool.connection_kwargs["health_check_interval"] == 30.0
    assert kv_clients(localagent_redis_url) == 2  # pre-warmed
    # With Redis configured the store is tuned at on_load; the WebSocket pools still wait
    # for a client (no prewarm URLs).
    assert pooled_agent.runtime.pm.get_plugin("pooling")._registry is None
    if (
        await redis_version(localagent_redis_url, 2.0) < SETINFO_SINCE
    ):  # trimmed where SETINFO fails
        assert pool.connection_kwargs.get("driver_info", "absent") is None


async def test_concurrent_kv_requests_stay_within_the_bound(
    pooled_agent: Server, localagent_redis_url: str
) -> None:
    async with Client(pooled_agent.url, pooled_agent.token_file.get()) as client:
        writes = [client.request("kv.set", {"key": f"k{n}", "value": n}) for n in range(300)]
        counts = [client.request("kv.incr", {"key": "n"}) for _ in range(300)]
        await asyncio.gather(*writes, *counts)
        assert kv_clients(localagent_redis_url) <= 4
        values = await client.request("kv.mget", {"keys": [f"k{n}" for n in range(300)]})
        assert values == {"values": {f"k{n}": n for n in range(300)}}
        assert await client.request("kv.get", {"key": "n"}) == {"found": True, "value": 300}


async def test_an_error_reply_in_a_pipeline_fails_only_its_own_request(
    pooled_agent: Server,
) -> None:
    async with Client(pooled_agent.url, pooled_agent.token_file.get()) as client:
        await client.request("kv.set", {"key": "text", "value": "abc"})
        calls = []
        for n in range(30):  # one frame, so the commands share pipelines
            calls.append(client.request("kv.set", {"key": f"m{n}", "value": n}))
            calls.append(client.request("kv.incr", {"key": "text" if n == 15 else "counter"}))
        results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and results.index(failures[0]) == 31
    assert isinstance(failures[0], ReplyError) and failures[0].code == "not_an_integer"
    counters = sorted(r["value"] for r in results[1::2] if not isinstance(r, BaseException))
    assert counters == list(range(1, 30))


async def test_without_the_plugin_the_store_is_plainly_configured(
    localagent_redis_url: str,
) -> None:
    async with Server.create(port=0, redis=localagent_redis_url) as server:
        store: Any = server.runtime.store
        assert not store.pipelining
        assert type(store.pool).__name__ == "BlockingConnectionPool"
        assert store.pool.max_connections == 32


async def test_redis_restart_fails_in_flight_requests_then_recovers(
    pooled_agent: Server, localagent_redis: RedisServer
) -> None:
    async with Client(pooled_agent.url, pooled_agent.token_file.get()) as client:
        await client.request("kv.set", {"key": "before", "value": 1})
        outcomes: list[Any] = []
        running = True

        async def load() -> None:
            n = 0
            while running:
                batch = [client.request("kv.incr", {"key": f"c{n % 10}"}) for _ in range(20)]
                outcomes.extend(await asyncio.gather(*batch, return_exceptions=True))
                n += 1

        loader = asyncio.create_task(load())
        await asyncio.to_thread(localagent_redis.stop)
        # Down: a request gets a clear error reply, promptly.
        with pytest.raises(ReplyError) as caught:
            await client.request("kv.get", {"key": "before"})
        assert caught.value.code == "unavailable" and "Redis" in caught.value.message
        await asyncio.to_thread(localagent_redis.start)
        running = False
        await loader
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(f, ReplyError) and f.code == "unavailable" for f in failures)
        # Back: the same client, same agent, nothing reset by the caller.
        assert await client.request("kv.get", {"key": "before"}) == {"found": True, "value": 1}
        results = await asyncio.gather(
            *(client.request("kv.set", {"key": f"after{n}", "value": n}) for n in range(50))
        )
        assert results == [{"ok": True}] * 50


async def test_redis_down_at_start_leaves_the_store_working_later(
    localagent_redis: RedisServer, localagent_config_dir: Any
) -> None:
    url = localagent_redis.url
    localagent_redis.stop()
    try:
        async with Server.create(port=0, redis=url, options=["pooling"]) as server:
            store: Any = server.runtime.store
            assert not store.pipelining  # not tuned: Redis was unreachable
            await asyncio.to_thread(localagent_redis.start)
            async with Client(server.url, server.token_file.get()) as client:
                assert await client.request("kv.set", {"key": "k", "value": 1}) == {"ok": True}
    finally:
        if not localagent_redis.ping():
            localagent_redis.start()


# -- configuration -----------------------------------------------------------------


def settings(**table: Any) -> PoolingConfig:
    """``table`` as ``[plugins.pooling]``, read the way ``on_load`` reads it."""
    config = localagent.Settings(config_dir=Path("/cfg"), plugins={NAME: table})
    return config.plugin_settings(NAME, PoolingConfig)


def test_the_defaults() -> None:
    config = settings()
    assert config == PoolingConfig()
    assert (config.min_size, config.max_size, config.redis_setinfo) == (2, 10, "auto")
    assert settings(prewarm=["ws://127.0.0.1:1"]).prewarm == ("ws://127.0.0.1:1",)


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"max_size": 0}, "plugins.pooling.max_size = 0: 'max_size' must be >= 1"),
        ({"min_size": 11}, "plugins.pooling.min_size = 11: min_size (11) must be at most max_size"),
        ({"acquire_timeout": 0}, "acquire_timeout = 0: acquire_timeout must be a number of"),
        ({"idle_timeout": "1"}, "plugins.pooling.idle_timeout = '1': expected float, got str"),
        ({"prewarm": ["http://x"]}, "prewarm: 'http://x' is not a ws:// or wss:// URL"),
        ({"redis_setinfo": "sometimes"}, "expected one of 'always', 'auto', 'never'"),
        ({"redis_pipelining": 1}, "plugins.pooling.redis_pipelining = 1: expected bool, got int"),
        ({"redis_min_connections": 99}, "redis_min_connections (99) must be at most"),
        ({"nope": 1}, "plugins.pooling.nope: unknown setting (known: min_size, max_size"),
    ],
)
def test_a_bad_config_value_names_its_key(table: dict[str, Any], complaint: str) -> None:
    with pytest.raises(localagent.ConfigError) as caught:
        settings(**table)
    assert complaint in str(caught.value)


async def test_a_bad_config_disables_the_plugin_not_the_agent(localagent_config_dir: Any) -> None:
    (localagent_config_dir / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text("[plugins.pooling]\nmax_size = 0\n")
    async with Server.create(port=0, options=["pooling"]) as server:
        info = server.runtime.plugins.info("pooling")
        assert info is not None and info.error is not None and "max_size" in info.error
        async with Client(server.url, server.token_file.get()) as client:
            assert not client.pooled
            assert await client.request("ping") == {"pong": True}
