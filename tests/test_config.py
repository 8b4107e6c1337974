"""Unit tests for settings loading and config edits (localagent._config)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from localagent._config import (
    CONFIG_FILE_NAME,
    ServerSettings,
    config_dir,
    load_settings,
    set_plugin_enabled,
)
from localagent.exceptions import ConfigError


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE_NAME
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- defaults


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    settings = load_settings(directory=tmp_path / "missing", environ={})
    assert settings.config_dir == tmp_path / "missing"
    assert settings.config_file == tmp_path / "missing" / CONFIG_FILE_NAME
    assert settings.server == ServerSettings()
    server = settings.server
    assert server.host == "127.0.0.1"
    assert server.port == 8765
    assert server.allow_remote is False
    assert server.origins == ()
    assert server.allowed_hosts == ()
    assert server.max_message_size == 1 << 20
    assert server.max_in_flight == 64
    assert server.compression is False
    assert server.ping_interval == 20.0
    assert server.ping_timeout == 20.0
    assert server.open_timeout == 10.0
    assert server.shutdown_grace == 5.0
    assert settings.plugins == {}
    assert settings.disabled_plugins == frozenset()
    assert settings.plugin_config("anything") == {}


def test_default_directory_comes_from_the_environment(isolated_env: Path) -> None:
    assert config_dir() == isolated_env
    write_config(isolated_env, "[server]\nport = 1234\n")
    settings = load_settings(environ={})
    assert settings.config_dir == isolated_env
    assert settings.server.port == 1234


def test_environ_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALAGENT_PORT", "4321")
    assert load_settings(directory=tmp_path).server.port == 4321


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "# nothing yet\n")
    assert load_settings(directory=tmp_path, environ={}).server == ServerSettings()


# --------------------------------------------------------------------------- file values


def test_file_values(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
[server]
host = "0.0.0.0"
port = 9000
allow_remote = true
origins = ["http://localhost:3000", "https://app.example"]
allowed_hosts = "agent.internal, other.internal"
max_message_size = 4096
max_in_flight = 8
compression = true
ping_interval = "off"
ping_timeout = 3.5
open_timeout = 2
shutdown_grace = 0

[plugins.fs]
root = "/srv"
enabled = true
""",
    )
    settings = load_settings(directory=tmp_path, environ={})
    assert settings.server == ServerSettings(
        host="0.0.0.0",
        port=9000,
        allow_remote=True,
        origins=("http://localhost:3000", "https://app.example"),
        allowed_hosts=("agent.internal", "other.internal"),
        max_message_size=4096,
        max_in_flight=8,
        compression=True,
        ping_interval=None,
        ping_timeout=3.5,
        open_timeout=2.0,
        shutdown_grace=0.0,
    )
    assert settings.plugins == {"fs": {"root": "/srv", "enabled": True}}
    assert settings.disabled_plugins == frozenset()


# --------------------------------------------------------------------------- precedence


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, '[server]\nport = 9000\nhost = "127.0.0.2"\nmax_in_flight = 5\n')
    environ = {
        "LOCALAGENT_PORT": "9100",
        "LOCALAGENT_ALLOW_REMOTE": "yes",
        "LOCALAGENT_ORIGINS": "http://a.example, http://b.example,",
        "LOCALAGENT_PING_INTERVAL": "none",
        "LOCALAGENT_COMPRESSION": "0",
        "UNRELATED": "x",
    }
    server = load_settings(directory=tmp_path, environ=environ).server
    assert server.port == 9100
    assert server.allow_remote is True
    assert server.origins == ("http://a.example", "http://b.example")
    assert server.ping_interval is None
    assert server.compression is False
    # Not overridden: the file's values stay.
    assert server.host == "127.0.0.2"
    assert server.max_in_flight == 5


def test_overrides_win_over_environment_and_file(tmp_path: Path) -> None:
    write_config(tmp_path, "[server]\nport = 9000\nmax_in_flight = 5\n")
    environ = {"LOCALAGENT_PORT": "9100", "LOCALAGENT_HOST": "127.0.0.3"}
    server = load_settings(
        directory=tmp_path,
        environ=environ,
        overrides={"port": 9200, "host": None, "max_in_flight": None},
    ).server
    assert server.port == 9200
    assert server.host == "127.0.0.3"  # None overrides are ignored
    assert server.max_in_flight == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("On", True), ("YES", True), ("0", False), ("off", False)],
)
def test_boolean_spellings_in_the_environment(tmp_path: Path, value: str, expected: bool) -> None:
    environ = {"LOCALAGENT_ALLOW_REMOTE": value}
    assert load_settings(directory=tmp_path, environ=environ).server.allow_remote is expected


# --------------------------------------------------------------------------- errors


def test_invalid_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nport = "abc"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(directory=tmp_path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: server.port = 'abc'")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("port", "70000", "between 0 and 65535"),
        ("port", "-1", "between 0 and 65535"),
        ("max_in_flight", "0", "must be positive"),
        ("max_message_size", "-5", "must be positive"),
        ("ping_interval", "0", "must be positive"),
        ("open_timeout", "0", "must be positive"),
        ("allow_remote", '"maybe"', "true or false"),
        ("compression", "1", "true or false"),
        ("origins", "[1, 2]", "list of strings"),
        ("port", "true", "integer"),
    ],
)
def test_invalid_file_values(tmp_path: Path, key: str, value: str, fragment: str) -> None:
    path = write_config(tmp_path, f"[server]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=re.escape(fragment)) as caught:
        load_settings(directory=tmp_path, environ={})
    assert str(caught.value).startswith(f"{path}: server.{key} = ")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOCALAGENT_PORT", "eighty"),
        ("LOCALAGENT_PORT", "99999"),
        ("LOCALAGENT_MAX_IN_FLIGHT", "0"),
        ("LOCALAGENT_ALLOW_REMOTE", "maybe"),
        ("LOCALAGENT_PING_TIMEOUT", "soon"),
    ],
)
def test_invalid_environment_value_names_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(directory=tmp_path, environ={variable: value})
    assert str(caught.value).startswith(f"${variable} = {value!r}: ")


def test_environment_error_wins_over_a_valid_file_value(tmp_path: Path) -> None:
    write_config(tmp_path, "[server]\nport = 9000\n")
    with pytest.raises(ConfigError, match=r"^\$LOCALAGENT_PORT = 'x': "):
        load_settings(directory=tmp_path, environ={"LOCALAGENT_PORT": "x"})


def test_valid_environment_value_hides_an_invalid_file_value(tmp_path: Path) -> None:
    write_config(tmp_path, '[server]\nport = "bad"\n')
    assert load_settings(directory=tmp_path, environ={"LOCALAGENT_PORT": "1"}).server.port == 1


@pytest.mark.parametrize(
    ("key", "value", "flag"),
    [
        ("port", -1, "--port"),
        ("max_in_flight", 0, "--max-in-flight"),
        ("ping_interval", -2.0, "--ping-interval"),
        ("allow_remote", "perhaps", "--allow-remote"),
    ],
)
def test_invalid_override_names_the_flag(
    tmp_path: Path, key: str, value: object, flag: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(directory=tmp_path, environ={}, overrides={key: value})
    assert str(caught.value).startswith(f"{flag} = {value!r}: ")


def test_unknown_server_key_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nprot = 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(directory=tmp_path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown setting server.prot")
    assert "port" in message  # lists the known settings


def test_unknown_table_is_an_error(tmp_path: Path) -> None:
    write_config(tmp_path, "[sever]\nport = 9000\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_settings(directory=tmp_path, environ={})


@pytest.mark.parametrize(
    "text",
    ["[server\nport = 1\n", "[server]\nport = \n", "[server]\nport = 1\nport = 2\n", "x = 'a"],
    ids=["header", "missing-value", "duplicate-key", "unterminated-string"],
)
def test_invalid_toml_is_an_error(tmp_path: Path, text: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(directory=tmp_path, environ={})
    assert str(caught.value).startswith(f"{path}: invalid TOML: ")


def test_server_must_be_a_table(tmp_path: Path) -> None:
    write_config(tmp_path, 'server = "localhost"\n')
    with pytest.raises(ConfigError, match="'server' must be a table"):
        load_settings(directory=tmp_path, environ={})


@pytest.mark.parametrize("text", ["plugins = 1\n", "[plugins]\nfs = true\n"])
def test_plugins_must_hold_tables(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=r"\[plugins.NAME\]"):
        load_settings(directory=tmp_path, environ={})


def test_plugin_enabled_must_be_a_boolean(tmp_path: Path) -> None:
    write_config(tmp_path, '[plugins.fs]\nenabled = "no"\n')
    with pytest.raises(ConfigError, match=r"plugins\.fs\.enabled must be true or false"):
        load_settings(directory=tmp_path, environ={})


def test_fractional_integer_setting_is_an_error(tmp_path: Path) -> None:
    write_config(tmp_path, "[server]\nport = 8765.9\n")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(directory=tmp_path, environ={})


# --------------------------------------------------------------------------- plugin tables


def test_disabled_plugins_and_plugin_config(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
[plugins.fs]
enabled = false
root = "/srv"

[plugins.shell]
enabled = true
allow = ["ls"]

[plugins.redis]
url = "redis://localhost"
""",
    )
    settings = load_settings(directory=tmp_path, environ={})
    assert settings.disabled_plugins == frozenset({"fs"})
    assert settings.plugin_config("fs") == {"root": "/srv"}
    assert settings.plugin_config("shell") == {"allow": ["ls"]}
    assert settings.plugin_config("redis") == {"url": "redis://localhost"}
    assert settings.plugin_config("absent") == {}
    # plugin_config() is a copy: the settings keep their "enabled" switch.
    assert settings.plugins["fs"]["enabled"] is False


# --------------------------------------------------------------------------- set_plugin_enabled

COMMENTED = """\
# My agent configuration.
[server]
port = 9000  # the port I use

[plugins.fs]
# Where the fs plugin may read.
root = "/srv"
"""


def test_disable_writes_enabled_false_and_keeps_comments(tmp_path: Path) -> None:
    path = write_config(tmp_path, COMMENTED)
    assert set_plugin_enabled(tmp_path, "fs", False) == path
    text = path.read_text(encoding="utf-8")
    assert "# My agent configuration." in text
    assert "port = 9000  # the port I use" in text
    assert "# Where the fs plugin may read." in text
    assert tomllib.loads(text)["plugins"]["fs"] == {"root": "/srv", "enabled": False}
    settings = load_settings(directory=tmp_path, environ={})
    assert settings.disabled_plugins == frozenset({"fs"})
    assert settings.plugin_config("fs") == {"root": "/srv"}
    assert settings.server.port == 9000
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_FILE_NAME]  # no temp file left


def test_reenable_removes_the_key_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write_config(tmp_path, COMMENTED)
    set_plugin_enabled(tmp_path, "fs", False)
    set_plugin_enabled(tmp_path, "fs", True)
    text = path.read_text(encoding="utf-8")
    assert "enabled" not in text
    assert "# Where the fs plugin may read." in text
    assert "# My agent configuration." in text
    assert tomllib.loads(text)["plugins"]["fs"] == {"root": "/srv"}
    assert load_settings(directory=tmp_path, environ={}).disabled_plugins == frozenset()


def test_reenable_drops_a_table_that_only_held_the_switch(tmp_path: Path) -> None:
    path = write_config(tmp_path, COMMENTED)
    set_plugin_enabled(tmp_path, "other", False)
    assert tomllib.loads(path.read_text())["plugins"]["other"] == {"enabled": False}
    assert load_settings(directory=tmp_path, environ={}).disabled_plugins == {"other"}
    set_plugin_enabled(tmp_path, "other", True)
    document = tomllib.loads(path.read_text())
    assert "other" not in document["plugins"]
    assert document["plugins"]["fs"] == {"root": "/srv"}
    assert "# My agent configuration." in path.read_text()


def test_disable_creates_the_directory_and_file(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "dir"
    path = set_plugin_enabled(directory, "fs", False)
    assert path == directory / CONFIG_FILE_NAME
    assert tomllib.loads(path.read_text()) == {"plugins": {"fs": {"enabled": False}}}
    assert load_settings(directory=directory, environ={}).disabled_plugins == {"fs"}


def test_enabling_an_unknown_plugin_without_a_file_leaves_nothing_disabled(
    tmp_path: Path,
) -> None:
    path = set_plugin_enabled(tmp_path, "fs", True)
    assert tomllib.loads(path.read_text()).get("plugins", {}) == {}
    assert load_settings(directory=tmp_path, environ={}).disabled_plugins == frozenset()


def test_disable_is_idempotent(tmp_path: Path) -> None:
    path = write_config(tmp_path, COMMENTED)
    set_plugin_enabled(tmp_path, "fs", False)
    once = path.read_text()
    set_plugin_enabled(tmp_path, "fs", False)
    assert path.read_text() == once


def test_dotted_plugin_name_is_one_key(tmp_path: Path) -> None:
    set_plugin_enabled(tmp_path, "acme.fs", False)
    settings = load_settings(directory=tmp_path, environ={})
    assert settings.disabled_plugins == {"acme.fs"}


def test_set_plugin_enabled_on_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[plugins\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        set_plugin_enabled(tmp_path, "fs", False)
    assert path.read_text() == "[plugins\n"  # left untouched


def test_plugin_overrides_merge_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[plugins.batching]\nmax_batch = 10\ninterval = 0.001\n", encoding="utf-8"
    )
    settings = load_settings(
        directory=tmp_path,
        environ={},
        overrides={"batching.max_batch": 99, "monitor.port": 9100, "port": 0, "x.y": None},
    )
    assert settings.plugin_config("batching") == {"max_batch": 99, "interval": 0.001}
    assert settings.plugin_config("monitor") == {"port": 9100}
    assert "x" not in settings.plugins
    assert settings.server.port == 0


@pytest.mark.parametrize("key", [".port", "monitor.", "batching.enabled"])
def test_bad_plugin_overrides_are_config_errors(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError):
        load_settings(directory=tmp_path, environ={}, overrides={key: "nope"})
