"""The error path: replies encoded once but for their id, and a log that stays bounded.

Real agents on 127.0.0.1 and real WebSocket clients; the replies are read as
bytes and compared with what encoding the reply in full gives.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from localagent import Connection, MessageError, Server, handles, hookimpl
from localagent._codec import dumps
from localagent._failures import MAX_CACHED_ERRORS, ErrorReplies, FailureLog
from localagent._protocol import error_reply

#: Ids of every kind the protocol allows, the 64-bit extremes included.
IDS: list[str | int | None] = [0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, "a", 'é"\\', "", None]


class Raising:
    """``boom`` raises ValueError; ``refuse`` a MessageError, with details when asked."""

    @hookimpl(specname="on_message")
    @handles("boom")
    def boom(self, message: Any) -> None:
        raise ValueError("kaboom")

    @hookimpl(specname="on_message")
    @handles("refuse")
    def refuse(self, message: Any) -> None:
        details = {"why": message.data} if message.data is not None else None
        raise MessageError("not_allowed", f"no, thanks ({message.data})", details=details)


class Wrapping:
    """Wraps every connection's send path and keeps what it is handed."""

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []

    @hookimpl
    def on_connect(self, connection: Connection) -> None:
        def wrap(inner: Any) -> Any:
            async def send(message: Mapping[str, Any]) -> None:
                self.seen.append(message)
                await inner(message)

            return send

        connection.wrap_send(wrap)  # type: ignore[attr-defined]


class Choosing:
    """An ``on_error`` that answers every ``unknown_type`` with a reply of its own."""

    @hookimpl
    def on_error(self, error: BaseException, context: Any) -> MessageError | None:
        if isinstance(error, MessageError) and error.code == "unknown_type":
            return MessageError("chosen", "an on_error chose this")
        return None


def _cases() -> list[tuple[bytes, dict[str, Any]]]:
    """(frame, the reply expected in full) for requests that all fail, in a mixed order."""
    cases: list[tuple[bytes, dict[str, Any]]] = []
    for msg_id in IDS:
        cases += [
            (
                dumps({"id": msg_id, "type": "no.such"}),
                error_reply(msg_id, "unknown_type", "no plugin handles message type 'no.such'"),
            ),
            (
                dumps({"id": msg_id, "type": "boom"}),
                error_reply(msg_id, "internal_error", "the handler failed: ValueError"),
            ),
            (
                dumps({"id": msg_id, "type": "refuse", "data": 1}),
                error_reply(msg_id, "not_allowed", "no, thanks (1)", {"why": 1}),
            ),
            (
                dumps({"id": msg_id, "type": "refuse"}),
                error_reply(msg_id, "not_allowed", "no, thanks (None)"),
            ),
            (
                dumps({"id": msg_id, "type": ""}),
                error_reply(msg_id, "invalid_message", "'type' must be a non-empty string"),
            ),
        ]
    cases.append(
        (b"{not json", error_reply(None, "invalid_json", "the frame is not valid UTF-8 JSON"))
    )
    cases.append((b"[1]", error_reply(None, "invalid_message", "a message must be a JSON object")))
    random.Random(7).shuffle(cases)
    return cases * 3  # every kind again, with the cache filled


async def _ask_each(ws: ClientConnection, cases: list[tuple[bytes, dict[str, Any]]]) -> list[bytes]:
    """Send every frame (pipelined) and return the raw replies, in order."""
    for frame, _expected in cases:
        await ws.send(frame, text=True)
    replies = []
    for _ in cases:
        reply = await asyncio.wait_for(ws.recv(decode=False), 10)
        replies.append(bytes(reply))
    return replies


async def test_error_replies_carry_the_right_id_code_and_bytes() -> None:
    cases = _cases()
    async with Server.create(port=0, extra_plugins={"raising": Raising()}) as server:
        headers = {"Authorization": f"Bearer {server.token_file.get()}"}
        async with connect(server.url, additional_headers=headers) as ws:
            replies = await _ask_each(ws, cases)
            for raw, (_frame, expected) in zip(replies, cases, strict=True):
                assert orjson.loads(raw) == expected
                assert raw == dumps(expected)  # byte for byte the uncached encoding
            await ws.send(dumps({"id": 9, "type": "ping"}), text=True)
            assert orjson.loads(await ws.recv()) == {"id": 9, "result": {"pong": True}}


async def test_a_wrapped_send_path_still_sees_every_error_reply_as_a_mapping() -> None:
    cases = _cases()
    wrapping = Wrapping()
    plugins = {"raising": Raising(), "wrapping": wrapping}
    async with Server.create(port=0, extra_plugins=plugins) as server:
        headers = {"Authorization": f"Bearer {server.token_file.get()}"}
        async with connect(server.url, additional_headers=headers) as ws:
            replies = await _ask_each(ws, cases)
    assert [orjson.loads(raw) for raw in replies] == [expected for _f, expected in cases]
    assert [dict(seen) for seen in wrapping.seen] == [expected for _f, expected in cases]


async def test_the_reply_an_on_error_chooses_goes_out_with_the_right_id() -> None:
    invalid = error_reply(None, "invalid_json", "the frame is not valid UTF-8 JSON")
    cases = [
        (
            dumps({"id": msg_id, "type": "no.such"}),
            error_reply(msg_id, "chosen", "an on_error chose this"),
        )
        for msg_id in IDS
    ]
    cases.append((b"{", invalid))  # not chosen: answered as it is
    async with Server.create(port=0, extra_plugins={"choosing": Choosing()}) as server:
        headers = {"Authorization": f"Bearer {server.token_file.get()}"}
        async with connect(server.url, additional_headers=headers) as ws:
            replies = await _ask_each(ws, cases)
    assert [orjson.loads(raw) for raw in replies] == [expected for _f, expected in cases]


def test_the_reply_cache_is_bounded_and_right_past_its_bound() -> None:
    replies = ErrorReplies()
    for n in range(MAX_CACHED_ERRORS + 50):
        for msg_id in (n, str(n), None):
            expected = error_reply(msg_id, "not_found", f"no such key {n}")
            assert replies.frame(msg_id, "not_found", f"no such key {n}") == dumps(expected)
    assert len(replies._tails) == MAX_CACHED_ERRORS


class _Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _counted(records: list[logging.LogRecord]) -> int:
    """Failures a list of log lines stands for: each line, plus the ones it says it left out."""
    total = 0
    for record in records:
        text = record.getMessage()
        total += 1 if "more not logged (the log" not in text else 0
        if "more not logged" in text:
            total += int(text.split(" more not logged")[0].rsplit("(", 1)[-1].rsplit(" ", 1)[-1])
    return total


def test_the_failure_log_is_bounded_and_counts_what_it_leaves_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="test.failures")
    clock = _Clock()
    log = FailureLog(logging.getLogger("test.failures"), interval=10.0, clock=clock)
    kinds = ("invalid_json", "invalid_message", "unknown_type")
    for n in range(100_000):  # 100 s of failures, three kinds, 1,000 a second
        clock.now = n / 1000
        log.log(logging.DEBUG, kinds[n % 3], f"bad input ({kinds[n % 3]})", f"frame {n}")
    log.flush()
    lines = caplog.records
    # Per kind: the first, one line per 10 s after it, and the flush.
    assert len(lines) <= 3 * (1 + 100 // 10 + 1)
    assert _counted(lines) == 100_000
    assert log.suppressed == 100_000 - sum(1 for r in lines if "(the log" not in r.getMessage())
    first = [r for r in lines if "from now on" in r.getMessage()]
    assert len(first) == 3


def test_kinds_past_the_limit_share_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="test.failures")
    log = FailureLog(logging.getLogger("test.failures"), max_kinds=10, clock=_Clock())
    for n in range(5_000):
        log.log(logging.ERROR, ("kind", n), f"failure of kind {n}", exc_info=ValueError(n))
    log.flush()
    assert len(caplog.records) == 11 + 1  # ten kinds, the shared one, its count at flush
    assert "4989 more not logged" in caplog.records[-1].getMessage()
    assert sum(r.exc_info is not None for r in caplog.records) == 10


def test_nothing_is_counted_for_a_level_the_logger_drops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.failures")
    log = FailureLog(logging.getLogger("test.failures"), clock=_Clock())
    for _ in range(1000):
        log.log(logging.DEBUG, "junk", "bad input")
    log.flush()
    assert not caplog.records
    assert log.suppressed == 0


async def test_100000_junk_frames_are_all_answered_and_leave_a_few_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="localagent")
    junk = [b"{not json", b"[1]", b'{"type": ""}', b'{"id": 3, "type": "no.such"}']
    total = 100_000
    async with Server.create(port=0) as server:
        headers = {"Authorization": f"Bearer {server.token_file.get()}"}
        async with connect(server.url, additional_headers=headers, compression=None) as ws:

            async def read() -> int:
                answered = 0
                while answered < total:
                    reply = orjson.loads(await ws.recv(decode=False))
                    assert "error" in reply
                    answered += 1
                return answered

            reader = asyncio.create_task(read())
            for frame in itertools.islice(itertools.cycle(junk), total):
                await ws.send(frame, text=True)
            assert await asyncio.wait_for(reader, 120) == total
    lines = [
        r
        for r in caplog.records
        if r.name == "localagent"
        and ("bad input" in r.getMessage() or "no plugin" in r.getMessage())
    ]
    # Three kinds of bad input (unknown types are answers, not logged): a first line
    # each, one per 10 s after, and the counts at shutdown. The run takes seconds.
    assert 3 <= len(lines) <= 3 * 3 + 3, [r.getMessage() for r in lines]
    assert server.runtime.errors.log.suppressed >= total // 4 * 3 - len(lines)


def test_suppress_counts_like_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="test.failures")
    clock = _Clock()
    log = FailureLog(logging.getLogger("test.failures"), interval=10.0, clock=clock)
    assert not log.suppress(logging.ERROR, "k")  # a first one is always due
    log.log(logging.ERROR, "k", "failure")
    assert log.suppress(logging.ERROR, "k") and log.suppress(logging.ERROR, "k")
    assert log.suppressed == 2
    assert log.suppress(logging.DEBUG, "k")  # off: nothing due, nothing counted
    assert log.suppressed == 2
    clock.now = 10.0
    assert not log.suppress(logging.ERROR, "k")
    log.log(logging.ERROR, "k", "failure")
    assert "2 more not logged in the last 10 s" in caplog.records[-1].getMessage()
