"""A real agent on a free 127.0.0.1 port, driven by ``localagent.Client`` and raw handshakes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

import localagent
from localagent import Client, MessageError, Server, handles, hookimpl

from .helpers import handshake_status

# -- plugins used by these tests -------------------------------------------------


class Faulty:
    """Handles ``boom`` by raising, and records what reaches ``on_error``."""

    def __init__(self) -> None:
        self.errors: list[tuple[BaseException, Any]] = []

    @hookimpl(specname="on_message")
    @handles("boom")
    def boom(self, message: localagent.Message) -> None:
        raise ValueError("kaboom")

    @hookimpl(specname="on_message")
    @handles("refuse")
    def refuse(self, message: localagent.Message) -> None:
        raise MessageError("not_allowed", "no, thanks", details={"why": "test"})

    @hookimpl
    def on_error(self, error: BaseException, context: Any) -> None:
        self.errors.append((error, context))


class AsyncHandlers:
    @hookimpl(specname="on_message")
    @handles("slow_echo")
    async def slow_echo(self, message: localagent.Message) -> Any:
        await asyncio.sleep(0)  # yields to the loop; the point is the async path
        return {"data": message.data}


def _start(**overrides: Any) -> Server:
    plugins = overrides.pop("plugins", {})
    return Server.create(port=0, extra_plugins=plugins, **overrides)


@asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[Client]:
    """A client connected to a started agent with the given plugins and settings."""
    async with _start(**overrides) as server, Client(server.url, server.token_file.get()) as client:
        yield client


# -- requests and replies ------------------------------------------------------


async def test_ping_and_echo(client: Client) -> None:
    assert await client.request("ping") == {"pong": True}
    assert await client.request("echo", {"a": [1, 2, "x"]}) == {"data": {"a": [1, 2, "x"]}}


async def test_concurrent_requests_are_correlated_by_id(client: Client) -> None:
    results = await asyncio.gather(*(client.request("echo", n) for n in range(200)))
    assert results == [{"data": n} for n in range(200)]


async def test_unknown_type_gets_error_and_connection_keeps_serving(client: Client) -> None:
    with pytest.raises(localagent.ReplyError) as caught:
        await client.request("no.such.type")
    assert caught.value.code == "unknown_type"
    assert "no.such.type" in caught.value.message
    assert await client.request("ping") == {"pong": True}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_message"),
        (b'{"id": 7}', "invalid_message"),
        (b'{"id": true, "type": "ping"}', "invalid_message"),
    ],
)
async def test_malformed_frames_get_error_reply(client: Client, frame: bytes, code: str) -> None:
    await client.send_raw(frame)
    reply = await asyncio.wait_for(client.events.get(), 10)
    assert reply["error"]["code"] == code
    assert await client.request("ping") == {"pong": True}


async def test_invalid_message_keeps_its_id(client: Client) -> None:
    await client.send_raw(b'{"id": "x1", "type": ""}')
    reply = await asyncio.wait_for(client.events.get(), 10)
    assert reply["id"] == "x1"
    assert reply["error"]["code"] == "invalid_message"


async def test_inbound_batch_frame_answers_each_member(client: Client) -> None:
    frame = {
        "type": "batch",
        "messages": [
            {"id": "a", "type": "ping"},
            {"id": "b", "type": "echo", "data": 2},
            {"id": "c", "type": "nope"},
        ],
    }
    await client.send_raw(orjson.dumps(frame))
    replies = {}
    for _ in range(3):
        reply = await asyncio.wait_for(client.events.get(), 10)
        replies[reply["id"]] = reply
    assert replies["a"]["result"] == {"pong": True}
    assert replies["b"]["result"] == {"data": 2}
    assert replies["c"]["error"]["code"] == "unknown_type"


async def test_notification_gets_no_success_reply_but_errors_are_answered(client: Client) -> None:
    await client.notify("ping")
    await client.notify("no.such.type")
    reply = await asyncio.wait_for(client.events.get(), 10)
    assert reply == {
        "id": None,
        "error": {
            "code": "unknown_type",
            "message": "no plugin handles message type 'no.such.type'",
        },
    }
    assert await client.request("ping") == {"pong": True}
    assert client.events.empty()


async def test_oversized_frame_closes_1009_and_server_keeps_serving() -> None:
    async with _start(max_message_size=1024) as server:
        token = server.token_file.get()
        async with Client(server.url, token) as client:
            with pytest.raises(localagent.ConnectionLost) as caught:
                await client.request("echo", "x" * 4096)
            assert caught.value.code == 1009
        async with Client(server.url, token) as client:
            assert await client.request("ping") == {"pong": True}


async def test_invalid_utf8_in_a_text_frame_closes_1007_and_server_keeps_serving() -> None:
    async with _start() as server:
        token = server.token_file.get()
        headers = {"Authorization": f"Bearer {token}"}
        async with Client(server.url, token) as bystander, Client(server.url, token) as client:
            await client.send_raw(b'{"id": 1, "type": "\xff\xfe"}')  # a text frame
            with pytest.raises(localagent.ConnectionLost) as caught:
                await client.request("ping")
            assert caught.value.code == 1007
            assert caught.value.reason == "invalid start byte at position 19"
            assert await bystander.request("ping") == {"pong": True}
        # A binary frame is not text: the same bytes are only bad JSON, answered as such.
        async with connect(server.url, additional_headers=headers) as ws:
            await ws.send(b'{"id": 1, "type": "\xff\xfe"}')
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["error"]["code"] == "invalid_json"
            await ws.send(b'{"id": 2, "type": "ping"}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["id"] == 2


# -- failures in plugins -------------------------------------------------------


async def test_handler_that_raises_gets_internal_error_and_on_error_sees_it() -> None:
    faulty = Faulty()
    async with serving(plugins={"faulty": faulty}) as client:
        with pytest.raises(localagent.ReplyError) as caught:
            await client.request("boom")
        assert caught.value.code == "internal_error"
        assert "ValueError" in caught.value.message
        assert await client.request("ping") == {"pong": True}
    error, context = faulty.errors[0]
    assert isinstance(error, ValueError)
    assert context.stage == "message"
    assert context.plugin == "faulty"
    assert context.message.type == "boom"


async def test_message_error_becomes_coded_reply_with_details() -> None:
    async with serving(plugins={"faulty": Faulty()}) as client:
        with pytest.raises(localagent.ReplyError) as caught:
            await client.request("refuse")
    assert (caught.value.code, caught.value.message) == ("not_allowed", "no, thanks")
    assert caught.value.details == {"why": "test"}


async def test_on_error_can_choose_the_reply() -> None:
    class Translator:
        @hookimpl
        def on_error(self, error: BaseException) -> MessageError | None:
            if isinstance(error, ValueError):
                return MessageError("bad_value", "translated")
            return None

    plugins = {"faulty": Faulty(), "translator": Translator()}
    async with serving(plugins=plugins) as client:
        with pytest.raises(localagent.ReplyError) as caught:
            await client.request("boom")
    assert caught.value.code == "bad_value"


async def test_a_handler_calling_sys_exit_gets_an_error_reply_not_a_stopped_agent() -> None:
    class Exits:
        @hookimpl(specname="on_message")
        @handles("exit")
        def exit(self) -> Any:
            sys.exit(3)

        @hookimpl(specname="on_message")
        @handles("exit.later")
        async def exit_later(self) -> Any:
            sys.exit(4)

    async with serving(plugins={"exits": Exits()}) as client:
        for message_type in ("exit", "exit.later"):
            with pytest.raises(localagent.ReplyError) as caught:
                await client.request(message_type)
            assert caught.value.code == "internal_error"
            assert "RuntimeError" in caught.value.message
        assert await client.request("ping") == {"pong": True}


async def test_on_error_that_raises_does_not_break_the_server() -> None:
    class BrokenReporter:
        @hookimpl
        def on_error(self) -> None:
            raise RuntimeError("the reporter itself fails")

    async with serving(plugins={"faulty": Faulty(), "broken": BrokenReporter()}) as client:
        with pytest.raises(localagent.ReplyError) as caught:
            await client.request("boom")
        assert caught.value.code == "internal_error"
        assert await client.request("ping") == {"pong": True}


async def test_async_handler() -> None:
    async with serving(plugins={"async": AsyncHandlers()}) as client:
        results = await asyncio.gather(*(client.request("slow_echo", n) for n in range(50)))
    assert results == [{"data": n} for n in range(50)]


async def test_unserialisable_result_gets_internal_error() -> None:
    class Bad:
        @hookimpl(specname="on_message")
        @handles("bad")
        def bad(self) -> Any:
            return {"value": object()}

    async with serving(plugins={"bad": Bad()}) as client:
        with pytest.raises(localagent.ReplyError) as caught:
            await client.request("bad")
        assert caught.value.code == "internal_error"
        assert await client.request("ping") == {"pong": True}


async def test_in_flight_limit_makes_requests_wait_not_drop() -> None:
    release = asyncio.Event()
    started: list[int] = []

    class Gate:
        @hookimpl(specname="on_message")
        @handles("gate")
        async def gate(self, message: localagent.Message) -> Any:
            started.append(message.data)
            await release.wait()
            return {"n": message.data}

    async with serving(plugins={"gate": Gate()}, max_in_flight=2) as client:
        requests = [asyncio.create_task(client.request("gate", n)) for n in range(6)]
        while len(started) < 2:  # noqa: ASYNC110 - polls a condition, no I/O stand-in
            await asyncio.sleep(0.01)
        # A ping behind the gated requests waits too: the server stops reading.
        ping = asyncio.create_task(client.request("ping"))
        await asyncio.sleep(0.2)
        assert len(started) == 2
        assert not ping.done()
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*requests), 10)
        assert results == [{"n": n} for n in range(6)]
        assert await asyncio.wait_for(ping, 10) == {"pong": True}


# -- lifecycle hooks -------------------------------------------------------------


async def test_on_load_runs_concurrently() -> None:
    # Each plugin's on_load waits for the other's: this completes only if both
    # run at the same time.
    first_ready, second_ready = asyncio.Event(), asyncio.Event()

    class First:
        @hookimpl
        async def on_load(self) -> None:
            first_ready.set()
            await asyncio.wait_for(second_ready.wait(), 5)

    class Second:
        @hookimpl
        async def on_load(self) -> None:
            second_ready.set()
            await asyncio.wait_for(first_ready.wait(), 5)

    server = _start(plugins={"first": First(), "second": Second()})
    async with server:
        infos = {i.name: i for i in server.runtime.plugins.infos}
        assert infos["first"].error is None and infos["second"].error is None
        assert infos["first"].load_seconds is not None


async def test_failing_on_load_is_reported_and_others_keep_working() -> None:
    class Broken:
        @hookimpl
        async def on_load(self, agent: localagent.Agent) -> None:
            raise RuntimeError("cannot warm up")

        @hookimpl(specname="on_message")
        @handles("broken")
        def broken(self) -> Any:
            return {"unreachable": True}

    async with _start(plugins={"broken": Broken()}) as server:
        info = server.runtime.plugins.info("broken")
        assert info is not None
        assert info.error == "on_load failed: RuntimeError: cannot warm up"
        assert not info.registered
        async with Client(server.url, server.token_file.get()) as client:
            assert await client.request("ping") == {"pong": True}
            with pytest.raises(localagent.ReplyError) as caught:
                await client.request("broken")
            assert caught.value.code == "unknown_type"


async def test_failing_on_load_is_fatal_when_strict() -> None:
    class Broken:
        @hookimpl
        def on_load(self) -> None:
            raise RuntimeError("cannot warm up")

    server = _start(plugins={"broken": Broken()}, strict=True)
    with pytest.raises(localagent.PluginError, match="broken"):
        await server.start()


async def test_a_taken_port_fails_before_any_on_load_runs() -> None:
    loaded: list[str] = []

    class Probe:
        @hookimpl
        def on_load(self) -> None:
            loaded.append("probe")

    async with _start() as first:
        server = Server.create(port=first.port, extra_plugins={"probe": Probe()})
        with pytest.raises(
            localagent.ConfigError, match=f"cannot listen on 127.0.0.1:{first.port}"
        ):
            await server.start()
    assert loaded == []


async def test_connections_are_refused_until_every_on_load_finished() -> None:
    loading, release = asyncio.Event(), asyncio.Event()

    class Slow:
        @hookimpl
        async def on_load(self) -> None:
            loading.set()
            await asyncio.wait_for(release.wait(), 10)

    server = _start(plugins={"slow": Slow()})
    starting = asyncio.create_task(server.start())
    await asyncio.wait_for(loading.wait(), 10)
    with pytest.raises(ConnectionRefusedError):  # bound, not listening yet
        await asyncio.open_connection("127.0.0.1", server.port)
    release.set()
    await starting
    try:
        async with Client(server.url, server.token_file.get()) as client:
            assert await client.request("ping") == {"pong": True}
    finally:
        await server.aclose()


async def test_on_load_gets_the_agent_with_plugin_config(isolated_env: Any) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text('[plugins.configured]\ngreeting = "hi"\n')
    seen: dict[str, Any] = {}

    class Configured:
        @hookimpl
        def on_load(self, agent: localagent.Agent) -> None:
            seen.update(agent.plugin_config("configured"))
            seen["dir"] = agent.config_dir

    async with _start(plugins={"configured": Configured()}):
        pass
    assert seen == {"greeting": "hi", "dir": isolated_env}


async def test_on_connect_greets_and_a_failing_on_connect_does_not_close() -> None:
    class Greeter:
        @hookimpl
        async def on_connect(self, connection: localagent.Connection) -> None:
            connection.state["greeter"] = "greeted"
            await connection.send({"type": "hello", "data": connection.id})

    class Crasher:
        @hookimpl
        def on_connect(self) -> None:
            raise RuntimeError("on_connect failed")

    async with serving(plugins={"greeter": Greeter(), "crasher": Crasher()}) as client:
        hello = await asyncio.wait_for(client.events.get(), 10)
        assert hello["type"] == "hello"
        assert hello["data"].startswith("c")
        assert await client.request("ping") == {"pong": True}


class _PairBatcher:
    """Wraps the send path: replies go out two to a batch frame (a pong goes alone)."""

    @hookimpl
    def on_connect(self, connection: localagent.Connection) -> None:
        held: list[Any] = []

        def wrap(inner: Any) -> Any:
            async def send(message: Any) -> None:
                if message.get("result") == {"pong": True}:
                    await inner(message)
                    return
                held.append(message)
                if len(held) == 2:
                    batch = {"type": "batch", "messages": list(held)}
                    held.clear()
                    await inner(batch)

            return send

        connection.wrap_send(wrap)


async def test_wrapped_send_path_and_client_unbatches() -> None:
    """A plugin can wrap the send path; the client unpacks batch frames it produces."""
    async with serving(plugins={"pairs": _PairBatcher()}) as client:
        results = await asyncio.gather(client.request("echo", 1), client.request("echo", 2))
    assert results == [{"data": 1}, {"data": 2}]


class _Buffers:
    """A buffer source that records what it handed out (a real one, not a stand-in)."""

    def __init__(self) -> None:
        self.idle: list[bytearray] = []
        self.out: set[int] = set()
        self.hints: list[int] = []
        self.released = 0

    def acquire(self, size_hint: int = 0) -> bytearray:
        self.hints.append(size_hint)
        buffer = self.idle.pop() if self.idle else bytearray(size_hint)
        assert id(buffer) not in self.out  # never two frames in one buffer
        self.out.add(id(buffer))
        return buffer

    def release(self, buffer: bytearray) -> None:
        self.out.remove(id(buffer))
        self.idle.append(buffer)
        self.released += 1


async def test_batch_frames_are_encoded_into_buffers_from_the_source() -> None:
    """use_buffers: batch frames go through the source, under wrappers applied before or after."""
    buffers = _Buffers()
    wrapped: list[str] = []

    class Source:
        @hookimpl(tryfirst=True)  # wraps the send path first: the innermost wrapper
        def on_connect(self, connection: localagent.Connection) -> None:
            def wrap(inner: Any) -> Any:
                async def send(message: Any) -> None:
                    wrapped.append(message.get("type", "reply"))
                    await inner(message)

                return send

            connection.wrap_send(wrap)
            connection.use_buffers(buffers)

    async with serving(plugins={"source": Source(), "pairs": _PairBatcher()}) as client:
        for size in (10, 5_000, 100):
            payload = "é" * size
            results = await asyncio.gather(
                client.request("echo", payload), client.request("echo", [size])
            )
            assert results == [{"data": payload}, {"data": [size]}]
        assert await client.request("ping") == {"pong": True}
    assert wrapped == ["batch", "batch", "batch", "reply"]
    assert buffers.released == 3 and not buffers.out  # every buffer given back
    assert len(buffers.idle) == 1  # one reused buffer served the three frames
    assert buffers.hints[0] == 0 and buffers.hints[2] > 10_000  # the last frame's size


async def test_close_callbacks_run_and_shutdown_closes_with_1001() -> None:
    closed: list[str] = []

    class Tracker:
        @hookimpl
        def on_connect(self, connection: localagent.Connection) -> None:
            connection.on_close(lambda: closed.append(connection.id))

    server = _start(plugins={"tracker": Tracker()})
    await server.start()
    client = await Client.connect(server.url, server.token_file.get())
    assert await client.request("ping") == {"pong": True}
    await server.aclose()
    with pytest.raises(localagent.ConnectionLost):
        await client.request("ping")
    assert client.close_code == 1001
    assert len(closed) == 1
    await client.aclose()


# -- handshake security --------------------------------------------------------


async def test_missing_and_wrong_token_are_refused(agent: Server) -> None:
    with pytest.raises(localagent.HandshakeRejected) as caught:
        async with Client(agent.url, "wrong-token"):
            pass
    assert caught.value.status == 401
    assert await handshake_status(agent.port, {"Host": "127.0.0.1"}) == 401
    token = agent.token_file.get()
    near_misses = [token[:-1], token + "x", token.upper(), "Bearer " + token]
    for candidate in near_misses:
        headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {candidate}"}
        assert await handshake_status(agent.port, headers) == 401, candidate


async def test_token_in_query_string_for_browsers(agent: Server) -> None:
    token = agent.token_file.get()
    status = await handshake_status(agent.port, {"Host": "127.0.0.1"}, path=f"/?token={token}")
    assert status == 101


async def test_foreign_origin_is_refused_even_with_token(agent: Server) -> None:
    token = agent.token_file.get()
    headers = {
        "Host": f"127.0.0.1:{agent.port}",
        "Origin": "https://evil.example",
        "Authorization": f"Bearer {token}",
    }
    assert await handshake_status(agent.port, headers) == 403


async def test_listed_origin_is_accepted() -> None:
    async with _start(origins=("http://localhost:3000",)) as server:
        token = server.token_file.get()
        async with connect(
            f"{server.url}/?token={token}", origin="http://localhost:3000", compression=None
        ) as ws:
            await ws.send(orjson.dumps({"id": 1, "type": "ping"}), text=True)
            assert orjson.loads(await ws.recv()) == {"id": 1, "result": {"pong": True}}
        headers = {"Host": "localhost", "Origin": "http://localhost:3001"}
        assert await handshake_status(server.port, headers, path=f"/?token={token}") == 403


@pytest.mark.parametrize("host", ["evil.example", f"evil.example:{8765}", "127.0.0.1.nip.io"])
async def test_dns_rebinding_host_is_refused(agent: Server, host: str) -> None:
    headers = {"Host": host, "Authorization": f"Bearer {agent.token_file.get()}"}
    assert await handshake_status(agent.port, headers) == 403


async def test_rotated_token_applies_to_new_connections(agent: Server) -> None:
    old = agent.token_file.get()
    new = localagent._security.TokenFile(agent.settings.config_dir).rotate()
    assert new != old
    with pytest.raises(localagent.HandshakeRejected):
        await Client.connect(agent.url, old)
    async with Client(agent.url, new) as client:
        assert await client.request("ping") == {"pong": True}


async def test_token_never_logged(agent: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = agent.token_file.get()
    await handshake_status(agent.port, {"Host": "127.0.0.1"}, path=f"/?token={token}x")
    await handshake_status(agent.port, {"Host": "evil.example"}, path=f"/?token={token}")
    async with Client(agent.url, token) as client:
        await client.request("ping")
        await client.request("echo", "payload")
    with pytest.raises(localagent.HandshakeRejected):
        await Client.connect(agent.url, token + "x")
    assert caplog.records, "expected some log records to inspect"
    assert token not in caplog.text


async def test_non_loopback_bind_needs_allow_remote() -> None:
    server = _start(host="0.0.0.0")
    with pytest.raises(localagent.ConfigError, match="allow-remote"):
        await server.start()


async def test_connect_to_nothing_is_a_clean_error() -> None:
    async with _start() as server:
        url = server.url
    with pytest.raises(localagent.ConnectFailed, match="Is `localagent serve` running"):
        await Client.connect(url, "token")


async def test_failing_send_wrapper_is_reported_and_replies_still_arrive() -> None:
    errors: list[Any] = []

    class BrokenWrapper:
        @hookimpl
        def on_connect(self, connection: localagent.Connection) -> None:
            def wrap(inner: Any) -> Any:
                async def send(message: Any) -> None:
                    raise RuntimeError("the wrapper is broken")

                return send

            connection.wrap_send(wrap)

        @hookimpl
        def on_error(self, error: BaseException, context: Any) -> None:
            errors.append((str(error), context.stage))

    async with serving(plugins={"broken": BrokenWrapper()}) as client:
        assert await client.request("ping") == {"pong": True}
        with pytest.raises(localagent.ReplyError) as caught:
            await client.request("no.such.type")
        assert caught.value.code == "unknown_type"
    assert ("the wrapper is broken", "send") in errors


async def test_shutdown_lets_in_flight_requests_finish() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    class Slow:
        @hookimpl(specname="on_message")
        @handles("slow")
        async def slow(self) -> Any:
            entered.set()
            await release.wait()
            return {"finished": True}

    server = _start(plugins={"slow": Slow()}, shutdown_grace=10)
    await server.start()
    client = await Client.connect(server.url, server.token_file.get())
    request = asyncio.create_task(client.request("slow"))
    await asyncio.wait_for(entered.wait(), 10)
    closing = asyncio.create_task(server.aclose())
    await asyncio.sleep(0.1)
    assert not closing.done()  # waiting for the handler, not cutting it off
    release.set()
    assert await asyncio.wait_for(request, 10) == {"finished": True}
    await asyncio.wait_for(closing, 10)
    await client.aclose()


async def test_a_repeating_handler_failure_logs_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="localagent")
    async with serving(plugins={"faulty": Faulty()}) as client:
        for _ in range(5):
            with pytest.raises(localagent.ReplyError):
                await client.request("boom")
    # The first in full; the four repeats (within the log's interval) counted, and
    # the count logged when the agent stops (tests/test_error_path.py has the rest).
    failures = [r for r in caplog.records if "handler for 'boom'" in r.getMessage()]
    assert [r.exc_info is not None for r in failures] == [True, False]
    assert [r.levelno for r in failures] == [logging.ERROR, logging.ERROR]
    assert "kaboom" in failures[0].getMessage()
    assert "4 more not logged" in failures[1].getMessage()


async def test_client_survives_odd_frames_and_a_failing_on_event() -> None:
    class Pusher:
        @hookimpl(specname="on_message")
        @handles("push")
        async def push(self, connection: localagent.Connection, message: Any) -> Any:
            await connection.send({"id": message.id, "type": "progress"})
            await connection.send({"id": [1, 2], "type": "odd id"})
            return {"done": True}

    async with serving(plugins={"pusher": Pusher()}) as pushed:

        def explode(event: Any) -> None:
            raise RuntimeError("a broken callback")

        assert await pushed.request("push", on_event=explode) == {"done": True}
        odd = await asyncio.wait_for(pushed.events.get(), 10)
        assert odd["id"] == [1, 2]
        assert await pushed.request("ping") == {"pong": True}


async def test_a_message_carrying_from_never_joins_a_pending_request() -> None:
    # Another client's delivery (``from`` set, see docs/protocol.md) that reuses the id
    # of this client's pending request: neither its stream nor its reply.
    class Spoofer:
        @hookimpl(specname="on_message")
        @handles("spoofed")
        async def spoofed(self, connection: localagent.Connection, message: Any) -> Any:
            forged = {"id": message.id, "from": "127.0.0.1:9/c2"}
            await connection.send({**forged, "type": "exec.output", "data": {"chunk": "fake"}})
            await connection.send({**forged, "type": "exec", "result": {"exit_code": 99}})
            await connection.send({"id": message.id, "type": "progress", "data": "real"})
            return {"exit_code": 0}

    async with serving(plugins={"spoofer": Spoofer()}) as client:
        streamed: list[Any] = []
        assert await client.request("spoofed", on_event=streamed.append) == {"exit_code": 0}
        assert streamed == [{"id": 1, "type": "progress", "data": "real"}]
        delivered = [await asyncio.wait_for(client.events.get(), 10) for _ in range(2)]
        assert [item["type"] for item in delivered] == ["exec.output", "exec"]
        assert all(item["from"] == "127.0.0.1:9/c2" for item in delivered)
        assert client.events.empty()
