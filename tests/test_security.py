"""Unit tests for token storage and the handshake policy (localagent._security)."""

from __future__ import annotations

import hmac
import os
import stat
from http import HTTPStatus
from pathlib import Path

import pytest

import localagent._security as security
from localagent._security import (
    TOKEN_FILE_NAME,
    HandshakePolicy,
    Rejection,
    TokenFile,
    is_loopback,
    redact,
)
from localagent.exceptions import ConfigError

TOKEN = "s3cr3t-Token_value"
LOCAL = "127.0.0.1:8765"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- TokenFile


def test_token_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    tokens = TokenFile(directory)
    token = tokens.get()
    assert tokens.path == directory / TOKEN_FILE_NAME
    assert tokens.path.is_file()
    assert mode(tokens.path) == 0o600
    assert len(token) >= 32
    assert tokens.path.read_text(encoding="ascii").strip() == token
    assert [p.name for p in directory.iterdir()] == [TOKEN_FILE_NAME]  # no temp file left


def test_token_is_stable_across_calls_and_instances(tmp_path: Path) -> None:
    first = TokenFile(tmp_path).get()
    assert TokenFile(tmp_path).get() == first
    again = TokenFile(tmp_path)
    assert again.get() == again.get() == first


def test_tokens_are_random_per_directory(tmp_path: Path) -> None:
    assert TokenFile(tmp_path / "a").get() != TokenFile(tmp_path / "b").get()


def test_rotate_changes_the_token_and_others_see_it(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path)
    old = tokens.get()
    new = tokens.rotate()
    assert new != old
    assert tokens.get() == new
    assert TokenFile(tmp_path).get() == new
    assert mode(tokens.path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_FILE_NAME]


def test_rotate_without_an_existing_file_creates_it(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "fresh")
    new = tokens.rotate()
    assert tokens.get() == new
    assert mode(tokens.path) == 0o600


def test_rotation_by_another_process_reaches_a_long_lived_reader(tmp_path: Path) -> None:
    TokenFile(tmp_path).get()
    # An old file, so the rotated one has a different mtime even on coarse clocks.
    os.utime(tmp_path / TOKEN_FILE_NAME, (1_000_000_000, 1_000_000_000))
    reader = TokenFile(tmp_path)
    old = reader.get()  # read from the file: now cached
    assert reader.get() == old
    new = TokenFile(tmp_path).rotate()  # e.g. `localagent token --rotate`
    assert reader.get() == new != old


def test_rotation_is_seen_even_when_the_mtime_is_unchanged(tmp_path: Path) -> None:
    TokenFile(tmp_path).get()
    reader = TokenFile(tmp_path)
    old = reader.get()  # read from the file: now cached
    before = reader.path.stat()
    new = TokenFile(tmp_path).rotate()
    # Simulate a coarse-timestamp filesystem (FAT, some network filesystems, old
    # kernels): the replacement file carries the same mtime as the old one.
    os.utime(reader.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert new != old
    assert reader.get() == new


def test_loosened_mode_is_fixed_on_read(tmp_path: Path) -> None:
    token = TokenFile(tmp_path).get()
    path = tmp_path / TOKEN_FILE_NAME
    path.chmod(0o644)
    assert mode(path) == 0o644
    assert TokenFile(tmp_path).get() == token
    assert mode(path) == 0o600


def test_hand_written_token_is_read_stripped_and_made_private(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE_NAME
    path.write_text("  hand-made-token \n", encoding="ascii")
    path.chmod(0o664)
    assert TokenFile(tmp_path).get() == "hand-made-token"
    assert mode(path) == 0o600


@pytest.mark.parametrize("content", ["", "\n", "   \n\n"], ids=["empty", "newline", "blank"])
def test_empty_token_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    (tmp_path / TOKEN_FILE_NAME).write_text(content)
    with pytest.raises(ConfigError, match="is empty"):
        TokenFile(tmp_path).get()


def test_non_ascii_token_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE_NAME).write_bytes(b"\xff\xfe token")
    with pytest.raises(ConfigError, match="cannot read the token"):
        TokenFile(tmp_path).get()


def test_unreadable_location_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="cannot read the token"):
        TokenFile(not_a_dir).get()


def test_rotate_into_a_path_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError):
        TokenFile(not_a_dir).rotate()


# --------------------------------------------------------------------------- HandshakePolicy


def policy(
    *,
    bind_host: str = "127.0.0.1",
    origins: tuple[str, ...] = (),
    allowed_hosts: tuple[str, ...] = (),
    token: str = TOKEN,
) -> HandshakePolicy:
    return HandshakePolicy.create(
        lambda: token, bind_host=bind_host, origins=origins, allowed_hosts=allowed_hosts
    )


def bearer(token: str = TOKEN) -> str:
    return f"Bearer {token}"


def test_correct_bearer_header_accepted() -> None:
    assert policy().check("/", LOCAL, None, bearer()) is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    assert policy().check("/", LOCAL, None, f"{scheme} {TOKEN}") is None


def test_correct_query_token_accepted() -> None:
    assert policy().check(f"/?token={TOKEN}", LOCAL, None, None) is None
    assert policy().check(f"/ws?x=1&token={TOKEN}", LOCAL, None, None) is None


def test_token_is_read_per_handshake() -> None:
    current = ["one"]
    rotating = HandshakePolicy.create(lambda: current[0], bind_host="127.0.0.1")
    assert rotating.check("/", LOCAL, None, "Bearer one") is None
    current[0] = "two"
    assert rotating.check("/", LOCAL, None, "Bearer one") == Rejection(
        HTTPStatus.UNAUTHORIZED, "invalid token"
    )
    assert rotating.check("/", LOCAL, None, "Bearer two") is None


@pytest.mark.parametrize(
    ("path", "authorization"),
    [
        ("/", None),
        ("/", ""),
        ("/", "Bearer"),
        ("/", "Bearer    "),
        ("/", f"Basic {TOKEN}"),
        ("/", TOKEN),
        ("/?other=1", None),
        (f"/?Token={TOKEN}", None),
        (f"/?tokens={TOKEN}", None),
    ],
    ids=[
        "nothing",
        "empty-header",
        "bare-scheme",
        "blank-credentials",
        "basic-scheme",
        "no-scheme",
        "other-query",
        "wrong-case-key",
        "other-key",
    ],
)
def test_missing_token_is_401(path: str, authorization: str | None) -> None:
    assert policy().check(path, LOCAL, None, authorization) == Rejection(
        HTTPStatus.UNAUTHORIZED, "missing token"
    )


def _one_char_changed(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize(
    "offered",
    [
        "wrong",
        _one_char_changed(TOKEN),
        "X" + TOKEN[1:],
        TOKEN[:-1],
        TOKEN[:8],
        TOKEN + "x",
        TOKEN + " x",
        "x" + TOKEN,
        TOKEN.upper(),
        TOKEN.lower(),
        TOKEN.swapcase(),
        "é" + TOKEN[1:],
    ],
    ids=[
        "wrong",
        "last-char-changed",
        "first-char-changed",
        "missing-last-char",
        "prefix",
        "extra-char",
        "extra-word",
        "leading-char",
        "upper",
        "lower",
        "swapcase",
        "non-ascii",
    ],
)
@pytest.mark.parametrize("via", ["header", "query"])
def test_wrong_and_near_miss_tokens_are_401(offered: str, via: str) -> None:
    assert offered != TOKEN
    if via == "header":
        result = policy().check("/", LOCAL, None, bearer(offered))
    else:
        from urllib.parse import quote

        result = policy().check(f"/?token={quote(offered)}", LOCAL, None, None)
    assert result == Rejection(HTTPStatus.UNAUTHORIZED, "invalid token")


def test_header_takes_precedence_over_query() -> None:
    assert policy().check(f"/?token={TOKEN}", LOCAL, None, bearer("wrong")) == Rejection(
        HTTPStatus.UNAUTHORIZED, "invalid token"
    )
    assert policy().check("/?token=wrong", LOCAL, None, bearer()) is None


def test_rejection_reason_never_contains_the_token() -> None:
    for args in [
        ("/", LOCAL, None, bearer("x" + TOKEN)),
        ("/", "evil.example", None, bearer()),
        ("/", LOCAL, "https://evil.example", bearer()),
    ]:
        rejection = policy().check(*args)
        assert rejection is not None
        assert TOKEN not in rejection.reason


def test_compare_uses_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", recording)
    assert policy().check("/", LOCAL, None, bearer()) is None
    assert calls == [(TOKEN.encode(), TOKEN.encode())]
    assert policy().check("/", LOCAL, None, bearer("nope")) is not None
    assert calls[1] == (b"nope", TOKEN.encode())
    assert len(calls) == 2


# Origin


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://localhost:3000", "null", "", "http://127.0.0.1:8765"],
)
def test_foreign_browser_origin_is_403_even_with_the_token(origin: str) -> None:
    assert policy().check("/", LOCAL, origin, bearer()) == Rejection(
        HTTPStatus.FORBIDDEN, "Origin not allowed"
    )


@pytest.mark.parametrize(
    ("listed", "sent"),
    [
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://localhost:3000", "http://localhost:3000/"),
        ("http://localhost:3000/", "http://localhost:3000"),
        ("http://localhost:3000/", "http://localhost:3000/"),
    ],
)
def test_listed_origin_accepted_trailing_slash_tolerant(listed: str, sent: str) -> None:
    p = policy(origins=(listed, "https://app.example"))
    assert p.check("/", LOCAL, sent, bearer()) is None
    assert p.check("/", LOCAL, "https://app.example", bearer()) is None


def test_listed_origin_still_needs_the_token() -> None:
    p = policy(origins=("http://localhost:3000",))
    assert p.check("/", LOCAL, "http://localhost:3000", None) == Rejection(
        HTTPStatus.UNAUTHORIZED, "missing token"
    )
    assert p.check("/", LOCAL, "http://localhost:3000", bearer("bad")) == Rejection(
        HTTPStatus.UNAUTHORIZED, "invalid token"
    )


def test_origin_match_is_exact_not_prefix() -> None:
    p = policy(origins=("http://localhost:3000",))
    for sent in ("http://localhost:30000", "http://localhost:3000.evil.example", "HTTP://x"):
        assert p.check("/", LOCAL, sent, bearer()) == Rejection(
            HTTPStatus.FORBIDDEN, "Origin not allowed"
        )


def test_no_origin_with_token_accepted() -> None:
    assert policy(origins=("http://localhost:3000",)).check("/", LOCAL, None, bearer()) is None


# Host


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "EVIL.example", "127.0.0.2:8765", "0.0.0.0"]
)
def test_foreign_host_is_403_even_with_the_token(host: str) -> None:
    assert policy().check("/", host, None, bearer()) == Rejection(
        HTTPStatus.FORBIDDEN, "Host not allowed"
    )


def test_foreign_host_is_checked_before_the_token() -> None:
    # DNS rebinding: a page on evil.example must learn nothing, not even 401 vs 403.
    assert policy().check("/", "evil.example", None, None) == Rejection(
        HTTPStatus.FORBIDDEN, "Host not allowed"
    )


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8765",
        "127.0.0.1",
        "localhost",
        "localhost:8765",
        "LocalHost:8765",
        "[::1]:8765",
        "[::1]",
        " localhost ",
    ],
)
def test_loopback_hosts_accepted(host: str) -> None:
    assert policy().check("/", host, None, bearer()) is None


def test_missing_host_is_403() -> None:
    assert policy().check("/", None, None, bearer()) == Rejection(
        HTTPStatus.FORBIDDEN, "Host not allowed"
    )


def test_allowed_hosts_extra_names_accepted() -> None:
    p = policy(allowed_hosts=("Agent.Internal", "[fd00::1]"))
    assert p.check("/", "agent.internal:8765", None, bearer()) is None
    assert p.check("/", "AGENT.INTERNAL", None, bearer()) is None
    assert p.check("/", "[fd00::1]:8765", None, bearer()) is None
    assert p.check("/", "localhost", None, bearer()) is None  # loopback still fine
    assert p.check("/", "other.internal", None, bearer()) == Rejection(
        HTTPStatus.FORBIDDEN, "Host not allowed"
    )


def test_bind_host_is_an_accepted_host() -> None:
    p = policy(bind_host="192.168.1.5")
    assert p.check("/", "192.168.1.5:8765", None, bearer()) is None
    assert p.check("/", "192.168.1.6:8765", None, bearer()) is not None


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "::", "[::]", ""])
def test_wildcard_bind_is_not_an_accepted_host(bind_host: str) -> None:
    p = policy(bind_host=bind_host)
    assert p.hosts is not None
    assert p.check("/", "0.0.0.0:8765", None, bearer()) is not None
    assert p.check("/", "[::]:8765", None, bearer()) is not None
    assert p.check("/", "localhost:8765", None, bearer()) is None


def test_without_the_token_step_host_and_origin_are_still_checked() -> None:
    p = policy(origins=("http://localhost:3000",))
    for authorization in (None, "Bearer wrong", bearer()):
        assert p.check("/livez", LOCAL, None, authorization, needs_token=False) is None
    assert p.check("/livez", "evil.example", None, None, needs_token=False) == Rejection(
        HTTPStatus.FORBIDDEN, "Host not allowed"
    )
    assert p.check("/livez", LOCAL, "http://evil.example", None, needs_token=False) == Rejection(
        HTTPStatus.FORBIDDEN, "Origin not allowed"
    )
    assert p.check("/livez", LOCAL, None, None) == Rejection(
        HTTPStatus.UNAUTHORIZED, "missing token"
    )


def test_star_allows_any_host_but_still_needs_the_token() -> None:
    p = policy(allowed_hosts=("*",))
    assert p.hosts is None
    assert p.check("/", "evil.example:8765", None, bearer()) is None
    assert p.check("/", None, None, bearer()) is None
    assert p.check("/", "evil.example", None, None) == Rejection(
        HTTPStatus.UNAUTHORIZED, "missing token"
    )
    assert p.check("/", "evil.example", "https://evil.example", bearer()) == Rejection(
        HTTPStatus.FORBIDDEN, "Origin not allowed"
    )


# --------------------------------------------------------------------------- redact, is_loopback


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/?token={TOKEN}", "/?token=***"),
        (f"/ws?a=1&token={TOKEN}&b=2", "/ws?a=1&token=***&b=2"),
        ("/?token=", "/?token=***"),
        ("/ws?a=1", "/ws?a=1"),
        ("/ws", "/ws"),
        ("/", "/"),
    ],
)
def test_redact_masks_the_token(path: str, expected: str) -> None:
    assert redact(path) == expected


def test_redact_masks_a_percent_encoded_token_key() -> None:
    path = f"/?%74oken={TOKEN}"
    assert policy().check(path, LOCAL, None, None) is None  # the policy reads it as the token
    assert TOKEN not in redact(path)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]"],
)
def test_is_loopback_true(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "localhost.evil", ""]
)
def test_is_loopback_false(host: str) -> None:
    assert not is_loopback(host)
