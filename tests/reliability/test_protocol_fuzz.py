"""Property-based fuzzing of the pure protocol layer (:mod:`localagent._protocol`).

Whatever bytes or JSON values arrive as a frame, :func:`parse_frame` returns
well-formed :class:`Message` / :class:`Invalid` items and never raises, and the
error reply built from an ``Invalid`` always encodes. The same properties over
a real WebSocket are in ``test_server_fuzz.py``.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localagent import _codec
from localagent._protocol import (
    BATCH,
    INVALID_JSON,
    INVALID_MESSAGE,
    MAX_TYPE_LENGTH,
    Invalid,
    Message,
    error_reply,
    parse_frame,
    result_reply,
    unbatch,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: JSON values as orjson can encode them (64-bit integers, finite floats).
int64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_scalars = (
    st.none() | st.booleans() | int64 | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
#: Ids, types and payloads close to the real thing, valid and not.
ids = st.none() | int64 | st.text(max_size=20) | json_values
types = (
    st.sampled_from(["ping", "echo", "batch", "kv.get", "fs.read", "", "x" * 129])
    | st.text(max_size=MAX_TYPE_LENGTH + 5)
    | json_values
)
message_like = st.fixed_dictionaries(
    {},
    optional={"id": ids, "type": types, "data": json_values, "messages": json_values},
)
batch_like = st.fixed_dictionaries(
    {"type": st.just(BATCH), "messages": st.lists(message_like | json_values, max_size=8)},
    optional={"id": ids},
)


def assert_well_formed(items: list[Message | Invalid]) -> None:
    """Every item is a Message or Invalid whose fields have the documented types."""
    assert isinstance(items, list)
    for item in items:
        if isinstance(item, Message):
            assert item.id is None or type(item.id) is int or isinstance(item.id, str)
            assert isinstance(item.type, str) and 0 < len(item.type) <= MAX_TYPE_LENGTH
            assert item.type != BATCH
        else:
            assert isinstance(item, Invalid)
            assert item.code in (INVALID_JSON, INVALID_MESSAGE)
            assert isinstance(item.reason, str) and item.reason
            assert item.id is None or type(item.id) is int or isinstance(item.id, str)
            # The error reply for it must always be sendable.
            reply = orjson.loads(_codec.dumps(error_reply(item.id, item.code, item.reason)))
            assert reply["error"]["code"] == item.code


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(frame: bytes) -> None:
    assert_well_formed(parse_frame(frame))
    assert_well_formed(parse_frame(memoryview(frame)))
    assert_well_formed(parse_frame(bytearray(frame)))


@FUZZ
@given(st.text(max_size=2048))
def test_arbitrary_text_never_raises(frame: str) -> None:
    assert_well_formed(parse_frame(frame))


@FUZZ
@given(json_values)
def test_arbitrary_json_values_are_one_item(value: Any) -> None:
    items = parse_frame(orjson.dumps(value))
    assert_well_formed(items)
    if not (type(value) is dict and value.get("type") == BATCH):
        assert len(items) == 1
    if type(value) is not dict:
        assert items == [Invalid(None, INVALID_MESSAGE, "a message must be a JSON object")]


@FUZZ
@given(message_like)
def test_message_like_objects_validate_exactly(value: dict[str, Any]) -> None:
    items = parse_frame(orjson.dumps(value))
    assert_well_formed(items)
    if value.get("type") == BATCH and type(value.get("messages")) is list:
        assert len(items) == len(value["messages"])
        return
    (item,) = items
    valid_id = "id" not in value or value["id"] is None or type(value["id"]) in (int, str)
    valid_type = (
        isinstance(value.get("type"), str)
        and 0 < len(value["type"]) <= MAX_TYPE_LENGTH
        and value["type"] != BATCH
    )
    if valid_id and valid_type:
        assert item == Message(value.get("id"), value["type"], value.get("data"))
    else:
        assert isinstance(item, Invalid)
        if valid_id:  # an id that could be read is kept for the error reply
            assert item.id == value.get("id")


@FUZZ
@given(batch_like)
def test_batch_frames_answer_each_member_in_order(value: dict[str, Any]) -> None:
    items = parse_frame(orjson.dumps(value))
    assert_well_formed(items)
    assert len(items) == len(value["messages"])
    for member, item in zip(value["messages"], items, strict=True):
        # A batch member is validated on its own: same verdict as when sent alone,
        # except that a nested batch is refused rather than unpacked.
        if type(member) is dict and member.get("type") == BATCH:
            assert isinstance(item, Invalid)
            continue
        (alone,) = parse_frame(orjson.dumps(member))
        assert type(alone) is type(item)
        if isinstance(item, Message):
            assert item == alone
    assert unbatch(value) == value["messages"]


@FUZZ
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=200))
def test_truncated_and_padded_json_is_invalid_json(junk: bytes, cut: int) -> None:
    frame = orjson.dumps({"id": 1, "type": "echo", "data": junk.hex()})
    assert_well_formed(parse_frame(frame[: cut % len(frame)]))
    assert_well_formed(parse_frame(frame + junk))


def test_deep_nesting_and_huge_numbers_are_invalid_json_not_crashes() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"id":1,"type":"echo","data":' + b"[" * 5000 + b"]" * 5000 + b"}"
    for frame in (deep, deep_object, b'{"id": 1e999999, "type": "ping"}', b"1" * 5000):
        assert_well_formed(parse_frame(frame))
    # 2**64 does not fit an integer id: orjson reads it as a float, which is refused.
    (item,) = parse_frame(b'{"id": 18446744073709551616, "type": "ping"}')
    assert isinstance(item, Invalid) and item.id is None


@FUZZ
@given(ids, json_values)
def test_replies_to_any_valid_id_encode(msg_id: Any, result: Any) -> None:
    if msg_id is not None and type(msg_id) is not int and not isinstance(msg_id, str):
        return  # parse_frame never yields such an id
    encoded = orjson.loads(_codec.dumps(result_reply(msg_id, result)))
    assert encoded["id"] == msg_id
