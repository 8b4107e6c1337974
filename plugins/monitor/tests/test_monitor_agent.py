"""The monitor plugin in a real agent: selective wrapping, figures, endpoints, security.

The endpoints answer on the agent's own port unless ``[plugins.monitor] port``
gives them one of their own; both are tested here against real servers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from monitor_testing import (
    RaisingPlugin,
    handshake_status,
    http_get,
    http_raw,
    plugin_of,
    until,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

import localagent
from localagent.testing import running_agent


def port_of(agent: localagent.Server) -> int:
    """Where the endpoints answer: the monitor's own port if it has one, else the agent's."""
    monitor = plugin_of(agent).monitor
    assert monitor is not None
    return agent.port if monitor.port is None else monitor.port


async def snapshot(agent: localagent.Server) -> Any:
    reply = await http_get(port_of(agent), "/performance.json", token=agent.token_file.get())
    assert reply.status == 200, reply
    return reply.json()


# -- selective monitoring ------------------------------------------------------


async def test_only_the_configured_types_get_a_wrapper(agent: localagent.Server) -> None:
    dispatcher = agent.runtime.dispatcher
    wrapper = plugin_of(agent).observe_message
    assert dispatcher.route("echo").wrappers == (wrapper,)
    assert dispatcher.route("echo").wrapper_plugins == ("monitor",)
    for other in ("ping", "kv.get", "fs.read", "no.such.type"):
        route = dispatcher.route(other)
        assert route.wrappers == (), other  # dispatched exactly as without the plugin


@pytest.mark.parametrize("monitor_config", ["all_paths = true\ntick = 0.05\n"])
async def test_all_paths_wraps_every_type(agent: localagent.Server) -> None:
    wrapper = plugin_of(agent).observe_message
    for message_type in ("echo", "ping", "kv.get", "no.such.type"):
        assert agent.runtime.dispatcher.route(message_type).wrappers == (wrapper,)


@pytest.fixture
def agent(localagent_agent: localagent.Server) -> localagent.Server:
    return localagent_agent


@pytest.fixture
def localagent_plugins() -> Sequence[Any]:
    return ["monitor", RaisingPlugin()]


async def test_monitored_types_are_counted_and_timed(agent: localagent.Server) -> None:
    async with localagent.Client(agent.url, agent.token_file.get()) as client:
        for n in range(5):
            assert await client.request("echo", n) == {"data": n}
        assert await client.request("ping") == {"pong": True}
        data = await snapshot(agent)
        assert data["types"]["echo"]["handled"] == 5
        assert data["types"]["echo"]["failed"] == 0
        assert data["types"]["echo"]["mean_ms"] > 0
        assert "ping" not in data["types"]  # not monitored: not even counted
        assert data["throughput"]["monitored_handled"] == 5
        assert data["throughput"]["handled"] == 6  # all traffic: ping too
        assert data["connections"] == {"open": 1, "total": 1}
        assert data["monitored"] == {
            "all_paths": False,
            "types": ["echo"],
            "hooks": ["on_connect", "on_error"],
        }
        names = {row["name"] for row in data["plugins"]}
        assert {"ping", "echo", "monitor", "raising"} <= names

    async def closed() -> bool:
        return bool((await snapshot(agent))["connections"]["open"] == 0)

    await until(closed)


async def test_errors_are_counted_by_stage_plugin_and_kind(agent: localagent.Server) -> None:
    async with localagent.Client(agent.url, agent.token_file.get()) as client:
        for _ in range(3):
            with pytest.raises(localagent.ReplyError, match="internal_error"):
                await client.request("boom")
        with pytest.raises(localagent.ReplyError, match="unknown_type"):
            await client.request("no.such.type")
        assert await client.request("echo", 1) == {"data": 1}  # the server goes on
    data = await snapshot(agent)
    by = {(e["stage"], e["plugin"], e["kind"]): e["count"] for e in data["errors"]["by"]}
    assert by == {("message", "raising", "ValueError"): 3, ("message", None, "unknown_type"): 1}
    assert data["errors"]["total"] == 4


async def test_metrics_are_prometheus_text(agent: localagent.Server) -> None:
    async with localagent.Client(agent.url, agent.token_file.get()) as client:
        for n in range(7):
            await client.request("echo", n)
        with pytest.raises(localagent.ReplyError):
            await client.request("boom")
    reply = await http_get(port_of(agent), "/metrics", token=agent.token_file.get())
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    assert samples[("localagent_messages_total", (("type", "echo"),))] == 7
    assert samples[("localagent_message_duration_seconds_count", (("type", "echo"),))] == 7
    assert (
        samples[("localagent_message_duration_seconds_bucket", (("le", "+Inf"), ("type", "echo")))]
        == 7
    )
    key = (
        "localagent_errors_total",
        (("kind", "ValueError"), ("plugin", "raising"), ("stage", "message")),
    )
    assert samples[key] == 1
    assert samples[("localagent_connections_total", ())] == 1
    assert samples[("localagent_health", ())] in (0, 1, 2)
    assert "process_resident_memory_bytes" in families
    assert ("localagent_plugin_load_seconds", (("plugin", "monitor"),)) in samples


# -- health --------------------------------------------------------------------


@pytest.mark.parametrize(
    "monitor_config",
    ['types = ["echo"]\ntick = 0.05\nwarn_errors_per_s = 0.5\ncritical_errors_per_s = 1\n'],
)
async def test_errors_past_the_threshold_make_it_critical_and_not_ready(
    agent: localagent.Server,
) -> None:
    port = port_of(agent)
    assert (await http_get(port, "/readyz")).status == 200
    async with localagent.Client(agent.url, agent.token_file.get()) as client:

        async def critical() -> bool:
            with pytest.raises(localagent.ReplyError):
                await client.request("boom")
            return bool((await snapshot(agent))["health"]["status"] == "critical")

        await until(critical)
    data = await snapshot(agent)
    assert any("errors/s" in reason for reason in data["health"]["reasons"])
    assert 0 <= data["health"]["healthy_share"] < 1
    reply = await http_get(port, "/readyz")
    assert reply.status == 503 and reply.body.startswith(b"critical: errors/s")
    assert (await http_get(port, "/livez")).status == 200  # alive all the same


# -- endpoints and their security ---------------------------------------------


#: The test's ``[plugins.monitor]`` table: endpoints on the agent's port, or on one of their own.
ON_THE_AGENTS_PORT = 'types = ["echo"]\ntick = 0.05\n'
ON_ITS_OWN_PORT = 'port = 0\ntypes = ["echo"]\ntick = 0.05\n'
both_ports = pytest.mark.parametrize(
    "monitor_config", [ON_THE_AGENTS_PORT, ON_ITS_OWN_PORT], ids=["agent-port", "own-port"]
)
PROTECTED = ("/performance", "/performance.json", "/metrics")
PROBES = ("/livez", "/readyz")


async def test_the_endpoints_answer_on_the_agents_own_port(agent: localagent.Server) -> None:
    assert plugin_of(agent).monitor is not None
    assert plugin_of(agent).monitor.port is None  # type: ignore[union-attr]
    assert port_of(agent) == agent.port
    reply = await http_get(agent.port, "/metrics", token=agent.token_file.get())
    assert reply.status == 200 and b"localagent_connections_total" in reply.body
    async with localagent.Client(agent.url, agent.token_file.get()) as client:  # and WebSockets
        assert await client.request("echo", 1) == {"data": 1}


def test_two_agents_side_by_side_with_defaults_both_serve_metrics(
    localagent_config_dir: Path,
) -> None:
    # Before the endpoints moved onto the agent's port, the second agent lost its
    # monitor to "address already in use" on 8080.
    env = {**os.environ, "LOCALAGENT_LOAD_PLUGINS": "monitor"}
    with (
        running_agent(env, config_dir=localagent_config_dir) as first,
        running_agent(env, config_dir=localagent_config_dir) as second,
    ):
        ports = [int(agent.url.rsplit(":", 1)[1]) for agent in (first, second)]
        assert ports[0] != ports[1]
        for agent, port in zip((first, second), ports, strict=True):
            reply = asyncio.run(http_get(port, "/metrics", token=agent.token))
            assert reply.status == 200, agent.output
            families = {f.name for f in text_string_to_metric_families(reply.body.decode())}
            assert "localagent_connections" in families
            assert "monitor listening on the agent's port" in agent.output
            assert "address already in use" not in agent.output.lower()


@both_ports
async def test_the_token_protects_everything_but_livez_and_readyz(agent: localagent.Server) -> None:
    port, token = port_of(agent), agent.token_file.get()
    for path in PROTECTED:
        missing = await http_get(port, path)
        assert missing.status == 401, path
        assert missing.headers["www-authenticate"] == "Bearer"
        assert (await http_get(port, path, token="wrong")).status == 401, path
        assert (await http_get(port, path, token=token)).status == 200, path
        assert (await http_get(port, f"{path}?token={token}")).status == 200, path
        assert token.encode() not in missing.body
    assert (await http_get(port, "/livez")).body == b"ok\n"
    assert (await http_get(port, "/readyz")).body == b"healthy\n"


@pytest.mark.parametrize(
    "monitor_config",
    ["open_metrics = true\n", "port = 0\nopen_metrics = true\n"],
    ids=["agent-port", "own-port"],
)
async def test_open_metrics_opens_metrics_only(agent: localagent.Server) -> None:
    port = port_of(agent)
    assert (await http_get(port, "/metrics")).status == 200
    assert (await http_get(port, "/performance.json")).status == 401
    assert (await http_get(port, "/metrics", host="evil.example")).status == 403


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("no token", {}),
        ("a wrong token", {"Authorization": "Bearer wrong"}),
        ("a foreign Origin", {"Origin": "http://evil.example", "Authorization": "TOKEN"}),
        ("the agent's own address as Origin", {"Origin": "ORIGIN", "Authorization": "TOKEN"}),
        ("a rebinding Host", {"Host": "evil.example", "Authorization": "TOKEN"}),
    ],
)
async def test_refused_on_the_agents_port_as_the_websocket_handshake_would_be(
    agent: localagent.Server, case: str, headers: dict[str, str]
) -> None:
    port, token = agent.port, agent.token_file.get()
    values = {"TOKEN": f"Bearer {token}", "ORIGIN": f"http://127.0.0.1:{port}"}
    sent = {"Host": f"127.0.0.1:{port}", **{k: values.get(v, v) for k, v in headers.items()}}
    handshake = await handshake_status(port, sent)
    assert handshake in (401, 403), case
    for path in PROTECTED + PROBES:
        reply = await http_raw(port, _request(path, sent))
        if path in PROBES and handshake == 401:
            assert reply.status == 200, (case, path)  # probes need no token ...
        else:
            assert reply.status == handshake, (case, path)  # ... but Host and Origin, yes
        assert token.encode() not in reply.body


def _request(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("monitor_config", [ON_ITS_OWN_PORT])
async def test_its_own_port_checks_host_and_origin_as_the_websocket_does(
    agent: localagent.Server,
) -> None:
    port, token = port_of(agent), agent.token_file.get()
    assert port != agent.port
    for path in ("/livez", "/performance.json"):
        rebinding = await http_get(port, path, token=token, host=f"evil.example:{port}")
        assert rebinding.status == 403 and rebinding.body == b"Host not allowed\n"
    assert (await http_get(port, "/livez", host=f"localhost:{port}")).status == 200
    foreign = await http_get(
        port, "/performance.json", token=token, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status == 403
    own = await http_get(
        port, "/performance.json", token=token, headers={"Origin": f"http://127.0.0.1:{port}"}
    )
    assert own.status == 200


@both_ports
async def test_the_dashboard_is_locked_down(agent: localagent.Server) -> None:
    port, token = port_of(agent), agent.token_file.get()
    page = await http_get(port, "/performance", token=token)
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.body.decode()
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    again = await http_get(port, "/performance", token=token)
    assert again.headers["content-security-policy"] != csp  # a fresh nonce per response
    assert token.encode() not in page.body


@both_ports
async def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    agent: localagent.Server,
) -> None:
    port, token = port_of(agent), agent.token_file.get()
    unknown = await http_get(port, "/nope", token=token)
    # Off the routes: the agent's port answers as a WebSocket endpoint does, its own 404.
    assert unknown.status == (426 if port == agent.port else 404)
    post = await http_get(port, "/metrics", token=token, method="POST")
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD"
    no_host = await http_raw(port, b"GET /livez HTTP/1.1\r\n\r\n")
    assert no_host.status == 403 and no_host.body == b"Host not allowed\n"
    assert (await http_raw(port, b"\x16\x03\x01garbage\r\n\r\n")).status == 0  # closed
    huge = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n"
    assert (await http_raw(port, huge)).status == 431
    body = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    assert (await http_raw(port, body)).status == 0  # no request bodies: closed
    head = await http_get(port, "/livez", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "3"
    assert (await http_get(port, "/performance.json", token=token)).status == 200


async def _stuck_connections(port: int, count: int) -> list[tuple[Any, Any]]:
    """``count`` connections each stuck in the middle of its request line (slowloris)."""
    stuck = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /livez HT")
        await writer.drain()
        stuck.append((reader, writer))
    return stuck


@pytest.mark.parametrize("monitor_config", [ON_ITS_OWN_PORT])
async def test_half_open_connections_neither_starve_real_requests_nor_stay(
    agent: localagent.Server,
) -> None:
    # On the monitor's own port: more half-open connections than the hand-written
    # server it replaced served at once. A real request is still answered, and
    # each stuck one is closed once its OPEN_TIMEOUT runs out.
    port = port_of(agent)
    stuck = await _stuck_connections(port, 100)
    try:
        async with asyncio.timeout(10):  # a hang guard, not a measurement
            assert (await http_get(port, "/livez")).status == 200
            assert (await http_get(port, "/readyz")).status == 200
        async with asyncio.timeout(60):
            answers = [await reader.read() for reader, _writer in stuck]  # until closed
        assert answers == [b""] * len(stuck)  # closed, unanswered
    finally:
        for _reader, writer in stuck:
            writer.close()
    assert (await http_get(port, "/livez")).status == 200


async def test_half_open_connections_do_not_starve_livez_on_the_agents_port(
    agent: localagent.Server,
) -> None:
    stuck = await _stuck_connections(agent.port, 100)
    try:
        async with asyncio.timeout(10):  # a hang guard, not a measurement
            assert (await http_get(agent.port, "/livez")).status == 200
            assert (await http_get(agent.port, "/readyz")).status == 200
    finally:
        for _reader, writer in stuck:
            writer.close()


# -- loading -------------------------------------------------------------------


async def test_a_taken_port_fails_the_plugin_by_name_and_the_agent_serves_on(
    localagent_config_dir: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(localagent_config_dir, f"port = {port}\n")
        server = localagent.Server.create(port=0, options=["monitor"])
        async with server:
            info = server.runtime.plugins.info("monitor")
            assert info is not None and not info.registered
            assert info.error is not None and f"cannot listen on 127.0.0.1:{port}" in info.error
            async with localagent.Client(server.url, server.token_file.get()) as client:
                assert await client.request("ping") == {"pong": True}


def test_when_the_agents_port_is_taken_the_monitor_never_starts(
    localagent_config_dir: Path,
) -> None:
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        agent_port = taken.getsockname()[1]
        probe.bind(("127.0.0.1", 0))  # a free port for the monitor, released just below
        monitor_port = probe.getsockname()[1]
        probe.close()
        write_config(localagent_config_dir, f"port = {monitor_port}\n")
        env = {**os.environ, "LOCALAGENT_LOAD_PLUGINS": "monitor"}
        result = subprocess.run(
            [sys.executable, "-m", "localagent", "serve", "--port", str(agent_port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{agent_port}" in result.stderr
    assert "monitor listening" not in result.stderr, result.stderr


async def test_a_bad_setting_fails_the_plugin_naming_the_key(localagent_config_dir: Path) -> None:
    write_config(localagent_config_dir, "tick = -1\n")
    server = localagent.Server.create(port=0, options=["monitor"])
    async with server:
        info = server.runtime.plugins.info("monitor")
        assert info is not None and info.error is not None and "tick" in info.error


def test_plugins_list_and_help_do_not_import_prometheus_client(
    localagent_config_dir: Path,
) -> None:
    env = {**os.environ, "LOCALAGENT_LOAD_PLUGINS": "monitor"}
    for args in (["plugins", "list"], ["--help"], ["serve", "--help"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "localagent", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
        if args == ["plugins", "list"]:  # it does import the plugin, just not its endpoints
            assert any(name.startswith("localagent_monitor") for name in imported)
            assert "localagent_monitor._monitor" not in imported
        assert not {name for name in imported if name.startswith("prometheus_client")}, args


def test_serve_monitor_port_sets_the_port(localagent_config_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "LOCALAGENT_LOAD_PLUGINS": "monitor"}
    with running_agent(env, "--monitor-port", str(port), config_dir=localagent_config_dir) as agent:
        import asyncio

        reply = asyncio.run(http_get(port, "/livez"))
        assert reply.status == 200
        assert f"monitor listening on http://127.0.0.1:{port}" in agent.output
        assert agent.token not in agent.output


@pytest.mark.parametrize("monitor_config", ['allowed_hosts = ["box.local"]\n'])
async def test_settings_of_its_own_port_without_one_are_named_in_a_warning(
    agent: localagent.Server, caplog: pytest.LogCaptureFixture
) -> None:
    warnings = [r.getMessage() for r in caplog.get_records("setup") if r.levelname == "WARNING"]
    assert any("host and allowed_hosts apply to a port of the monitor's own" in w for w in warnings)
    reply = await http_get(agent.port, "/livez", host="box.local")
    assert reply.status == 403  # on the agent's port, the agent's Host rules apply
