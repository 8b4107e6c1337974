"""Built-in plugin ``kv``: key-value state in the agent's store (memory or Redis).

Messages: ``kv.get``, ``kv.set``, ``kv.delete``, ``kv.incr``, ``kv.keys``, and the
multi-key ``kv.mget`` / ``kv.mset``. Values are any JSON value. The store
decides durability: the embedded memory store lives as long as the process;
Redis (``--redis URL``) is durable and shared between processes. A write is
acknowledged only after the store confirmed it.
"""

from __future__ import annotations

from typing import Any

from localagent_hookspecs import Agent, KeyValueStore, Message, MessageError, handles, hookimpl

from ._args import BAD_REQUEST, arguments, field

__all__ = ["Plugin"]

MAX_KEY_LENGTH = 512
MAX_KEYS_PER_REQUEST = 1000

_ABSENT = object()


def _key(message: Message, value: Any, name: str = "key") -> str:
    if not isinstance(value, str) or not value:
        raise MessageError(BAD_REQUEST, f"{message.type}: {name} must be a non-empty string")
    if len(value) > MAX_KEY_LENGTH:
        raise MessageError(BAD_REQUEST, f"{message.type}: keys are at most {MAX_KEY_LENGTH} chars")
    return value


def _keys(message: Message, values: list[Any]) -> list[str]:
    if not values:
        raise MessageError(BAD_REQUEST, f"{message.type}: 'keys' must not be empty")
    if len(values) > MAX_KEYS_PER_REQUEST:
        raise MessageError(
            BAD_REQUEST, f"{message.type}: at most {MAX_KEYS_PER_REQUEST} keys per request"
        )
    return [_key(message, value, "every key") for value in values]


def _ttl(message: Message, data: dict[str, Any]) -> float | None:
    ttl: float | None = field(message, data, "ttl", float, None)
    if ttl is not None and ttl <= 0:
        raise MessageError(BAD_REQUEST, f"{message.type}: 'ttl' must be a positive number")
    return ttl


class Plugin:
    """Answers the ``kv.*`` messages from ``agent.store``."""

    store: KeyValueStore

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        self.store = agent.store

    @hookimpl(specname="on_message")
    @handles("kv.get")
    async def get(self, message: Message) -> dict[str, Any]:
        """``{"key"}`` → ``{"found": bool, "value": value or null}``."""
        data = arguments(message, "key")
        value = await self.store.get(_key(message, field(message, data, "key", str)), _ABSENT)
        found = value is not _ABSENT
        return {"found": found, "value": value if found else None}

    @hookimpl(specname="on_message")
    @handles("kv.mget")
    async def mget(self, message: Message) -> dict[str, Any]:
        """``{"keys": [...]}`` → ``{"values": {key: value}}``, missing keys left out."""
        data = arguments(message, "keys")
        keys = _keys(message, field(message, data, "keys", list))
        values = await self.store.get_many(keys, _ABSENT)
        return {"values": {k: v for k, v in zip(keys, values, strict=True) if v is not _ABSENT}}

    @hookimpl(specname="on_message")
    @handles("kv.set")
    async def set(self, message: Message) -> dict[str, Any]:
        """``{"key", "value", "ttl"?}`` → ``{"ok": true}`` once the store confirmed it."""
        data = arguments(message, "key", "value", "ttl")
        key = _key(message, field(message, data, "key", str))
        if "value" not in data:
            raise MessageError(BAD_REQUEST, "kv.set: field 'value' is required")
        await self.store.set(key, data["value"], ttl=_ttl(message, data))
        return {"ok": True}

    @hookimpl(specname="on_message")
    @handles("kv.mset")
    async def mset(self, message: Message) -> dict[str, Any]:
        """``{"items": {key: value}, "ttl"?}`` → ``{"ok": true}``; all or nothing."""
        data = arguments(message, "items", "ttl")
        items: dict[str, Any] = field(message, data, "items", dict)
        _keys(message, list(items))
        await self.store.set_many(items, ttl=_ttl(message, data))
        return {"ok": True}

    @hookimpl(specname="on_message")
    @handles("kv.delete")
    async def delete(self, message: Message) -> dict[str, Any]:
        """``{"key"}`` or ``{"keys": [...]}`` → ``{"deleted": count}``."""
        data = arguments(message, "key", "keys")
        if ("key" in data) == ("keys" in data):
            raise MessageError(BAD_REQUEST, "kv.delete: give either 'key' or 'keys'")
        if "key" in data:
            keys = [_key(message, field(message, data, "key", str))]
        else:
            keys = _keys(message, field(message, data, "keys", list))
        return {"deleted": await self.store.delete(keys)}

    @hookimpl(specname="on_message")
    @handles("kv.incr")
    async def incr(self, message: Message) -> dict[str, Any]:
        """``{"key", "by"?: int}`` → ``{"value": new integer}`` (a missing key counts as 0)."""
        data = arguments(message, "key", "by")
        key = _key(message, field(message, data, "key", str))
        return {"value": await self.store.incr(key, field(message, data, "by", int, 1))}

    @hookimpl(specname="on_message")
    @handles("kv.keys")
    async def keys(self, message: Message) -> dict[str, Any]:
        """``{"prefix"?}`` → ``{"keys": [...]}``, sorted."""
        data = arguments(message, "prefix")
        return {"keys": await self.store.keys(field(message, data, "prefix", str, ""))}
