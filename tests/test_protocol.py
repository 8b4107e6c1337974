"""Unit tests for the wire protocol (localagent._protocol): pure code, no sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from localagent._protocol import (
    BATCH,
    INVALID_JSON,
    INVALID_MESSAGE,
    MAX_TYPE_LENGTH,
    Invalid,
    Message,
    batch_frame,
    error_reply,
    parse_frame,
    result_reply,
    unbatch,
)


def frame(obj: Any) -> bytes:
    return orjson.dumps(obj)


def only(items: list[Message | Invalid]) -> Message | Invalid:
    assert len(items) == 1, items
    return items[0]


# --------------------------------------------------------------------------- valid messages


def test_valid_message_with_all_fields() -> None:
    item = only(parse_frame(frame({"id": "r1", "type": "fs.read", "data": {"path": "/x"}})))
    assert item == Message("r1", "fs.read", {"path": "/x"})


def test_data_and_id_default_to_none() -> None:
    item = only(parse_frame(frame({"type": "ping"})))
    assert isinstance(item, Message)
    assert item.id is None
    assert item.data is None


@pytest.mark.parametrize("data", [0, False, "", [], {}, [1, "two", None], 1.5])
def test_falsy_and_varied_data_is_kept(data: Any) -> None:
    item = only(parse_frame(frame({"id": 1, "type": "echo", "data": data})))
    assert isinstance(item, Message)
    assert item.data == data
    assert type(item.data) is type(data)


@pytest.mark.parametrize(
    "raw",
    [
        frame({"id": 1, "type": "ping"}),
        bytearray(frame({"id": 1, "type": "ping"})),
        memoryview(frame({"id": 1, "type": "ping"})),
        '{"id": 1, "type": "ping"}',
    ],
    ids=["bytes", "bytearray", "memoryview", "str"],
)
def test_frame_payload_types(raw: Any) -> None:
    assert parse_frame(raw) == [Message(1, "ping")]


@pytest.mark.parametrize("msg_id", ["abc", "", 0, 7, -3, 2**63 - 1, 2**64 - 1])
def test_string_and_integer_ids_accepted(msg_id: str | int) -> None:
    item = only(parse_frame(frame({"id": msg_id, "type": "t"})))
    assert isinstance(item, Message)
    assert item.id == msg_id
    assert type(item.id) is type(msg_id)


def test_null_id_is_a_notification() -> None:
    assert parse_frame(b'{"id": null, "type": "t"}') == [Message(None, "t")]


@pytest.mark.parametrize(
    "msg_id",
    [True, False, 1.0, 1.5, {"a": 1}, [1], [], {}],
    ids=["true", "false", "float-int", "float", "object", "list", "empty-list", "empty-obj"],
)
def test_bad_ids_rejected(msg_id: Any) -> None:
    item = only(parse_frame(frame({"id": msg_id, "type": "t"})))
    assert isinstance(item, Invalid)
    assert item.code == INVALID_MESSAGE
    assert item.id is None  # an unusable id is not echoed back
    assert "id" in item.reason


def test_integer_too_large_for_json_int_is_rejected_as_id() -> None:
    # orjson turns integers beyond 64 bits into floats: such an id is not an integer.
    item = only(parse_frame(b'{"id": 123456789012345678901234567890, "type": "t"}'))
    assert isinstance(item, Invalid)
    assert item.code == INVALID_MESSAGE


# --------------------------------------------------------------------------- type validation


@pytest.mark.parametrize(
    "obj",
    [
        {"id": 5},
        {"id": 5, "type": ""},
        {"id": 5, "type": None},
        {"id": 5, "type": 3},
        {"id": 5, "type": ["ping"]},
        {"id": 5, "type": True},
    ],
    ids=["missing", "empty", "null", "int", "list", "bool"],
)
def test_missing_or_bad_type_rejected_keeping_the_id(obj: dict[str, Any]) -> None:
    item = only(parse_frame(frame(obj)))
    assert item == Invalid(5, INVALID_MESSAGE, "'type' must be a non-empty string")


def test_type_at_max_length_accepted() -> None:
    name = "x" * MAX_TYPE_LENGTH
    assert parse_frame(frame({"id": 1, "type": name})) == [Message(1, name)]


def test_type_too_long_rejected() -> None:
    item = only(parse_frame(frame({"id": "a", "type": "x" * (MAX_TYPE_LENGTH + 1)})))
    assert isinstance(item, Invalid)
    assert item.id == "a"
    assert item.code == INVALID_MESSAGE
    assert str(MAX_TYPE_LENGTH) in item.reason


def test_unknown_extra_keys_are_ignored() -> None:
    raw = frame({"id": 2, "type": "t", "data": 1, "extra": {"x": 1}, "jsonrpc": "2.0"})
    assert parse_frame(raw) == [Message(2, "t", 1)]


# --------------------------------------------------------------------------- bad frames


@pytest.mark.parametrize("value", [[], [{"type": "t"}], "ping", 1, 1.5, True, None], ids=repr)
def test_non_object_frames_rejected(value: Any) -> None:
    item = only(parse_frame(frame(value)))
    assert item == Invalid(None, INVALID_MESSAGE, "a message must be a JSON object")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "\xff"}',
        b'{"type": "ping", "data": "\xc3\x28"}',
        b'{"type": "\xed\xa0\x80"}',
        b'{"type": "ping", "data": "\xe2\x82"}',
    ],
    ids=["invalid-byte", "bad-continuation", "encoded-surrogate", "truncated-sequence"],
)
def test_invalid_utf8_is_invalid_json(raw: bytes) -> None:
    item = only(parse_frame(raw))
    assert isinstance(item, Invalid)
    assert item.code == INVALID_JSON
    assert item.id is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'type': 'x'}", b'{"type": "x",}', b"NaN", b"[" * 5000, b'{"a":1} {"b":2}'],
    ids=["empty", "truncated", "single-quotes", "trailing-comma", "nan", "deep", "two-docs"],
)
def test_invalid_json(raw: bytes) -> None:
    assert parse_frame(raw) == [Invalid(None, INVALID_JSON, "the frame is not valid UTF-8 JSON")]


def test_lone_surrogate_in_text_frame_is_invalid_json() -> None:
    item = only(parse_frame('{"type": "\ud800"}'))
    assert isinstance(item, Invalid)
    assert item.code == INVALID_JSON


# --------------------------------------------------------------------------- batches


def test_batch_members_are_validated_individually_in_order() -> None:
    raw = frame(
        {
            "type": BATCH,
            "messages": [
                {"id": 1, "type": "a", "data": [1]},
                {"id": 2},
                "not an object",
                {"id": True, "type": "b"},
                {"type": "c"},
            ],
        }
    )
    items = parse_frame(raw)
    assert items == [
        Message(1, "a", [1]),
        Invalid(2, INVALID_MESSAGE, "'type' must be a non-empty string"),
        Invalid(None, INVALID_MESSAGE, "a message must be a JSON object"),
        Invalid(None, INVALID_MESSAGE, "'id' must be a string, an integer or absent"),
        Message(None, "c"),
    ]


def test_nested_batch_is_rejected() -> None:
    inner = {"id": 9, "type": BATCH, "messages": [{"id": 1, "type": "a"}]}
    items = parse_frame(frame({"type": BATCH, "messages": [inner, {"id": 2, "type": "b"}]}))
    assert items == [
        Invalid(9, INVALID_MESSAGE, "batch frames cannot be nested"),
        Message(2, "b"),
    ]


@pytest.mark.parametrize("messages", [{}, "x", 1, None, {"id": 1, "type": "a"}], ids=repr)
def test_batch_with_non_list_messages_is_rejected(messages: Any) -> None:
    item = only(parse_frame(frame({"id": "b1", "type": BATCH, "messages": messages})))
    assert item == Invalid("b1", INVALID_MESSAGE, "'messages' must be a list")


def test_batch_without_messages_is_rejected() -> None:
    item = only(parse_frame(frame({"type": BATCH})))
    assert isinstance(item, Invalid)
    assert item.code == INVALID_MESSAGE
    assert "messages" in item.reason


def test_empty_batch_yields_nothing() -> None:
    assert parse_frame(frame({"type": BATCH, "messages": []})) == []


def test_batch_type_is_case_sensitive() -> None:
    # "Batch" is an ordinary message type, not a batch frame.
    assert parse_frame(frame({"id": 1, "type": "Batch", "messages": []})) == [Message(1, "Batch")]


# --------------------------------------------------------------------------- replies


def test_result_reply() -> None:
    assert result_reply(3, {"pong": True}) == {"id": 3, "result": {"pong": True}}
    assert result_reply("x", None) == {"id": "x", "result": None}


def test_error_reply_without_details() -> None:
    reply = error_reply(1, "bad_request", "nope")
    assert reply == {"id": 1, "error": {"code": "bad_request", "message": "nope"}}
    assert "details" not in reply["error"]


@pytest.mark.parametrize("details", [{"path": "/x"}, 0, "", [], False])
def test_error_reply_with_details_including_falsy_ones(details: Any) -> None:
    reply = error_reply(None, "c", "m", details)
    assert reply == {"id": None, "error": {"code": "c", "message": "m", "details": details}}


def test_batch_frame_and_unbatch_round_trip() -> None:
    replies = (result_reply(i, i * 2) for i in range(3))  # any iterable, consumed once
    wrapped = batch_frame(replies)
    assert wrapped == {
        "type": "batch",
        "messages": [{"id": 0, "result": 0}, {"id": 1, "result": 2}, {"id": 2, "result": 4}],
    }
    assert unbatch(wrapped) == wrapped["messages"]
    assert unbatch(orjson.loads(orjson.dumps(wrapped))) == wrapped["messages"]


def test_batch_frame_of_nothing() -> None:
    assert batch_frame([]) == {"type": "batch", "messages": []}
    assert unbatch(batch_frame([])) == []


@pytest.mark.parametrize(
    "obj",
    [
        {"id": 1, "result": 2},
        {"type": "batch", "messages": "not a list"},
        {"type": "batch"},
        [1, 2],
        "text",
        None,
    ],
    ids=repr,
)
def test_unbatch_returns_anything_else_as_one_message(obj: Any) -> None:
    assert unbatch(obj) == [obj]
    assert unbatch(obj)[0] is obj


def test_batch_frame_parses_back_into_messages() -> None:
    outbound = [{"id": 1, "type": "a", "data": 1}, {"id": "2", "type": "b"}]
    assert parse_frame(frame(batch_frame(outbound))) == [Message(1, "a", 1), Message("2", "b")]


# --------------------------------------------------------------------------- properties

_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_TEXT, children, max_size=5),
    max_leaves=25,
)

#: Objects that look a lot like messages, so the property tests reach deep branches.
MESSAGE_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "type": st.sampled_from(["ping", "batch", "", "x" * (MAX_TYPE_LENGTH + 1)]) | JSON,
        "data": JSON,
        "messages": st.lists(JSON | st.fixed_dictionaries({"type": _TEXT}), max_size=4) | JSON,
    },
)


def _assert_well_formed(items: object) -> None:
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item, Message | Invalid)
        if isinstance(item, Invalid):
            assert item.code in {INVALID_JSON, INVALID_MESSAGE}
            assert item.id is None or type(item.id) in (str, int)
        else:
            assert isinstance(item.type, str)
            assert 0 < len(item.type) <= MAX_TYPE_LENGTH
            assert item.type != BATCH
            assert item.id is None or type(item.id) in (str, int)


@given(st.binary(max_size=200))
def test_parse_frame_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    _assert_well_formed(parse_frame(raw))


@given(st.text(max_size=200))
def test_parse_frame_never_raises_on_arbitrary_text(raw: str) -> None:
    _assert_well_formed(parse_frame(raw))


@given(JSON | MESSAGE_LIKE)
def test_parse_frame_never_raises_on_arbitrary_json(value: Any) -> None:
    items = parse_frame(orjson.dumps(value))
    _assert_well_formed(items)
    is_batch = (
        isinstance(value, dict)
        and value.get("type") == BATCH
        and isinstance(value.get("messages"), list)
    )
    if is_batch:
        assert len(items) == len(value["messages"])
    else:
        assert len(items) == 1


@given(
    msg_id=st.none() | _TEXT | st.integers(min_value=-(2**63), max_value=2**64 - 1),
    msg_type=st.text(
        alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=MAX_TYPE_LENGTH
    ).filter(lambda t: t != BATCH),
    data=JSON,
)
def test_encoded_valid_message_round_trips(msg_id: Any, msg_type: str, data: Any) -> None:
    items = parse_frame(orjson.dumps({"id": msg_id, "type": msg_type, "data": data}))
    assert items == [Message(msg_id, msg_type, data)]
    (item,) = items
    assert isinstance(item, Message)
    assert type(item.id) is type(msg_id)


@given(st.lists(st.fixed_dictionaries({"id": st.integers(0, 1000), "type": _TEXT}), max_size=6))
def test_batch_yields_one_item_per_member(members: list[dict[str, Any]]) -> None:
    items = parse_frame(orjson.dumps(batch_frame(members)))
    assert len(items) == len(members)
    for member, item in zip(members, items, strict=True):
        if member["type"] and member["type"] != BATCH:
            assert item == Message(member["id"], member["type"])
        else:
            assert isinstance(item, Invalid)
            assert item.id == member["id"]
