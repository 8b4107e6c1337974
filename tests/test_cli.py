"""The ``localagent`` CLI, run as real subprocesses against a real agent."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from .helpers import imported_by, localagent_cmd, running_agent


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        localagent_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip(), "a failure must say why"


def test_version_and_help(subprocess_env: dict[str, str]) -> None:
    version = run(subprocess_env, "--version")
    assert version.returncode == 0
    assert "localagent, version 0.1.0" in version.stdout
    help_text = run(subprocess_env, "--help").stdout
    for command in ("serve", "send", "plugins", "token"):
        assert command in help_text


def test_serve_and_send(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env) as agent:
        env = {**subprocess_env, "LOCALAGENT_URL": agent.url}
        pong = run(env, "send", "ping")
        assert pong.returncode == 0, pong.stderr
        assert json.loads(pong.stdout) == {"pong": True}
        echoed = run(env, "send", "echo", '{"hello": ["world", 1]}')
        assert json.loads(echoed.stdout) == {"data": {"hello": ["world", 1]}}
        unknown = run(env, "send", "no.such.type")
        assert_clean_failure(unknown, 1)
        assert "unknown_type" in unknown.stderr
        not_json = run(env, "send", "echo", "{nope")
        assert_clean_failure(not_json, 2)
        assert "must be JSON" in not_json.stderr
        token = run(env, "token").stdout.strip()
    assert token and token not in agent.output


def test_send_with_url_flag_and_wrong_token(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env) as agent:
        ok = run(subprocess_env, "send", "--url", agent.url, "ping")
        assert json.loads(ok.stdout) == {"pong": True}
        env = {**subprocess_env, "LOCALAGENT_TOKEN": "not-the-token"}
        refused = run(env, "send", "--url", agent.url, "ping")
        assert_clean_failure(refused, 3)
        assert "401" in refused.stderr


def test_send_to_nothing_is_a_clean_error(subprocess_env: dict[str, str]) -> None:
    result = run(subprocess_env, "send", "--url", "ws://127.0.0.1:9", "ping")
    assert_clean_failure(result, 3)
    assert "localagent serve" in result.stderr


def test_plugins_list_json(subprocess_env: dict[str, str]) -> None:
    result = run(subprocess_env, "plugins", "list", "--all", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert {"ping", "echo"} <= set(plugins)
    ping = plugins["ping"]
    for key in ("name", "distribution", "version", "hooks", "enabled", "import_ms", "error"):
        assert key in ping
    assert ping["hooks"] == ["on_message"]
    assert ping["handles"] == ["ping"]
    assert ping["enabled"] is True and ping["error"] is None
    assert ping["import_ms"] is not None
    human = run(subprocess_env, "plugins", "list", "--all")
    assert "ping" in human.stdout and "enabled" in human.stdout
    only_third_party = run(subprocess_env, "plugins", "list", "--json")
    assert all(not p["builtin"] for p in json.loads(only_third_party.stdout))


def test_disable_and_enable_persist_across_processes(
    subprocess_env: dict[str, str], isolated_env: Path
) -> None:
    disabled = run(subprocess_env, "plugins", "disable", "echo")
    assert disabled.returncode == 0, disabled.stderr
    assert "enabled = false" in (isolated_env / "config.toml").read_text()
    listed = json.loads(run(subprocess_env, "plugins", "list", "--all", "--json").stdout)
    echo = next(p for p in listed if p["name"] == "echo")
    assert echo["enabled"] is False and echo["hooks"] == []
    with running_agent(subprocess_env) as agent:
        env = {**subprocess_env, "LOCALAGENT_URL": agent.url}
        assert "unknown_type" in run(env, "send", "echo", "1").stderr
    # -p NAME enables it for one run without touching the file.
    with running_agent(subprocess_env, "-p", "echo") as agent:
        env = {**subprocess_env, "LOCALAGENT_URL": agent.url}
        assert json.loads(run(env, "send", "echo", "1").stdout) == {"data": 1}
    assert run(subprocess_env, "plugins", "enable", "echo").returncode == 0
    listed = json.loads(run(subprocess_env, "plugins", "list", "--all", "--json").stdout)
    assert next(p for p in listed if p["name"] == "echo")["enabled"] is True


def test_per_run_disable(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env, "-p", "no:ping") as agent:
        env = {**subprocess_env, "LOCALAGENT_URL": agent.url}
        assert "unknown_type" in run(env, "send", "ping").stderr
        assert json.loads(run(env, "send", "echo", "2").stdout) == {"data": 2}


def test_unknown_plugin_name_is_a_clean_error(subprocess_env: dict[str, str]) -> None:
    for command in ("enable", "disable", "info"):
        result = run(subprocess_env, "plugins", command, "no-such-plugin")
        assert_clean_failure(result)
        assert "no plugin named 'no-such-plugin'" in result.stderr


def test_plugins_info(subprocess_env: dict[str, str]) -> None:
    result = run(subprocess_env, "plugins", "info", "ping", "--json")
    info = json.loads(result.stdout)
    assert info["name"] == "ping" and info["module"] == "localagent.builtin.ping"
    human = run(subprocess_env, "plugins", "info", "echo")
    assert "handles:" in human.stdout and "echo" in human.stdout


def test_token_file_mode_and_rotation(subprocess_env: dict[str, str], isolated_env: Path) -> None:
    first = run(subprocess_env, "token").stdout.strip()
    path = Path(run(subprocess_env, "token", "--path").stdout.strip())
    assert path == isolated_env / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run(subprocess_env, "token").stdout.strip() == first
    rotated = run(subprocess_env, "token", "--rotate").stdout.strip()
    assert rotated != first and len(rotated) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == rotated


def test_non_loopback_bind_needs_a_flag(subprocess_env: dict[str, str]) -> None:
    result = run(subprocess_env, "serve", "--host", "0.0.0.0", "--port", "0")
    assert_clean_failure(result)
    assert "--allow-remote" in result.stderr


def test_non_loopback_bind_with_flag_warns(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env, "--host", "0.0.0.0", "--allow-remote") as agent:
        pass
    assert "non-loopback" in agent.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[server\nport = 1", "invalid TOML"),
        ("[server]\nmax_in_flight = 'many'", "server.max_in_flight"),
        ("[server]\nprot = 1", "unknown setting server.prot"),
    ],
)
def test_bad_config_is_a_clean_error(
    subprocess_env: dict[str, str], isolated_env: Path, content: str, expected: str
) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text(content)
    result = run(subprocess_env, "serve", "--port", "0")
    assert_clean_failure(result)
    assert expected in result.stderr


def test_bad_env_value_names_the_variable(subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "LOCALAGENT_MAX_IN_FLIGHT": "-3"}
    result = run(env, "serve", "--port", "0")
    assert_clean_failure(result)
    assert "$LOCALAGENT_MAX_IN_FLIGHT" in result.stderr


def test_port_in_use_is_a_clean_error(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env) as agent:
        port = agent.url.rsplit(":", 1)[1]
        result = run(subprocess_env, "serve", "--port", port)
    assert_clean_failure(result)
    assert "cannot listen" in result.stderr


def test_sigterm_stops_gracefully(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env) as agent:
        agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(20) == 0
    assert "shutting down" in agent.output


def test_config_dir_flag(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    env = {k: v for k, v in subprocess_env.items() if k != "LOCALAGENT_CONFIG_DIR"}
    result = run(env, "--config-dir", str(other), "token", "--path")
    assert result.stdout.strip() == str(other / "token")
    assert os.path.exists(other / "token")


def test_python_client_example(subprocess_env: dict[str, str]) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "python-client.py"
    with running_agent(subprocess_env) as agent:
        env = {**subprocess_env, "LOCALAGENT_URL": agent.url}
        result = subprocess.run(
            [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "{'pong': True}",
        "[{'data': 0}, {'data': 1}, {'data': 2}]",
    ]


def test_token_rotate_and_path_are_exclusive(subprocess_env: dict[str, str]) -> None:
    result = run(subprocess_env, "token", "--rotate", "--path")
    assert_clean_failure(result, 2)
    assert "cannot be used together" in result.stderr


def test_send_rejects_a_zero_timeout(subprocess_env: dict[str, str]) -> None:
    assert_clean_failure(run(subprocess_env, "send", "--timeout", "0", "ping"), 2)


def test_serve_banner_shows_plugin_times(subprocess_env: dict[str, str]) -> None:
    with running_agent(subprocess_env) as agent:
        pass
    assert "ping (import " in agent.output


#: What ``serve`` must not import before it listens: each is needed only by a
#: setting left unset (a config file, Redis) or by a first request of its kind.
DEFERRED_AT_START = {
    "tomllib": "config.toml (there is none)",
    "localagent._autopipeline": "the Redis store",
    "localagent._redis_cluster": "the Redis store",
    "localagent.builtin.exec._run": "the first exec request",
    "localagent.builtin.fs._write": "the first fs.write",
    # Values built at start are msgspec Structs: an attrs class takes ~0.5 ms to build.
    "attr": "nothing at start (off the start path: cluster entries, exec runs)",
}


def _imported(lines: list[str]) -> list[str]:
    """The modules named by ``-X importtime`` lines, in import order."""
    return [line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")]


def test_serve_imports_nothing_unused_before_listening(subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "PYTHONPROFILEIMPORTTIME": "1"}
    with running_agent(env) as agent:
        env["LOCALAGENT_URL"] = agent.url
        written = run(env, "send", "fs.write", '{"path": "a.txt", "content": "x"}')
        assert written.returncode == 0, written.stderr
        ran = run(env, "send", "exec", '{"argv": ["nothing-allowed"]}')
        assert "not_allowed" in ran.stderr
    lines = list(agent.lines)
    listening = next(i for i, line in enumerate(lines) if "listening on" in line)
    before = set(_imported(lines[:listening]))
    assert {name: why for name, why in DEFERRED_AT_START.items() if name in before} == {}
    # Not vacuous: the requests loaded what they needed, after the start.
    after = set(_imported(lines[listening:]))
    assert {"localagent.builtin.exec._run", "localagent.builtin.fs._write"} <= after


@pytest.mark.parametrize("args", [["--help"], ["plugins", "list", "--all"], ["token", "--path"]])
def test_commands_that_do_not_talk_websocket_do_not_import_it(
    subprocess_env: dict[str, str], args: list[str]
) -> None:
    assert imported_by(subprocess_env, args, ["websockets", "asyncio"]) == []


def test_serve_plugin_flag_for_a_disabled_plugin_fails_cleanly(
    subprocess_env: dict[str, str],
) -> None:
    result = run(subprocess_env, "serve", "--port", "0", "--batch-size", "5", "-p", "no:batching")
    assert_clean_failure(result, 2)
    assert "batching" in result.stderr
    assert "not installed or are disabled" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "nodot=1"], "expected NAME.KEY=VALUE"),
        (["--set", "batching.max_batch"], "expected NAME.KEY=VALUE"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_serve_rejects_bad_plugin_flags(
    subprocess_env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run(subprocess_env, "serve", "--port", "0", *args)
    assert_clean_failure(result, 2)
    assert expected in result.stderr


def test_serve_set_reaches_the_plugin(subprocess_env: dict[str, str]) -> None:
    # The batching plugin validates its table in on_load: a bad value given with
    # --set must reach it (and, under --strict, stop the agent with its message).
    args = ("--port", "0", "-p", "batching", "--strict", "--set", "batching.interval=-1")
    result = run(subprocess_env, "serve", *args)
    assert_clean_failure(result, 1)
    assert "interval must be a number >= 0" in result.stderr


@pytest.mark.parametrize("choice", ["asyncio", "auto"])
def test_serve_runs_on_the_loop_asked_for(subprocess_env: dict[str, str], choice: str) -> None:
    expected = "asyncio" if choice == "asyncio" or find_spec("uvloop") is None else "uvloop"
    with running_agent(subprocess_env, "--loop", choice) as agent:
        pong = run({**subprocess_env, "LOCALAGENT_URL": agent.url}, "send", "ping")
        assert json.loads(pong.stdout) == {"pong": True}
        assert f"loop: {expected}" in agent.output


def test_a_loop_that_is_not_installed_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from localagent._loop import loop_factory
    from localagent.exceptions import ConfigError

    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an absent uvloop imports as
    assert loop_factory("auto") is None  # auto falls back to asyncio's loop
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_an_unknown_loop_is_a_clean_error(subprocess_env: dict[str, str]) -> None:
    result = run({**subprocess_env, "LOCALAGENT_LOOP": "tokio"}, "serve", "--port", "0")
    assert_clean_failure(result, 1)  # an invalid setting, as documented in cli.md
    assert "loop must be one of auto, asyncio, uvloop" in result.stderr
