"""Typed message data (``@handles(schema=)``): the check before the handler, and the export.

A real agent and client for the replies; the pure parts (paths, JSON Schema
export) directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import attrs
import msgspec
import pytest
from click.testing import CliRunner
from localagent_hookspecs import handled_schema, handles, hookimpl

from localagent import Client, ReplyError, Server
from localagent._schemas import json_schema
from localagent.cli import main


class NoteData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``note.add`` data."""

    title: Annotated[str, msgspec.Meta(min_length=1)]
    tags: list[str] = []


class BrokenData(msgspec.Struct):
    x: NoSuchType  # type: ignore[name-defined]  # noqa: F821  (msgspec cannot resolve it)


@attrs.frozen
class PointData:
    x: int
    y: int = 0


class Inner(msgspec.Struct):
    n: int


class Outer(msgspec.Struct):
    inner: Inner


class Notes:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(specname="on_message")
    @handles("note.add", schema=NoteData)
    def add(self, message: Any) -> dict[str, Any]:
        """Add a note."""
        self.seen.append(message.data)
        return {"title": message.data.title, "tags": message.data.tags}

    @hookimpl(specname="on_message")
    @handles("point", schema=PointData)
    def point(self, connection: Any, message: Any) -> dict[str, Any]:
        self.seen.append(message.data)
        return {"sum": message.data.x + message.data.y}

    @hookimpl(specname="on_message")
    @handles("raw", schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    def raw(self, message: Any) -> Any:
        """Takes a JSON Schema: exported, not checked."""
        return message.data

    @hookimpl(specname="on_message")
    @handles("broken", schema=BrokenData)
    def broken(self, message: Any) -> Any:
        return "never"


@pytest.fixture
async def notes(localagent_config_dir: Any) -> Any:
    plugin = Notes()
    async with (
        Server.create(port=0, extra_plugins={"notes": plugin}, strict=True) as server,
        Client(server.url, server.token_file.get()) as client,
    ):
        yield client, plugin


def test_handles_records_the_schema_per_type() -> None:
    assert handled_schema(Notes.add, "note.add") is NoteData
    assert handled_schema(Notes.add, "other") is None


async def test_the_handler_receives_typed_data(notes: Any) -> None:
    client, plugin = notes
    assert await client.request("note.add", {"title": "a", "tags": ["x"]}) == {
        "title": "a",
        "tags": ["x"],
    }
    assert await client.request("point", {"x": 2, "y": 3}) == {"sum": 5}
    assert plugin.seen == [NoteData("a", ["x"]), PointData(2, 3)]


@pytest.mark.parametrize(
    ("message_type", "data", "path"),
    [
        ("note.add", None, "$.title"),
        ("note.add", {"title": ""}, "$.title"),
        ("note.add", {"title": "a", "tags": ["x", 1]}, "$.tags[1]"),
        ("note.add", {"title": "a", "color": "red"}, "$.color"),
        ("note.add", [1], "$"),
        ("point", {"x": "1"}, "$.x"),
    ],
)
async def test_invalid_data_names_the_field_and_skips_the_handler(
    notes: Any, message_type: str, data: Any, path: str
) -> None:
    client, plugin = notes
    with pytest.raises(ReplyError) as caught:
        await client.request(message_type, data)
    assert caught.value.code == "invalid_data"
    assert caught.value.details == {"path": path}
    assert caught.value.message.startswith(f"{message_type}: invalid data at {path}: ")
    assert plugin.seen == []
    assert await client.request("ping") == {"pong": True}  # the connection goes on


async def test_a_json_schema_dict_is_not_checked(notes: Any) -> None:
    client, _plugin = notes
    assert await client.request("raw", {"n": "not a number"}) == {"n": "not a number"}


async def test_an_unusable_schema_fails_its_handler_only(notes: Any) -> None:
    client, _plugin = notes
    with pytest.raises(ReplyError) as caught:
        await client.request("broken", 1)
    assert caught.value.code == "internal_error"
    assert await client.request("note.add", {"title": "still"}) == {"title": "still", "tags": []}


async def test_agent_types_lists_types_with_schemas_and_digest(notes: Any) -> None:
    client, _plugin = notes
    reply = await client.request("agent.types")
    types = {t["type"]: t for t in reply["types"]}
    assert reply["unchanged"] is False
    assert {"ping", "echo", "kv.set", "fs.read", "exec", "agent.types", "note.add"} <= set(types)
    note = types["note.add"]
    assert note["plugin"] == "notes"
    assert note["description"] == "Add a note."
    assert note["schema"]["type"] == "object"
    assert note["schema"]["required"] == ["title"]
    assert types["broken"]["schema"] is None  # unusable: described without one
    assert types["raw"]["schema"] == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert types["kv.set"]["schema"]["properties"]["ttl"]["anyOf"][0]["exclusiveMinimum"] == 0
    again = await client.request("agent.types", {"if_changed": reply["digest"]})
    assert again == {"digest": reply["digest"], "unchanged": True}
    other = await client.request("agent.types", {"if_changed": "stale"})
    assert other["unchanged"] is False and other["types"] == reply["types"]


def test_json_schema_inlines_the_top_definition() -> None:
    exported = json_schema(NoteData)
    assert exported is not None
    assert exported["type"] == "object"
    assert "$ref" not in exported and "$defs" not in exported

    nested = json_schema(Outer)
    assert nested is not None
    assert nested["properties"]["inner"] == {"$ref": "#/$defs/Inner"}
    assert "Inner" in nested["$defs"]
    assert json_schema(Any) == {}
    assert json_schema(None) is None


def test_plugins_schemas_prints_every_builtin_type(localagent_config_dir: Any) -> None:
    result = CliRunner().invoke(main, ["plugins", "schemas"])
    assert result.exit_code == 0, result.output
    types = {t["type"]: t for t in json.loads(result.output)}
    assert {"ping", "echo", "agent.types", "exec"} <= set(types)
    assert {f"kv.{n}" for n in ("get", "set", "mget", "mset", "delete", "incr", "keys")} <= set(
        types
    )
    assert {f"fs.{n}" for n in ("read", "write", "list", "stat", "delete")} <= set(types)
    assert all(t["schema"] is not None for t in types.values())  # every built-in declares one
    assert types["fs.read"]["schema"]["required"] == ["path"]


def test_plugins_info_json_carries_the_schemas(localagent_config_dir: Any) -> None:
    result = CliRunner().invoke(main, ["plugins", "info", "kv", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    messages = {m["type"]: m for m in info["messages"]}
    assert set(messages) == set(info["handles"])
    assert messages["kv.get"]["schema"]["properties"]["key"]["maxLength"] == 512


def test_plugins_info_json_of_a_disabled_plugin_still_lists_its_types(
    localagent_config_dir: Any,
) -> None:
    localagent_config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text(
        "[plugins.kv]\nenabled = false\n", encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["plugins", "info", "kv", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["enabled"] is False
    assert {"kv.get", "kv.set", "kv.delete"} <= {m["type"] for m in info["messages"]}
    schemas = json.loads(CliRunner().invoke(main, ["plugins", "schemas"]).output)
    assert not any(m["plugin"] == "kv" for m in schemas)  # the enabled plugins' list: not kv


async def test_agent_cancel_stops_a_running_request(localagent_config_dir: Any) -> None:
    import asyncio
    import sys

    localagent_config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text(
        f'[plugins.exec]\nallow = ["{sys.executable}"]\n', encoding="utf-8"
    )
    async with (
        Server.create(port=0) as server,
        Client(server.url, server.token_file.get()) as client,
    ):
        started: asyncio.Queue[Any] = asyncio.Queue()
        code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
        running = asyncio.ensure_future(
            client.request(
                "exec",
                {"argv": [sys.executable, "-c", code], "stream": True},
                on_event=started.put_nowait,
            )
        )
        event = await asyncio.wait_for(started.get(), 10)
        request_id, pid = event["id"], int(event["data"]["chunk"])
        assert await client.request("agent.cancel", {"id": request_id}) == {"cancelled": True}
        with pytest.raises(ReplyError) as caught:
            await asyncio.wait_for(running, 10)
        assert caught.value.code == "cancelled"
        assert await client.request("agent.cancel", {"id": request_id}) == {"cancelled": False}
        assert await client.request("ping") == {"pong": True}
        await _reaped(pid)


async def _reaped(pid: int) -> None:
    """Wait until the agent killed and reaped ``pid``."""
    import asyncio

    for _ in range(400):
        if _process_state(pid) is None:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the program (pid {pid}) still runs after its request was cancelled")


def _process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, Z...), ``None`` once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return None


async def test_a_client_request_cancelled_with_cancel_on_abort_stops_the_program(
    localagent_config_dir: Any,
) -> None:
    import asyncio
    import sys

    localagent_config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text(
        f'[plugins.exec]\nallow = ["{sys.executable}"]\n', encoding="utf-8"
    )
    async with (
        Server.create(port=0) as server,
        Client(server.url, server.token_file.get()) as client,
    ):
        started: asyncio.Queue[Any] = asyncio.Queue()
        code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
        running = asyncio.ensure_future(
            client.request(
                "exec",
                {"argv": [sys.executable, "-c", code], "stream": True},
                on_event=started.put_nowait,
                cancel_on_abort=True,
            )
        )
        pid = int((await asyncio.wait_for(started.get(), 10))["data"]["chunk"])
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await _reaped(pid)  # the agent kills the program once agent.cancel arrives
        stray = await asyncio.wait_for(client.events.get(), 10)  # its answer, now nobody's
        assert stray["error"]["code"] == "cancelled"
