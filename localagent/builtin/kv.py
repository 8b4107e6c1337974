"""Built-in plugin ``kv``: key-value state in the agent's store (memory or Redis).

Messages: ``kv.get``, ``kv.set``, ``kv.delete``, ``kv.incr``, ``kv.keys``, and the
multi-key ``kv.mget`` / ``kv.mset``. Values are any JSON value. The store
decides durability: the embedded memory store lives as long as the process;
Redis (``--redis URL``) is durable and shared between processes. A write is
acknowledged only after the store confirmed it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from localagent_hookspecs import Agent, KeyValueStore, Message, MessageError, handles, hookimpl

from ._args import BAD_REQUEST

__all__ = [
    "DeleteData",
    "GetData",
    "IncrData",
    "KeysData",
    "MgetData",
    "MsetData",
    "Plugin",
    "SetData",
]

MAX_KEY_LENGTH = 512
MAX_KEYS_PER_REQUEST = 1000

_ABSENT = object()

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LENGTH, description="A key.")]
Keys = Annotated[list[Key], msgspec.Meta(min_length=1, max_length=MAX_KEYS_PER_REQUEST)]
Ttl = Annotated[float, msgspec.Meta(gt=0, description="Seconds until the key expires.")]


class GetData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.get`` data."""

    key: Key


class MgetData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.mget`` data."""

    keys: Keys


class SetData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.set`` data."""

    key: Key
    value: Annotated[Any, msgspec.Meta(description="Any JSON value.")]
    ttl: Ttl | None = None


class MsetData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.mset`` data."""

    items: Annotated[dict[Key, Any], msgspec.Meta(min_length=1, max_length=MAX_KEYS_PER_REQUEST)]
    ttl: Ttl | None = None


class DeleteData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.delete`` data: either ``key`` or ``keys``."""

    key: Key | None = None
    keys: Keys | None = None


class IncrData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.incr`` data."""

    key: Key
    by: int = 1


class KeysData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``kv.keys`` data."""

    prefix: str = ""


class Plugin:
    """Answers the ``kv.*`` messages from ``agent.store``."""

    store: KeyValueStore

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        self.store = agent.store

    @hookimpl(specname="on_message")
    @handles("kv.get", schema=GetData)
    async def get(self, message: Message) -> dict[str, Any]:
        """Read one key: ``{"found": bool, "value": value or null}``."""
        data: GetData = message.data
        value = await self.store.get(data.key, _ABSENT)
        found = value is not _ABSENT
        return {"found": found, "value": value if found else None}

    @hookimpl(specname="on_message")
    @handles("kv.mget", schema=MgetData)
    async def mget(self, message: Message) -> dict[str, Any]:
        """Read several keys: ``{"values": {key: value}}``, missing keys left out."""
        keys = message.data.keys
        values = await self.store.get_many(keys, _ABSENT)
        return {"values": {k: v for k, v in zip(keys, values, strict=True) if v is not _ABSENT}}

    @hookimpl(specname="on_message")
    @handles("kv.set", schema=SetData)
    async def set(self, message: Message) -> dict[str, Any]:
        """Store a JSON value under a key: ``{"ok": true}`` once the store confirmed it."""
        data: SetData = message.data
        await self.store.set(data.key, data.value, ttl=data.ttl)
        return {"ok": True}

    @hookimpl(specname="on_message")
    @handles("kv.mset", schema=MsetData)
    async def mset(self, message: Message) -> dict[str, Any]:
        """Store several keys at once, all or nothing: ``{"ok": true}``."""
        data: MsetData = message.data
        await self.store.set_many(data.items, ttl=data.ttl)
        return {"ok": True}

    @hookimpl(specname="on_message")
    @handles("kv.delete", schema=DeleteData)
    async def delete(self, message: Message) -> dict[str, Any]:
        """Delete ``key`` or ``keys``: ``{"deleted": count}``."""
        data: DeleteData = message.data
        if (data.key is None) == (data.keys is None):
            raise MessageError(BAD_REQUEST, "kv.delete: give either 'key' or 'keys'")
        keys = [data.key] if data.key is not None else data.keys
        assert keys is not None
        return {"deleted": await self.store.delete(keys)}

    @hookimpl(specname="on_message")
    @handles("kv.incr", schema=IncrData)
    async def incr(self, message: Message) -> dict[str, Any]:
        """Add ``by`` (default 1) to an integer: ``{"value": new value}`` (missing counts as 0)."""
        data: IncrData = message.data
        return {"value": await self.store.incr(data.key, data.by)}

    @hookimpl(specname="on_message")
    @handles("kv.keys", schema=KeysData)
    async def keys(self, message: Message) -> dict[str, Any]:
        """List the keys that start with ``prefix``: ``{"keys": [...]}``, sorted."""
        return {"keys": await self.store.keys(message.data.prefix)}
