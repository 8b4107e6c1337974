"""The pure half of the bridge: agent types to MCP tools, agent replies to tool results."""

from __future__ import annotations

from localagent_mcp._tools import (
    OPEN_OBJECT,
    build_catalog,
    error_result,
    input_schema,
    success_result,
    tool_name,
)


def test_tool_names_keep_what_mcp_allows() -> None:
    assert tool_name("kv.set") == "kv.set"
    assert tool_name("my-plugin.do_it") == "my-plugin.do_it"
    assert tool_name("notes/add now") == "notes_add_now"
    assert len(tool_name("x" * 200)) == 128


def test_input_schema_is_an_object_schema() -> None:
    schema = {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}
    assert input_schema(schema) == schema
    assert input_schema(None) == OPEN_OBJECT  # no schema declared
    assert input_schema({}) == OPEN_OBJECT  # any JSON value (echo)
    assert input_schema({"type": "string"}) == OPEN_OBJECT  # tool arguments are an object


def test_catalog_hides_the_plumbing_and_skips_colliding_names() -> None:
    types = [
        {"type": "agent.types", "plugin": "agent", "description": "", "schema": None},
        {"type": "agent.cancel", "plugin": "agent", "description": "", "schema": None},
        {"type": "kv.get", "plugin": "kv", "description": "Read one key.", "schema": None},
        {"type": "a b", "plugin": "x", "description": "", "schema": None},
        {"type": "a/b", "plugin": "y", "description": "", "schema": None},
    ]
    catalog = build_catalog("d1", types)
    assert [tool.name for tool in catalog.tools] == ["a_b", "kv.get"]
    kv_get = catalog.find("kv.get")
    assert kv_get is not None and kv_get.message_type == "kv.get"
    assert kv_get.description.startswith("Read one key.")
    assert "plugin 'kv'" in kv_get.description
    assert catalog.find("agent.types") is None
    assert len(catalog.skipped) == 1 and "'a/b'" in catalog.skipped[0]


def test_results() -> None:
    assert success_result({"ok": True}) == ('{"ok":true}', {"ok": True})
    assert success_result([1, "é"]) == ('[1,"é"]', {"result": [1, "é"]})
    text, structured = error_result("invalid_data", "kv.set: bad", {"path": "$.key"})
    assert text == 'invalid_data: kv.set: bad\ndetails: {"path":"$.key"}'
    assert structured == {
        "error": {"code": "invalid_data", "message": "kv.set: bad", "details": {"path": "$.key"}}
    }
    assert error_result("x", "y") == ("x: y", {"error": {"code": "x", "message": "y"}})
