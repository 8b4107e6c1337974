"""The pure parts of the cluster: names, addresses, keys, entry formats, the ``to`` field."""

from __future__ import annotations

import hmac
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
    ExpiredEntry,
    ForgedEntry,
    Registration,
    Reply,
    Request,
    decode_event,
    decode_replies,
    decode_requests,
    encode_broadcast,
    encode_presence,
    encode_replies,
    encode_requests,
    is_final_reply,
)
from localagent._cluster._replay import WINDOW, ReplayGuard
from localagent._cluster._signing import (
    MAX_AGE_SECONDS,
    MAX_SKEW_SECONDS,
    Signer,
    create_secret_file,
    read_secret_file,
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


SIGNER = Signer("prod", key=b"k" * 32)
NOW = 1_800_000_000.0


def test_request_and_reply_entries_round_trip() -> None:
    request = Request("u1", "a:1/c2", "b:2", 7, "kv.get", {"key": "k"}, NOW)
    assert decode_requests(request.fields(SIGNER, "b:2"), SIGNER, "b:2", NOW + 1) == [request]
    assert request.sender_agent == "a:1"
    reply = Reply("u1", True, {"id": 7, "result": {"found": False}}, "b:2", 3, NOW)
    assert decode_replies(reply.fields(SIGNER, "a:1"), SIGNER, "a:1", NOW) == [reply]
    with pytest.raises(EntryError):
        decode_requests({b"uid": b"u1"}, SIGNER, "b:2", NOW)
    bad_message = Request("u1", "a:1/c2", "b:2", 1.5, "x", None, NOW)  # type: ignore[arg-type]
    with pytest.raises(EntryError):
        decode_requests(bad_message.fields(SIGNER, "b:2"), SIGNER, "b:2", NOW)


def test_one_entry_carries_several_requests_or_replies_under_one_mac() -> None:
    requests = [
        Request("t-1", "a:1/c2", "b:2", 1, "echo", "x", NOW),
        Request("t-2", "a:1/c3", "b:2/c9", None, "notify", None, NOW),
        Request("t-3", "a:1/c2", "b:2", "s", "kv.get", {"key": "k"}, NOW),
    ]
    fields = encode_requests(requests, SIGNER, "a:1", "b:2", NOW)
    assert set(fields) == {b"from", b"ts", b"msg", b"mac"}
    assert decode_requests(fields, SIGNER, "b:2", NOW) == requests
    replies = [
        Reply("t-1", False, {"type": "exec.output"}, "b:2", 0, NOW),
        Reply("t-1", True, {"id": 1, "result": 1}, "b:2", 1, NOW),
        Reply("t-3", True, {"id": "s", "error": {"code": "x"}}, "b:2", 0, NOW),
    ]
    reply_fields = encode_replies(replies, SIGNER, "b:2", "a:1", NOW)
    assert decode_replies(reply_fields, SIGNER, "a:1", NOW) == replies
    # Signed, but a request in it claims a client of another agent: refused as a whole.
    other = [*requests[:2], Request("t-4", "c:3/c1", "b:2", 4, "echo", None, NOW)]
    with pytest.raises(EntryError, match="bad request"):
        decode_requests(encode_requests(other, SIGNER, "a:1", "b:2", NOW), SIGNER, "b:2", NOW)
    with pytest.raises(EntryError):  # an empty batch
        decode_requests(encode_requests([], SIGNER, "a:1", "b:2", NOW), SIGNER, "b:2", NOW)
    bad_seq = [Reply("t-1", True, None, "b:2", -1, NOW)]
    with pytest.raises(EntryError, match="bad reply"):
        decode_replies(encode_replies(bad_seq, SIGNER, "b:2", "a:1", NOW), SIGNER, "a:1", NOW)


def test_a_changed_field_another_key_or_another_target_fails_verification() -> None:
    requests = [
        Request("u1", "a:1/c2", "b:2", 7, "exec", {"argv": ["true"]}, NOW),
        Request("u2", "a:1/c2", "b:2", 8, "echo", None, NOW),
    ]
    fields = encode_requests(requests, SIGNER, "a:1", "b:2", NOW)
    one_fewer = encode_requests(requests[:1], SIGNER, "a:1", "b:2", NOW)
    forged = [
        {**fields, b"from": b"c:3"},  # another sender: its replies would go elsewhere
        {**fields, b"ts": str(int(NOW * 1000) + 1).encode()},
        {**fields, b"msg": one_fewer[b"msg"]},  # a request taken out of the batch
        {**fields, b"msg": fields[b"msg"].replace(b"u2", b"u3")},  # a fresh uid
        {**fields, b"msg": fields[b"msg"].replace(b'"true"', b'"rm"')},
        {**fields, b"mac": bytes(32)},
        {**fields, b"mac": one_fewer[b"mac"]},  # the MAC of another entry
        {key: value for key, value in fields.items() if key != b"mac"},
        # Bytes moved between two fields: the MAC's text must not stay the same.
        {**fields, b"from": b"a:1\n" + fields[b"ts"], b"ts": b""},
    ]
    for entry in forged:
        with pytest.raises(ForgedEntry):
            decode_requests(entry, SIGNER, "b:2", NOW)
    with pytest.raises(ForgedEntry):  # copied into another agent's inbox
        decode_requests(fields, SIGNER, "c:3", NOW)
    with pytest.raises(ForgedEntry):  # another secret
        decode_requests(fields, Signer("prod", key=b"x" * 32), "b:2", NOW)
    with pytest.raises(ForgedEntry):  # the same secret, another cluster
        decode_requests(fields, Signer("test", key=b"k" * 32), "b:2", NOW)
    with pytest.raises(ForgedEntry):  # a request entry in a replies stream
        decode_replies(fields, SIGNER, "b:2", NOW)
    reply = Reply("u1", False, {"id": 7, "type": "exec.output"}, "b:2", 0, NOW)
    reply_fields = reply.fields(SIGNER, "a:1")
    final = Reply("u1", True, {"id": 7, "result": 0}, "b:2", 0, NOW).fields(SIGNER, "a:1")
    for key, value in [(b"from", b"c:3"), (b"msg", final[b"msg"]), (b"ts", b"1")]:
        with pytest.raises(ForgedEntry):
            decode_replies({**reply_fields, key: value}, SIGNER, "a:1", NOW)
    with pytest.raises(ForgedEntry):
        decode_replies(reply_fields, SIGNER, "c:3", NOW)


def test_the_mac_is_hmac_sha256_of_the_parts_after_a_version_tag_and_the_cluster() -> None:
    parts = (b"request", b"b:2", b"u1", b'{"id": 1, "type": "x\\n"}')
    text = b"localagent-cluster/1\nprod\n" + b"\n".join(parts)
    assert SIGNER.sign(*parts) == hmac.digest(b"k" * 32, text, "sha256")
    assert SIGNER.verify(SIGNER.sign(*parts), *parts)


def test_entries_signed_too_long_ago_or_ahead_are_expired() -> None:
    def signed_at(at: float) -> dict[bytes, bytes]:
        return Request("u1", "a:1/c1", "b:2", 1, "ping", None, at).fields(SIGNER, "b:2")

    decode_requests(signed_at(NOW - MAX_AGE_SECONDS + 1), SIGNER, "b:2", NOW)
    decode_requests(signed_at(NOW + MAX_SKEW_SECONDS - 1), SIGNER, "b:2", NOW)
    for at in (NOW - MAX_AGE_SECONDS - 1, NOW + MAX_SKEW_SECONDS + 1):
        with pytest.raises(ExpiredEntry):
            decode_requests(signed_at(at), SIGNER, "b:2", NOW)


def test_the_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "cluster-secret"
    with pytest.raises(ConfigError, match="localagent cluster secret"):
        read_secret_file(path)
    create_secret_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    secret = read_secret_file(path)
    assert len(secret) == 64
    with pytest.raises(ConfigError, match="exists"):
        create_secret_file(path)
    assert read_secret_file(path) == secret  # never replaced
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_secret_file(path)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="too short"):
        read_secret_file(path)
    assert "k" * 32 not in repr(SIGNER)  # the key is never shown


def test_final_replies_are_told_from_streamed_messages() -> None:
    assert is_final_reply({"id": 1, "result": None}, 1)
    assert is_final_reply({"id": None, "error": {"code": "x", "message": ""}}, None)
    assert not is_final_reply({"id": 1, "stream": "stdout"}, 1)
    assert not is_final_reply({"id": 2, "result": 1}, 1)
    assert not is_final_reply([1], 1)


def test_events_and_registrations() -> None:
    event = decode_event(encode_broadcast(SIGNER, "a/c1", "news", [1], NOW), SIGNER, NOW)
    assert event == {
        "kind": "broadcast",
        "from": "a/c1",
        "type": "news",
        "data": [1],
        "ts": int(NOW * 1000),
    }
    join = decode_event(encode_presence(SIGNER, "join", "a", NOW), SIGNER, NOW)
    assert join["kind"] == "join" and join["agent"] == "a"
    payload = encode_broadcast(SIGNER, "a/c1", "news", [1], NOW)
    mac, _, body = payload.partition(b" ")
    for bad in (b"[]", b"{}", b"nope", mac + b" " + body.replace(b"a/c1", b"a/c2")):
        with pytest.raises(ForgedEntry):
            decode_event(bad, SIGNER, NOW)
    with pytest.raises(ExpiredEntry):
        decode_event(payload, SIGNER, NOW + 3600)
    # Relayed to clients, a broadcast must say who sent it (signed or not).
    for sender in (None, "", 5):
        unsent = encode_broadcast(SIGNER, sender, "exec.output", None, NOW)  # type: ignore[arg-type]
        with pytest.raises(EntryError, match="without a sender"):
            decode_event(unsent, SIGNER, NOW)
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


def test_the_replay_guard_tells_copies_within_a_window_per_sender() -> None:
    guard = ReplayGuard()
    assert [guard.check(f"t1-{n}", NOW) for n in (1, 2, 5, 3)] == [True, True, True, True]
    assert guard.check("t1-3", NOW) is False  # a copy
    assert guard.check("t1-4", NOW) is True  # overtaken, still new
    assert guard.check("t2-3", NOW) is True  # another sender counts on its own
    assert guard.check(f"t1-{5 + WINDOW}", NOW) is True
    assert guard.check("t1-5", NOW) is None  # too far below: the caller asks Redis
    assert guard.check("t1-6", NOW) is True  # the oldest number the window holds
    assert guard.check(f"t1-{5 + WINDOW}", NOW) is False
    assert guard.check("no-number", NOW) is None and guard.check("7", NOW) is None
    guard.check("t3-1", NOW + 100)
    guard.forget_before(NOW + 50)
    assert len(guard) == 1  # only t3 was heard from since
    assert guard.check("t1-1", NOW + 100) is True  # forgotten (its entries have expired)
