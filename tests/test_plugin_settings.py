"""Typed plugin settings: ``Settings.plugin_settings`` / ``agent.plugin_settings``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import msgspec
import pytest

import localagent
from localagent import hookimpl
from localagent._config import Settings, load_settings
from localagent._plugin_settings import settings_fields
from localagent.exceptions import ConfigError


@attrs.frozen(kw_only=True)
class Example:
    """A plugin's settings, as a plugin declares them."""

    size: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    rate: float = 0.5
    names: tuple[str, ...] = ()
    mode: Literal["auto", "never"] = "auto"
    env: Mapping[str, str] = attrs.field(factory=dict)
    root: Path | None = None
    limit: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.limit is not None and self.limit < self.size:
            raise ValueError(f"limit ({self.limit}) must be at least size ({self.size})")


class Struct(msgspec.Struct, frozen=True, kw_only=True):
    count: int = 1


@dataclasses.dataclass(frozen=True)
class Data:
    flag: bool = False


@attrs.frozen
class Required:
    url: str


def settings_of(table: Mapping[str, Any], overridden: frozenset[str] = frozenset()) -> Settings:
    return Settings(
        config_dir=Path("/cfg"), plugins={"demo": dict(table)}, plugin_overrides=overridden
    )


def convert(table: Mapping[str, Any], settings_type: type[Any] = Example) -> Any:
    return settings_of(table).plugin_settings("demo", settings_type)


def problem(table: Mapping[str, Any], settings_type: type[Any] = Example, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_of(table, **kwargs).plugin_settings("demo", settings_type)
    return str(caught.value)


def test_defaults_fill_missing_keys_and_values_are_converted() -> None:
    assert convert({}) == Example()
    value = convert(
        {
            "size": 8,
            "rate": 2,  # an integer is a fine float
            "names": ["a", "b"],  # a TOML array becomes the declared tuple
            "mode": "never",
            "env": {"A": "1"},
            "root": "~/work",
            "enabled": True,  # the switch is not the plugin's
        }
    )
    assert value == Example(
        size=8,
        rate=2.0,
        names=("a", "b"),
        mode="never",
        env={"A": "1"},
        root=Path("~/work").expanduser(),
    )
    assert isinstance(value.rate, float)


def test_msgspec_structs_and_dataclasses_are_settings_types_too() -> None:
    assert convert({"count": 3}, Struct) == Struct(count=3)
    assert convert({"flag": True}, Data) == Data(flag=True)
    assert list(settings_fields(Example))[:3] == ["size", "rate", "names"]


def test_an_unknown_key_is_named_with_the_file_and_the_known_keys() -> None:
    assert problem({"sise": 3}) == (
        "/cfg/config.toml: plugins.demo.sise: unknown setting "
        "(known: size, rate, names, mode, env, root, limit)"
    )
    assert problem({"a": 1, "b": 2}, Struct).startswith(
        "/cfg/config.toml: plugins.demo.a; /cfg/config.toml: plugins.demo.b: unknown settings"
    )


def test_a_plugin_without_settings_refuses_every_key() -> None:
    @attrs.frozen
    class NoSettings:
        pass

    assert convert({}, NoSettings) == NoSettings()
    assert "(known: none: plugin 'demo' has no settings)" in problem({"x": 1}, NoSettings)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"size": "8"}, "plugins.demo.size = '8': expected int, got str"),
        ({"size": True}, "plugins.demo.size = True: expected int, got bool"),
        ({"size": 1.5}, "plugins.demo.size = 1.5: expected int, got float"),
        ({"rate": "fast"}, "plugins.demo.rate = 'fast': expected float, got str"),
        ({"names": "a"}, "plugins.demo.names = 'a': expected array, got str"),
        ({"names": ["a", 1]}, "plugins.demo.names[1] = ['a', 1]: expected str, got int"),
        ({"mode": "always"}, "plugins.demo.mode = 'always': expected one of 'auto', 'never'"),
        ({"mode": 3}, "plugins.demo.mode = 3: expected str, got int"),
        ({"env": ["A=1"]}, "plugins.demo.env = ['A=1']: expected table, got array"),
        ({"root": ""}, "plugins.demo.root = '': expected a path (a non-empty string), got ''"),
        ({"limit": "none"}, "plugins.demo.limit = 'none': expected int, got str"),
        # the type's own validators: the key is found by trying each value alone
        ({"rate": 1, "size": 0}, "plugins.demo.size = 0: 'size' must be >= 1: 0"),
    ],
)
def test_a_bad_value_names_the_key_the_expected_type_and_the_file(
    table: dict[str, Any], message: str
) -> None:
    assert problem(table) == f"/cfg/config.toml: {message}"


def test_values_fine_alone_but_not_together_name_the_table() -> None:
    # size 6 alone is fine, limit 5 alone is fine (size defaults to 4): together they are not
    assert problem({"size": 6, "limit": 5}) == (
        "/cfg/config.toml: [plugins.demo]: limit (5) must be at least size (6)"
    )
    assert problem({"size": 6, "limit": 5}, overridden=frozenset({"demo.limit"})) == (
        "/cfg/config.toml: [plugins.demo] (with --set demo.limit): "
        "limit (5) must be at least size (6)"
    )


def test_a_missing_required_key_is_named() -> None:
    assert problem({}, Required) == "/cfg/config.toml: [plugins.demo]: url is required"
    assert convert({"url": "x"}, Required) == Required("x")


def test_an_override_is_named_as_the_flag_that_set_it(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[plugins.demo]\nsize = 2\n", encoding="utf-8")
    settings = load_settings(
        directory=tmp_path, environ={}, overrides={"demo.rate": "x", "demo.names": None}
    )
    assert settings.plugin_overrides == {"demo.rate"}
    with pytest.raises(ConfigError) as caught:
        settings.plugin_settings("demo", Example)
    assert str(caught.value) == "--set demo.rate = 'x': expected float, got str"
    settings = load_settings(directory=tmp_path, environ={}, overrides={"demo.rate": 3})
    assert settings.plugin_settings("demo", Example) == Example(size=2, rate=3.0)


def test_something_else_than_a_settings_type_is_the_plugins_mistake() -> None:
    with pytest.raises(TypeError, match="must be an attrs class, a dataclass or a msgspec"):
        convert({}, dict)


@pytest.fixture
def config_file(isolated_env: Path) -> Path:
    """A ``config.toml`` with a good and a bad table for the same settings type."""
    isolated_env.mkdir(parents=True, exist_ok=True)
    path = isolated_env / "config.toml"
    path.write_text("[plugins.good]\nsize = 9\n\n[plugins.bad]\nsize = 0\n", encoding="utf-8")
    return path


async def test_on_load_gets_typed_settings_and_a_bad_table_fails_only_that_plugin(
    config_file: Path,
) -> None:
    seen: list[Example] = []

    class Reader:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def on_load(self, agent: localagent.Agent) -> None:
            seen.append(agent.plugin_settings(self.name, Example))

    server = localagent.Server.create(
        port=0, extra_plugins={"good": Reader("good"), "bad": Reader("bad")}
    )
    await server.start()
    try:
        assert seen == [Example(size=9)]
        bad = server.runtime.plugins.info("bad")
        assert bad is not None and not bad.registered
        assert bad.error == (
            f"on_load failed: ConfigError: {config_file}: "
            "plugins.bad.size = 0: 'size' must be >= 1: 0"
        )
        good = server.runtime.plugins.info("good")
        assert good is not None and good.registered
    finally:
        await server.aclose()


@pytest.fixture
def tables_of_plugins_without_settings(isolated_env: Path) -> Path:
    isolated_env.mkdir(parents=True, exist_ok=True)
    path = isolated_env / "config.toml"
    path.write_text(
        "[plugins.kv]\ncolour = 1\n\n[plugins.ping]\nenabled = true\n\n"
        "[plugins.absent]\nx = 1\n\n[plugins.exec]\nallow = []\n",
        encoding="utf-8",
    )
    return path


async def test_a_key_in_the_table_of_a_plugin_without_settings_is_warned_about(
    tables_of_plugins_without_settings: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with localagent.Server.create(port=0):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    unread = [message for message in warnings if "has no settings" in message]
    # kv reads no settings; ping's table has only its switch; "absent" is not installed
    # (a shared config may name plugins this agent lacks); exec reads its table.
    assert unread == [
        f"{tables_of_plugins_without_settings}: plugins.kv.colour: "
        "plugin 'kv' has no settings; ignored"
    ]
