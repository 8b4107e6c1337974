"""The ``kv`` built-in plugin on both stores: process memory and a real, private Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import localagent
from localagent import Client, ReplyError, Server
from localagent._stores import MemoryStore, RedisStore
from localagent.testing import RedisServer


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """``None`` for the embedded memory store, else the private Redis's URL."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def kv(store_url: str | None) -> AsyncIterator[Client]:
    """A client of an agent whose store is the parametrized one."""
    async with (
        Server.create(port=0, redis=store_url) as server,
        Client(server.url, server.token_file.get()) as client,
    ):
        assert server.runtime.store.kind == ("memory" if store_url is None else "redis")
        yield client


async def reply_error(call: Any) -> ReplyError:
    with pytest.raises(ReplyError) as caught:
        await call
    return caught.value


async def test_set_get_delete_round_trip(kv: Client) -> None:
    value = {"nested": [1, 2.5, "three", None, True], "unicode": "héllo ✓"}
    assert await kv.request("kv.set", {"key": "k1", "value": value}) == {"ok": True}
    assert await kv.request("kv.get", {"key": "k1"}) == {"found": True, "value": value}
    assert await kv.request("kv.get", {"key": "missing"}) == {"found": False, "value": None}
    assert await kv.request("kv.delete", {"key": "k1"}) == {"deleted": 1}
    assert await kv.request("kv.delete", {"key": "k1"}) == {"deleted": 0}
    assert (await kv.request("kv.get", {"key": "k1"}))["found"] is False


async def test_null_is_a_value_not_an_absence(kv: Client) -> None:
    await kv.request("kv.set", {"key": "nothing", "value": None})
    assert await kv.request("kv.get", {"key": "nothing"}) == {"found": True, "value": None}


async def test_multi_key_forms(kv: Client) -> None:
    await kv.request("kv.mset", {"items": {"a": 1, "b": [2], "c": {"x": 3}}})
    reply = await kv.request("kv.mget", {"keys": ["a", "b", "nope", "c"]})
    assert reply == {"values": {"a": 1, "b": [2], "c": {"x": 3}}}
    assert await kv.request("kv.delete", {"keys": ["a", "b", "nope"]}) == {"deleted": 2}


async def test_incr(kv: Client) -> None:
    assert await kv.request("kv.incr", {"key": "n"}) == {"value": 1}
    assert await kv.request("kv.incr", {"key": "n", "by": 41}) == {"value": 42}
    assert await kv.request("kv.get", {"key": "n"}) == {"found": True, "value": 42}
    await kv.request("kv.set", {"key": "text", "value": "abc"})
    error = await reply_error(kv.request("kv.incr", {"key": "text"}))
    assert error.code == "not_an_integer"


async def test_concurrent_incr_loses_no_update(kv: Client) -> None:
    await asyncio.gather(*(kv.request("kv.incr", {"key": "hits"}) for _ in range(200)))
    assert (await kv.request("kv.get", {"key": "hits"}))["value"] == 200


async def test_keys_by_prefix_including_glob_characters(kv: Client) -> None:
    for key in ("user:1", "user:2", "users", "user*x", "other"):
        await kv.request("kv.set", {"key": key, "value": key})
    assert await kv.request("kv.keys", {"prefix": "user:"}) == {"keys": ["user:1", "user:2"]}
    assert await kv.request("kv.keys", {"prefix": "user*"}) == {"keys": ["user*x"]}
    all_keys = (await kv.request("kv.keys"))["keys"]
    assert all_keys == sorted(["user:1", "user:2", "users", "user*x", "other"])


async def test_ttl_expires(kv: Client) -> None:
    await kv.request("kv.set", {"key": "brief", "value": 1, "ttl": 0.2})
    await kv.request("kv.set", {"key": "lasting", "value": 2})
    for _ in range(100):  # bounded wait for the real expiry
        if not (await kv.request("kv.get", {"key": "brief"}))["found"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the key did not expire")
    assert await kv.request("kv.keys") == {"keys": ["lasting"]}


@pytest.mark.parametrize(
    ("message_type", "data", "path", "fragment"),
    [
        ("kv.get", None, "$.key", "missing required field `key`"),
        ("kv.get", {"key": ""}, "$.key", "length >= 1"),
        ("kv.get", {"key": 5}, "$.key", "Expected `str`, got `int`"),
        ("kv.get", {"key": "x" * 600}, "$.key", "length <= 512"),
        ("kv.get", "k", "$", "Expected `object`, got `str`"),
        ("kv.get", {"key": "k", "extra": 1}, "$.extra", "unknown field `extra`"),
        ("kv.set", {"key": "k"}, "$.value", "missing required field `value`"),
        ("kv.set", {"key": "k", "value": 1, "ttl": 0}, "$.ttl", "> 0.0"),
        ("kv.set", {"key": "k", "value": 1, "ttl": True}, "$.ttl", "got `bool`"),
        ("kv.mget", {"keys": []}, "$.keys", "length >= 1"),
        ("kv.mget", {"keys": ["a", 3]}, "$.keys[1]", "Expected `str`, got `int`"),
        ("kv.mset", {"items": []}, "$.items", "Expected `object`, got `array`"),
        ("kv.incr", {"key": "n", "by": 1.5}, "$.by", "Expected `int`, got `float`"),
    ],
)
async def test_invalid_data(
    kv: Client, message_type: str, data: Any, path: str, fragment: str
) -> None:
    """Data that does not fit the type's schema: invalid_data, naming the field."""
    error = await reply_error(kv.request(message_type, data))
    assert error.code == "invalid_data"
    assert error.details == {"path": path}
    assert error.message.startswith(f"{message_type}: invalid data at {path}: ")
    assert fragment in error.message


@pytest.mark.parametrize("data", [{}, {"key": "a", "keys": ["b"]}])
async def test_delete_needs_key_or_keys(kv: Client, data: Any) -> None:
    """The one rule the schema does not say: exactly one of key and keys."""
    error = await reply_error(kv.request("kv.delete", data))
    assert error.code == "bad_request"
    assert "either 'key' or 'keys'" in error.message


# -- Redis only: durability, sharing, faults ----------------------------------------------


async def test_redis_state_is_shared_between_agents(redis_url: str) -> None:
    async with (
        Server.create(port=0, redis=redis_url) as first,
        Server.create(port=0, redis=redis_url) as second,
        Client(first.url, first.token_file.get()) as one,
        Client(second.url, second.token_file.get()) as other,
    ):
        await one.request("kv.set", {"key": "shared", "value": "from the first"})
        assert (await other.request("kv.get", {"key": "shared"}))["value"] == "from the first"


async def test_redis_down_gives_unavailable_then_recovers_with_every_acknowledged_write(
    redis_url: str, redis_server: RedisServer
) -> None:
    acknowledged: dict[str, int] = {}
    async with (
        Server.create(port=0, redis=redis_url) as server,
        Client(server.url, server.token_file.get()) as client,
    ):
        for n in range(50):
            await client.request("kv.set", {"key": f"before:{n}", "value": n})
            acknowledged[f"before:{n}"] = n
        redis_server.stop()
        try:
            for message_type, data in [
                ("kv.get", {"key": "before:1"}),
                ("kv.set", {"key": "during", "value": 1}),
                ("kv.keys", {}),
            ]:
                error = await asyncio.wait_for(reply_error(client.request(message_type, data)), 30)
                assert error.code == "unavailable"
                assert "Redis" in error.message
            # The agent itself keeps serving everything that does not need Redis.
            assert await client.request("ping") == {"pong": True}
        finally:
            redis_server.start()
        # Same agent, same client connection: the store reconnects by itself.
        for n in range(50):
            await client.request("kv.set", {"key": f"after:{n}", "value": n})
            acknowledged[f"after:{n}"] = n
        values = await client.request("kv.mget", {"keys": list(acknowledged)})
        assert values == {"values": acknowledged}
        assert (await client.request("kv.get", {"key": "during"}))["found"] is False


async def test_agent_starts_while_redis_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    from localagent.testing import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        Server.create(port=0, redis=url) as server,
        Client(server.url, server.token_file.get()) as client,
    ):
        assert await client.request("ping") == {"pong": True}
        error = await reply_error(client.request("kv.get", {"key": "k"}))
        assert error.code == "unavailable"
    assert "unavailable" in caplog.text


def test_redis_url_password_is_not_shown() -> None:
    store = RedisStore("redis://user:hunter2@127.0.0.1:1/0")
    with pytest.raises(localagent.MessageError) as caught:
        asyncio.run(store.ping())
    assert "hunter2" not in caught.value.message
    assert "***" in caught.value.message


# -- the memory store directly ------------------------------------------------------------


async def test_memory_store_delete_counts_only_live_keys() -> None:
    store = MemoryStore()
    await store.set("a", 1)
    await store.set("gone", 2, ttl=0.001)
    await asyncio.sleep(0.01)  # let the real TTL pass; nothing here stands in for I/O
    assert await store.delete(["a", "gone", "a", "never"]) == 1
    assert await store.keys() == []


async def test_concurrent_mixed_requests_each_get_their_own_answer(kv: Client) -> None:
    """On Redis, concurrent commands share pipelines: each still gets its own result or error."""
    await kv.request("kv.set", {"key": "text", "value": "abc"})
    calls = []
    for n in range(40):
        calls.append(kv.request("kv.set", {"key": f"m{n}", "value": n}))
        calls.append(kv.request("kv.incr", {"key": "counter"}))
    calls.append(kv.request("kv.incr", {"key": "text"}))
    results = await asyncio.gather(*calls, return_exceptions=True)
    failure = results[-1]
    assert isinstance(failure, ReplyError) and failure.code == "not_an_integer"
    assert all(not isinstance(r, BaseException) for r in results[:-1])
    counters = sorted(r["value"] for r in results[1:-1:2])
    assert counters == list(range(1, 41))
    values = await kv.request("kv.mget", {"keys": [f"m{n}" for n in range(40)]})
    assert values == {"values": {f"m{n}": n for n in range(40)}}
