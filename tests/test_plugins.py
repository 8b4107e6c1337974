"""Unit tests for plugin discovery and loading (localagent._plugins.load_plugins).

Plugins are small modules written on the fly under ``tmp_path``; every module
gets a unique name and is removed from ``sys.modules`` afterwards.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from localagent_hookspecs import hookimpl

from localagent._dispatch import Dispatcher
from localagent._plugins import (
    BUILTIN_PLUGINS,
    LoadedPlugins,
    PluginInfo,
    PluginSpec,
    installed_plugins,
    load_plugins,
    parse_plugin_options,
)
from localagent._protocol import Message
from localagent.exceptions import PluginError

MakeModule = Callable[[str], str]

#: The built-in plugins' names, in registration order.
BUILTINS = [spec.name for spec in BUILTIN_PLUGINS]

#: A plugin whose only hook name is misspelt.
TYPO = """
from localagent_hookspecs import hookimpl

@hookimpl
def on_mesage(message):
    return "typo"
"""

GOOD = """
from localagent_hookspecs import handles, hookimpl

@hookimpl
@handles("{type}")
def on_message(message):
    return {{"from": __name__, "data": message.data}}
"""

RAISES_ON_IMPORT = """
raise RuntimeError("this module must never be imported")
"""


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write a module with a unique name under tmp_path; return its name."""
    directory = tmp_path / "plugin_modules"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    created: list[str] = []

    def make(source: str) -> str:
        name = f"la_test_plugin_{uuid.uuid4().hex}"
        (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def good(make_module: MakeModule, message_type: str = "thing") -> str:
    return make_module(GOOD.format(type=message_type))


def names(loaded: LoadedPlugins) -> list[str]:
    return [info.name for info in loaded.infos]


def registered(loaded: LoadedPlugins) -> set[str]:
    return {name for name, plugin in loaded.manager.list_name_plugin() if plugin is not None}


def info(loaded: LoadedPlugins, name: str) -> PluginInfo:
    found = loaded.info(name)
    assert found is not None, name
    return found


def dispatch(loaded: LoadedPlugins, message_type: str, data: object = None) -> object:
    return Dispatcher(loaded.manager).dispatch(object(), Message(1, message_type, data))


# --------------------------------------------------------------------------- built-ins


def test_builtins_are_registered(make_module: MakeModule) -> None:
    loaded = load_plugins(specs=[], environ={})
    assert names(loaded) == BUILTINS
    assert registered(loaded) == set(BUILTINS)
    assert loaded.errors == []
    ping = info(loaded, "ping")
    assert ping.spec is BUILTIN_PLUGINS[0]
    assert ping.spec.builtin
    assert ping.enabled and ping.registered
    assert ping.hooks == ("on_message",)
    assert ping.handles == ("ping",)
    assert info(loaded, "echo").handles == ("echo",)
    assert dispatch(loaded, "ping") == {"pong": True}
    assert dispatch(loaded, "echo", [1, 2]) == {"data": [1, 2]}


def test_builtins_load_with_the_test_environment() -> None:
    # conftest sets LOCALAGENT_LOAD_PLUGINS="": third-party plugins are off, built-ins stay.
    loaded = load_plugins(specs=[])
    assert registered(loaded) == set(BUILTINS)


def test_third_party_plugin_is_registered_after_builtins(make_module: MakeModule) -> None:
    module = good(make_module)
    spec = PluginSpec("thing", module, distribution="localagent-thing", version="1.2")
    loaded = load_plugins(specs=[spec], environ={})
    assert names(loaded) == [*BUILTINS, "thing"]
    thing = info(loaded, "thing")
    assert thing.registered and thing.enabled and thing.error is None
    assert thing.hooks == ("on_message",)
    assert thing.handles == ("thing",)
    assert loaded.manager.get_plugin("thing") is sys.modules[module]
    assert dispatch(loaded, "thing", 5) == {"from": module, "data": 5}


def test_module_attribute_spec(make_module: MakeModule) -> None:
    module = make_module(
        """
        from localagent_hookspecs import handles, hookimpl

        class Plugin:
            def __init__(self, answer):
                self.answer = answer

            @hookimpl
            @handles("answer")
            def on_message(self):
                return self.answer

        class holder:
            instance = Plugin(42)
        """
    )
    loaded = load_plugins(specs=[PluginSpec("obj", f"{module}:holder.instance")], environ={})
    assert info(loaded, "obj").error is None
    assert dispatch(loaded, "answer") == 42


def test_third_party_can_override_a_builtin_handler(make_module: MakeModule) -> None:
    module = good(make_module, "ping")
    loaded = load_plugins(specs=[PluginSpec("myping", module)], environ={})
    assert dispatch(loaded, "ping") == {"from": module, "data": None}


# --------------------------------------------------------------------------- failures


def test_import_failure_is_reported_and_others_load(make_module: MakeModule) -> None:
    before = good(make_module, "before")
    broken = make_module('raise RuntimeError("kaput")\n')
    after = good(make_module, "after")
    specs = [
        PluginSpec("before", before),
        PluginSpec("broken", broken),
        PluginSpec("after", after),
    ]
    loaded = load_plugins(specs=specs, environ={})
    assert [i.name for i in loaded.errors] == ["broken"]
    failed = info(loaded, "broken")
    assert failed.error == "import failed: RuntimeError: kaput"
    assert failed.enabled and not failed.registered
    assert failed.import_seconds is not None
    assert registered(loaded) == {*BUILTINS, "before", "after"}
    assert dispatch(loaded, "after") == {"from": after, "data": None}


def test_missing_module_and_missing_attribute(make_module: MakeModule) -> None:
    module = good(make_module)
    specs = [
        PluginSpec("nomodule", "la_test_no_such_module_anywhere"),
        PluginSpec("noattr", f"{module}:missing"),
    ]
    loaded = load_plugins(specs=specs, environ={})
    assert info(loaded, "nomodule").error.startswith("import failed: ModuleNotFoundError: ")
    assert info(loaded, "noattr").error.startswith("import failed: AttributeError: ")
    assert registered(loaded) == set(BUILTINS)


def test_strict_import_failure_raises(make_module: MakeModule) -> None:
    broken = make_module('raise RuntimeError("kaput")\n')
    with pytest.raises(PluginError, match="kaput") as caught:
        load_plugins(specs=[PluginSpec("broken", broken)], environ={}, strict=True)
    assert caught.value.plugin == "broken"
    assert str(caught.value).startswith("plugin 'broken': import failed")


def test_unknown_hook_is_an_error_and_the_plugin_is_not_registered(
    make_module: MakeModule,
) -> None:
    module = make_module(TYPO)
    loaded = load_plugins(specs=[PluginSpec("typo", module)], environ={})
    typo = info(loaded, "typo")
    assert typo.error == "unknown hook 'on_mesage'"
    assert not typo.registered
    assert typo.hooks == ()
    assert loaded.manager.get_plugin("typo") is None
    assert not loaded.manager.is_registered(sys.modules[module])
    assert registered(loaded) == set(BUILTINS)


def test_unknown_hook_in_strict_mode_raises_naming_plugin_and_hook(
    make_module: MakeModule,
) -> None:
    module = make_module(TYPO)
    with pytest.raises(PluginError) as caught:
        load_plugins(specs=[PluginSpec("typo", module)], environ={}, strict=True)
    assert caught.value.plugin == "typo"
    assert str(caught.value) == "plugin 'typo': unknown hook 'on_mesage'"


def test_hookwrapper_on_message_is_refused(make_module: MakeModule) -> None:
    module = make_module(
        """
        from localagent_hookspecs import hookimpl

        @hookimpl(hookwrapper=True)
        def on_message(message):
            yield
        """
    )
    loaded = load_plugins(specs=[PluginSpec("oldwrap", module)], environ={})
    oldwrap = info(loaded, "oldwrap")
    assert "hookwrapper=True" in oldwrap.error
    assert "wrapper=True" in oldwrap.error
    assert not oldwrap.registered
    assert loaded.manager.get_plugin("oldwrap") is None


def test_impl_with_unknown_argument_is_refused(make_module: MakeModule) -> None:
    module = make_module(
        """
        from localagent_hookspecs import hookimpl

        @hookimpl
        def on_message(message, bogus):
            return 1
        """
    )
    loaded = load_plugins(specs=[PluginSpec("badargs", module)], environ={})
    badargs = info(loaded, "badargs")
    assert "bogus" in badargs.error
    assert not badargs.registered
    assert registered(loaded) == set(BUILTINS)


def test_duplicate_names_are_reported(make_module: MakeModule) -> None:
    first, second = good(make_module, "one"), good(make_module, "two")
    specs = [PluginSpec("dup", first), PluginSpec("dup", second), PluginSpec("echo", second)]
    loaded = load_plugins(specs=specs, environ={})
    dups = [i for i in loaded.infos if i.name == "dup"]
    assert len(dups) == 2
    assert dups[0].registered and dups[0].error is None
    assert dups[1].error == "another plugin is already named 'dup'"
    assert not dups[1].registered
    assert dups[1].import_seconds is None  # never imported
    echoes = [i for i in loaded.infos if i.name == "echo"]
    assert echoes[0].registered
    assert echoes[1].error == "another plugin is already named 'echo'"
    assert second not in sys.modules
    assert loaded.manager.get_plugin("dup") is sys.modules[first]


def test_strict_duplicate_name_raises(make_module: MakeModule) -> None:
    module = good(make_module)
    with pytest.raises(PluginError, match="already named 'ping'"):
        load_plugins(specs=[PluginSpec("ping", module)], environ={}, strict=True)


def test_second_name_for_the_same_module_leaves_the_first_registered(
    make_module: MakeModule,
) -> None:
    module = good(make_module)
    specs = [PluginSpec("original", module), PluginSpec("alias", module)]
    loaded = load_plugins(specs=specs, environ={})
    assert info(loaded, "original").registered
    assert info(loaded, "alias").error is not None
    assert loaded.manager.get_plugin("original") is sys.modules[module]


# --------------------------------------------------------------------------- enabling


def test_disabled_in_config_is_never_imported(make_module: MakeModule) -> None:
    forbidden = make_module(RAISES_ON_IMPORT)
    allowed = good(make_module)
    loaded = load_plugins(
        disabled_in_config=["off"],
        specs=[PluginSpec("off", forbidden), PluginSpec("on", allowed)],
        environ={},
    )
    off = info(loaded, "off")
    assert not off.enabled
    assert not off.registered
    assert off.error is None
    assert off.import_seconds is None
    assert forbidden not in sys.modules
    assert loaded.errors == []
    assert info(loaded, "on").registered


def test_disabled_by_option_is_never_imported(make_module: MakeModule) -> None:
    forbidden = make_module(RAISES_ON_IMPORT)
    loaded = load_plugins(options=["no:off"], specs=[PluginSpec("off", forbidden)], environ={})
    assert not info(loaded, "off").enabled
    assert forbidden not in sys.modules
    assert loaded.errors == []


def test_builtin_can_be_disabled(make_module: MakeModule) -> None:
    loaded = load_plugins(options=["no:echo"], disabled_in_config=["ping"], specs=[], environ={})
    assert registered(loaded) == set(BUILTINS) - {"ping", "echo"}
    assert not info(loaded, "echo").enabled
    assert not info(loaded, "ping").enabled
    assert names(loaded) == BUILTINS  # still listed


def test_load_plugins_variable_empty_loads_no_third_party(make_module: MakeModule) -> None:
    first, second = make_module(RAISES_ON_IMPORT), make_module(RAISES_ON_IMPORT)
    loaded = load_plugins(
        specs=[PluginSpec("a", first), PluginSpec("b", second)],
        environ={"LOCALAGENT_LOAD_PLUGINS": ""},
    )
    assert registered(loaded) == set(BUILTINS)  # built-ins are not affected
    assert not info(loaded, "a").enabled
    assert not info(loaded, "b").enabled
    assert first not in sys.modules
    assert second not in sys.modules
    assert loaded.errors == []


@pytest.mark.parametrize("value", ["a", " a ", "a,", ",a,,zzz"])
def test_load_plugins_variable_loads_only_the_listed(make_module: MakeModule, value: str) -> None:
    wanted, unwanted = good(make_module), make_module(RAISES_ON_IMPORT)
    loaded = load_plugins(
        specs=[PluginSpec("a", wanted), PluginSpec("b", unwanted)],
        environ={"LOCALAGENT_LOAD_PLUGINS": value},
    )
    assert registered(loaded) == {*BUILTINS, "a"}
    assert info(loaded, "a").enabled
    assert not info(loaded, "b").enabled
    assert unwanted not in sys.modules
    assert loaded.errors == []


def test_load_plugins_variable_defaults_to_os_environ(
    make_module: MakeModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = good(make_module)
    spec = PluginSpec("a", module)
    assert "a" not in registered(load_plugins(specs=[spec]))  # conftest: ""
    monkeypatch.setenv("LOCALAGENT_LOAD_PLUGINS", "a")
    assert "a" in registered(load_plugins(specs=[spec]))
    monkeypatch.delenv("LOCALAGENT_LOAD_PLUGINS")
    assert "a" in registered(load_plugins(specs=[spec]))


def test_option_enables_a_config_disabled_plugin(make_module: MakeModule) -> None:
    module = good(make_module)
    loaded = load_plugins(
        disabled_in_config=["a"], options=["a"], specs=[PluginSpec("a", module)], environ={}
    )
    assert info(loaded, "a").enabled
    assert info(loaded, "a").registered


def test_option_enables_a_plugin_left_out_by_the_variable(make_module: MakeModule) -> None:
    module = good(make_module)
    loaded = load_plugins(
        options=["a"], specs=[PluginSpec("a", module)], environ={"LOCALAGENT_LOAD_PLUGINS": ""}
    )
    assert info(loaded, "a").registered


def test_disable_option_wins_over_enable_option(make_module: MakeModule) -> None:
    forbidden = make_module(RAISES_ON_IMPORT)
    loaded = load_plugins(options=["a", "no:a"], specs=[PluginSpec("a", forbidden)], environ={})
    assert not info(loaded, "a").enabled
    assert forbidden not in sys.modules


def test_parse_plugin_options() -> None:
    assert parse_plugin_options(["a", "no:b", "c", "no:a"]) == (
        frozenset({"a", "c"}),
        frozenset({"b", "a"}),
    )
    assert parse_plugin_options([]) == (frozenset(), frozenset())


# --------------------------------------------------------------------------- extra objects


def test_extra_objects_are_registered_by_name() -> None:
    from localagent_hookspecs import handles, hookimpl

    class Extra:
        @hookimpl
        @handles("extra")
        def on_message(self) -> str:
            return "extra!"

    loaded = load_plugins(specs=[], environ={}, extra={"embedded": Extra()})
    embedded = info(loaded, "embedded")
    assert embedded.registered and embedded.enabled
    assert embedded.handles == ("extra",)
    assert dispatch(loaded, "extra") == "extra!"


def test_extra_with_a_taken_name_is_reported() -> None:
    from localagent_hookspecs import hookimpl

    class Extra:
        @hookimpl
        def on_message(self) -> None:
            return None

    loaded = load_plugins(specs=[], environ={}, extra={"ping": Extra()})
    extras = [i for i in loaded.infos if i.name == "ping"]
    assert len(extras) == 2
    assert extras[1].error is not None
    assert not extras[1].registered
    assert dispatch(loaded, "ping") == {"pong": True}
    with pytest.raises(PluginError):
        load_plugins(specs=[], environ={}, extra={"ping": Extra()}, strict=True)


# --------------------------------------------------------------------------- info records


def test_plugin_info_to_json(make_module: MakeModule) -> None:
    module = good(make_module, "t1")
    spec = PluginSpec("thing", module, distribution="localagent-thing", version="1.2.3")
    loaded = load_plugins(specs=[spec], environ={})
    record = info(loaded, "thing").to_json()
    assert set(record) == {
        "name",
        "distribution",
        "version",
        "module",
        "builtin",
        "enabled",
        "registered",
        "hooks",
        "handles",
        "import_ms",
        "load_ms",
        "error",
        "cached",
    }
    assert record["name"] == "thing"
    assert record["distribution"] == "localagent-thing"
    assert record["version"] == "1.2.3"
    assert record["module"] == module
    assert record["builtin"] is False
    assert record["enabled"] is True
    assert record["registered"] is True
    assert record["hooks"] == ["on_message"]
    assert record["handles"] == ["t1"]
    assert isinstance(record["import_ms"], float)
    assert record["import_ms"] >= 0
    assert record["load_ms"] is None
    assert record["error"] is None
    assert record["cached"] is False  # imported now, not read from the plugin cache

    builtin = info(loaded, "ping").to_json()
    assert builtin["builtin"] is True
    assert builtin["distribution"] is None
    assert builtin["module"] == "localagent.builtin.ping"


def test_plugin_info_to_json_for_failures_and_disabled(make_module: MakeModule) -> None:
    broken = make_module('raise RuntimeError("kaput")\n')
    off = make_module(RAISES_ON_IMPORT)
    loaded = load_plugins(
        specs=[PluginSpec("broken", broken), PluginSpec("off", off)],
        disabled_in_config=["off"],
        environ={},
    )
    broken_json = info(loaded, "broken").to_json()
    assert broken_json["error"] == "import failed: RuntimeError: kaput"
    assert broken_json["registered"] is False
    assert broken_json["hooks"] == []
    off_json = info(loaded, "off").to_json()
    assert off_json["enabled"] is False
    assert off_json["import_ms"] is None
    assert off_json["error"] is None


def test_import_ms_is_rounded_milliseconds() -> None:
    record = PluginInfo(
        spec=PluginSpec("x", "x"), enabled=True, import_seconds=0.0123456, load_seconds=1.5
    ).to_json()
    assert record["import_ms"] == 12.346
    assert record["load_ms"] == 1500.0


def test_import_seconds_are_recorded(make_module: MakeModule) -> None:
    slow = make_module(
        """
        import time
        time.sleep(0.05)
        from localagent_hookspecs import hookimpl

        @hookimpl
        def on_message(message):
            return None
        """
    )
    fast = good(make_module)
    loaded = load_plugins(specs=[PluginSpec("slow", slow), PluginSpec("fast", fast)], environ={})
    slow_seconds = info(loaded, "slow").import_seconds
    fast_seconds = info(loaded, "fast").import_seconds
    assert slow_seconds is not None and slow_seconds >= 0.05
    assert fast_seconds is not None and 0 <= fast_seconds < slow_seconds
    assert info(loaded, "ping").import_seconds is not None
    assert info(loaded, "slow").to_json()["import_ms"] >= 50


def test_info_lookup() -> None:
    loaded = load_plugins(specs=[], environ={})
    assert loaded.info("ping") is loaded.infos[0]
    assert loaded.info("nope") is None


class _OnLoadWrapper:
    @hookimpl(wrapper=True)
    def on_load(self) -> Any:
        return (yield)


class _AsyncOnError:
    @hookimpl
    async def on_error(self) -> None:
        return None


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        (_OnLoadWrapper(), "on_load implementations cannot be wrappers"),
        (_AsyncOnError(), "on_error must be a plain function, not async"),
    ],
)
def test_hooks_the_runtime_calls_one_by_one_reject_what_would_be_ignored(
    plugin: object, expected: str
) -> None:
    loaded = load_plugins(specs=[], extra={"odd": plugin})
    info = loaded.info("odd")
    assert info is not None and not info.registered
    assert info.error == expected


# --------------------------------------------------------------------------- on_load concurrency


class _WaitsForAProcess:
    """An ``on_load`` that awaits real I/O: a child process that exits after 50 ms."""

    def __init__(self, index: int, events: list[tuple[str, int]]) -> None:
        self.index = index
        self.events = events

    @hookimpl
    async def on_load(self) -> None:
        self.events.append(("start", self.index))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(0.05)"
        )
        await process.wait()
        self.events.append(("finish", self.index))


async def test_on_load_io_of_five_plugins_overlaps(tmp_path: Path) -> None:
    from localagent._config import load_settings
    from localagent._runtime import AgentRuntime

    events: list[tuple[str, int]] = []
    plugins = {f"wait{index}": _WaitsForAProcess(index, events) for index in range(5)}
    loaded = load_plugins(specs=[], environ={}, extra=plugins)
    settings = load_settings(overrides={"port": 0, "workspace": str(tmp_path / "workspace")})
    runtime = AgentRuntime(settings, loaded, strict=True)
    await runtime.start()
    await runtime.aclose()
    # Run one after another, each would finish before the next starts; run
    # concurrently, all five are waiting on their process before any is done.
    assert [kind for kind, _index in events] == ["start"] * 5 + ["finish"] * 5
    assert sorted(index for kind, index in events if kind == "finish") == list(range(5))
    assert all(info(loaded, name).load_seconds is not None for name in plugins)


# --------------------------------------------------------------------------- the bootstrap


def test_bootstrap_without_the_cache_plugin_discovers_uncached(
    make_module: MakeModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localagent import _bootstrap

    # As if localagent-cache were uninstalled: its module cannot be imported.
    monkeypatch.setattr(_bootstrap, "CACHE_MODULE", f"la_test_missing_{uuid.uuid4().hex}")
    assert _bootstrap.open_cache(lambda name: True) is None
    module = good(make_module)
    specs = [PluginSpec("thing", module)]
    monkeypatch.setattr("localagent._plugins.discover", lambda: specs)
    assert installed_plugins(None) == specs
    loaded = load_plugins(environ={"LOCALAGENT_LOAD_PLUGINS": "thing,cache"})
    assert info(loaded, "thing").registered


def test_bootstrap_never_imports_a_disabled_cache_plugin(make_module: MakeModule) -> None:
    from localagent import _bootstrap

    asked: list[str] = []

    def disabled(name: str) -> bool:
        asked.append(name)
        return False

    assert _bootstrap.open_cache(disabled) is None
    assert asked == ["cache"]


def test_bootstrap_uses_a_broken_cache_module_as_no_cache(
    make_module: MakeModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localagent import _bootstrap

    broken = make_module('raise RuntimeError("broken cache plugin")\n')
    monkeypatch.setattr(_bootstrap, "CACHE_MODULE", broken)
    assert _bootstrap.open_cache(lambda name: True) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, frozenset()),
        ("[plugins.a]\nenabled = false\n[plugins.b]\nx = 1\n", frozenset({"a"})),
        ('[server]\nport = "not checked here"\n', frozenset()),
        ("[plugins.a]\nenabled = 'no'\n", None),  # the full loader reports it
        ("plugins = 3\n", None),
        ("not toml [", None),
    ],
)
def test_read_disabled_plugins(tmp_path: Path, text: str | None, expected: object) -> None:
    from localagent._bootstrap import read_disabled_plugins

    if text is not None:
        (tmp_path / "config.toml").write_text(text)
    assert read_disabled_plugins(tmp_path) == expected


def test_selection_matches_the_documented_precedence() -> None:
    from localagent._bootstrap import Selection

    selection = Selection.build({"off"}, ["on", "no:gone"], {"LOCALAGENT_LOAD_PLUGINS": "a,off"})
    assert selection.is_enabled("a") and selection.is_enabled("on")
    assert not selection.is_enabled("b")  # not listed in the variable
    assert not selection.is_enabled("gone")
    assert selection.is_enabled("off")  # the variable wins over the config file
    assert selection.is_enabled("ping", builtin=True)  # built-ins ignore the variable
    assert not Selection.build((), (), {"LOCALAGENT_LOAD_PLUGINS": ""}).discovers
