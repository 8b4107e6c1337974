"""The pure parts of the cluster: names, addresses, keys, entry formats, the ``to`` field."""

from __future__ import annotations

from pathlib import Path

import pytest

from localagent import _codec
from localagent._cluster import (
    Address,
    Keys,
    check_agent_name,
    check_cluster_name,
    parse_address,
    safe_url,
)
from localagent._cluster._entries import (
    EntryError,
    Registration,
    Reply,
    Request,
    decode_event,
    decode_reply,
    decode_request,
    encode_broadcast,
    encode_presence,
    is_final_reply,
)
from localagent._config import load_settings
from localagent._protocol import INVALID_MESSAGE, Invalid, Message, parse_frame
from localagent.exceptions import ConfigError


def test_addresses() -> None:
    assert parse_address("*") == Address(None)
    assert parse_address("*").is_broadcast
    assert parse_address("127.0.0.1:8765") == Address("127.0.0.1:8765")
    assert parse_address("builder/c3") == Address("builder", "c3")
    assert parse_address("[::1]:8765/c1") == Address("[::1]:8765", "c1")
    for address in ("*", "a", "a/c1"):
        assert str(parse_address(address)) == address
    for bad in ("/c1", "a/", "a b", "{a}", "**", "a*"):
        with pytest.raises(ValueError, match="not an address"):
            parse_address(bad)


def test_names() -> None:
    assert check_cluster_name("prod-1.eu_west") == "prod-1.eu_west"
    for bad in ("", "-x", "a:b", "a{b}", "a/b", "x" * 129):
        with pytest.raises(ValueError, match="cluster name"):
            check_cluster_name(bad)
    assert check_agent_name("127.0.0.1:8765") == "127.0.0.1:8765"
    for bad in ("", "a/b", "a}", "*", "a b", "x" * 129):
        with pytest.raises(ValueError, match="agent name"):
            check_agent_name(bad)


def test_keys_share_a_hash_tag_per_agent() -> None:
    keys = Keys("prod")
    assert keys.agents == "la:{prod}:agents"
    assert keys.broadcast == "la:{prod}:broadcast"
    per_agent = [
        keys.inbox("h:1"),
        keys.replies("h:1"),
        keys.peers("h:1"),
        keys.alive("h:1"),
        keys.done("h:1", "u1"),
    ]
    assert all(key.startswith("la:{prod:h:1}:") for key in per_agent)
    assert len(set(per_agent)) == len(per_agent)


def test_request_and_reply_entries_round_trip() -> None:
    request = Request("u1", "a:1/c2", "b:2", 7, "kv.get", {"key": "k"})
    assert decode_request(request.fields()) == request
    assert request.sender_agent == "a:1"
    reply = Reply("u1", True, {"id": 7, "result": {"found": False}})
    assert decode_reply(reply.fields()) == reply
    with pytest.raises(EntryError):
        decode_request({b"uid": b"u1"})
    with pytest.raises(EntryError):
        decode_request({**request.fields(), b"msg": b'{"id": 1.5, "type": "x"}'})
    with pytest.raises(EntryError):
        decode_reply({b"uid": b"u1", b"end": b"1", b"msg": b"not json"})


def test_final_replies_are_told_from_streamed_messages() -> None:
    assert is_final_reply({"id": 1, "result": None}, 1)
    assert is_final_reply({"id": None, "error": {"code": "x", "message": ""}}, None)
    assert not is_final_reply({"id": 1, "stream": "stdout"}, 1)
    assert not is_final_reply({"id": 2, "result": 1}, 1)
    assert not is_final_reply([1], 1)


def test_events_and_registrations() -> None:
    event = decode_event(encode_broadcast("a/c1", "news", [1]))
    assert event == {"kind": "broadcast", "from": "a/c1", "type": "news", "data": [1]}
    assert decode_event(encode_presence("join", "a")) == {"kind": "join", "agent": "a"}
    no_sender = {"kind": "broadcast", "type": "exec.output", "data": None}
    for bad in (b"[]", b"{}", b"nope", _codec.dumps(no_sender)):
        with pytest.raises(EntryError):
            decode_event(bad)
    for sender in (None, "", 5):
        with pytest.raises(EntryError, match="without a sender"):
            decode_event(_codec.dumps({**no_sender, "from": sender}))
    registration = Registration(
        name="a", url="ws://a", pid=1, hostname="h", started=1.0, heartbeat=2.0
    )
    assert Registration.decode(registration.encode()) == registration
    with pytest.raises(EntryError):
        Registration.decode(_codec.dumps({"name": "a"}))


def test_the_to_field_is_parsed_and_checked() -> None:
    assert parse_frame(b'{"id": 1, "type": "ping", "to": "b:1"}') == [
        Message(1, "ping", None, "b:1")
    ]
    assert parse_frame(b'{"id": 1, "type": "ping"}') == [Message(1, "ping", None, None)]
    assert parse_frame(b'{"id": 1, "type": "ping", "to": null}') == [Message(1, "ping")]
    batch = b'{"type": "batch", "messages": [{"id": 1, "type": "a", "to": "*"}, {"type": "b"}]}'
    assert parse_frame(batch) == [Message(1, "a", None, "*"), Message(None, "b")]
    reason = "'to' must be a non-empty string or absent"
    for bad in (b'""', b"5", b"[]", b"{}"):
        frame = b'{"id": 3, "type": "ping", "to": ' + bad + b"}"
        assert parse_frame(frame) == [Invalid(3, INVALID_MESSAGE, reason)]


def test_cluster_settings(tmp_path: Path) -> None:
    redis = {"LOCALAGENT_REDIS": "redis://127.0.0.1:1/0"}
    settings = load_settings(directory=tmp_path, environ={**redis, "LOCALAGENT_CLUSTER": "c"})
    assert settings.agent.cluster == "c"
    assert settings.agent.cluster_agent is None
    assert settings.agent.cluster_timeout == 30.0
    (tmp_path / "config.toml").write_text(
        '[agent]\nredis = "redis://127.0.0.1:1/0"\ncluster = "c"\n'
        'cluster_agent = "builder"\ncluster_timeout = 2.5\n'
    )
    agent = load_settings(directory=tmp_path, environ={}).agent
    assert (agent.cluster, agent.cluster_agent, agent.cluster_timeout) == ("c", "builder", 2.5)
    with pytest.raises(ConfigError, match="needs Redis"):
        load_settings(directory=tmp_path / "none", environ={"LOCALAGENT_CLUSTER": "c"})
    with pytest.raises(ConfigError, match=r"\$LOCALAGENT_CLUSTER_TIMEOUT = '0'"):
        load_settings(directory=tmp_path, environ={"LOCALAGENT_CLUSTER_TIMEOUT": "0"})


def test_urls_are_shown_without_their_password() -> None:
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert safe_url("redis://:s3cret@host:6379/0") == "redis://***@host:6379/0"
    assert safe_url("rediss://user:s3cret@host/1") == "rediss://user:***@host/1"
