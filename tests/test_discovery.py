"""Entry-point discovery for real: ``*.dist-info`` directories on ``sys.path``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import localagent
from localagent._plugins import BUILTIN_PLUGINS, discover

from .helpers import imported_by, localagent_cmd, running_agent

BUILTINS = [spec.name for spec in BUILTIN_PLUGINS]

GOOD = """
from localagent_hookspecs import handles, hookimpl

@hookimpl(specname="on_message")
@handles("good.hello")
def hello(message):
    return {"hello": message.data}
"""

BROKEN = 'raise RuntimeError("this plugin is broken at import")\n'

# Imported only if the loader ignores the disabled state: it leaves a trace.
DISABLED = """
import pathlib, os
pathlib.Path(os.environ["LOCALAGENT_TEST_TRACE"]).write_text("imported")
raise RuntimeError("a disabled plugin must never be imported")
"""

TYPO = """
from localagent_hookspecs import hookimpl

@hookimpl
def on_mesage(connection, message):
    return {}
"""


def _distribution(site: Path, dist: str, name: str, module: str, source: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[localagent]\n{name} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of four installed plugin distributions, 'disabled' off in config."""
    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "localagent-good", "good", "la_test_good", GOOD)
    _distribution(site, "localagent-broken", "broken", "la_test_broken", BROKEN)
    _distribution(site, "localagent-disabled", "disabled", "la_test_disabled", DISABLED)
    _distribution(site, "localagent-typo", "typo", "la_test_typo", TYPO)
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text("[plugins.disabled]\nenabled = false\n")
    monkeypatch.setenv("LOCALAGENT_TEST_TRACE", str(tmp_path / "trace"))
    monkeypatch.delenv("LOCALAGENT_LOAD_PLUGINS")
    return site


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(site))
    for module in ("la_test_good", "la_test_broken", "la_test_disabled", "la_test_typo"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    return site


def test_discover_reads_entry_points(on_path: Path) -> None:
    specs = {spec.name: spec for spec in discover()}
    assert specs["good"].value == "la_test_good"
    assert specs["good"].distribution == "localagent-good"
    assert specs["good"].version == "1.2.3"


def test_load_reports_broken_skips_disabled_and_rejects_unknown_hooks(on_path: Path) -> None:
    settings = localagent.load_settings()
    loaded = localagent.load_plugins(disabled_in_config=settings.disabled_plugins)
    infos = {info.name: info for info in loaded.infos}
    assert infos["good"].registered and infos["good"].error is None
    assert infos["good"].handles == ("good.hello",)
    broken = infos["broken"]
    assert not broken.registered
    assert broken.error == "import failed: RuntimeError: this plugin is broken at import"
    disabled = infos["disabled"]
    assert not disabled.enabled and disabled.error is None
    assert "la_test_disabled" not in sys.modules
    assert not (on_path.parent / "trace").exists()
    typo = infos["typo"]
    assert not typo.registered
    assert "on_mesage" in (typo.error or "")
    assert loaded.manager.get_plugin("typo") is None


def test_strict_makes_a_broken_plugin_fatal(on_path: Path) -> None:
    with pytest.raises(localagent.PluginError) as caught:
        localagent.load_plugins(disabled_in_config={"disabled"}, strict=True)
    assert caught.value.plugin == "broken"


def test_load_plugins_empty_loads_no_third_party_plugin(on_path: Path) -> None:
    loaded = localagent.load_plugins(environ={"LOCALAGENT_LOAD_PLUGINS": ""})
    registered = [info.name for info in loaded.infos if info.registered]
    assert registered == BUILTINS
    assert "la_test_good" not in sys.modules


def test_load_plugins_list_selects(on_path: Path) -> None:
    loaded = localagent.load_plugins(environ={"LOCALAGENT_LOAD_PLUGINS": "good"})
    registered = [info.name for info in loaded.infos if info.registered]
    assert registered == [*BUILTINS, "good"]
    assert "la_test_broken" not in sys.modules


def _env(site: Path, isolated_env: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_cli_lists_and_serves_discovered_plugins(site: Path, isolated_env: Path) -> None:
    env = _env(site, isolated_env)
    listed = subprocess.run(
        localagent_cmd("plugins", "list", "--json"), env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["good"]["distribution"] == "localagent-good"
    assert plugins["good"]["version"] == "1.2.3"
    assert plugins["good"]["hooks"] == ["on_message"]
    assert plugins["broken"]["error"].startswith("import failed: RuntimeError")
    assert plugins["disabled"]["enabled"] is False
    assert "on_mesage" in plugins["typo"]["error"]
    assert not (site.parent / "trace").exists()
    human = subprocess.run(
        localagent_cmd("plugins", "list"), env=env, capture_output=True, text=True
    )
    assert "broken" in human.stderr and "Traceback" not in human.stderr

    with running_agent(env) as agent:
        sent = subprocess.run(
            localagent_cmd("send", "--url", agent.url, "good.hello", '"you"'),
            env=env,
            capture_output=True,
            text=True,
        )
        assert json.loads(sent.stdout) == {"hello": "you"}
    assert "broken" in agent.output  # reported by name in the log
    assert not (site.parent / "trace").exists()

    strict = subprocess.run(
        localagent_cmd("serve", "--port", "0", "--strict"), env=env, capture_output=True, text=True
    )
    assert strict.returncode == 1
    assert "plugin 'broken'" in strict.stderr and "Traceback" not in strict.stderr


def test_cli_load_plugins_empty_hides_third_party(site: Path, isolated_env: Path) -> None:
    env = {**_env(site, isolated_env), "LOCALAGENT_LOAD_PLUGINS": ""}
    listed = subprocess.run(
        localagent_cmd("plugins", "list", "--json"), env=env, capture_output=True, text=True
    )
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert all(not p["enabled"] and not p["registered"] for p in plugins.values())
    assert all(p["error"] is None for p in plugins.values())


def test_plugins_list_strict_fails_on_errors(site: Path, isolated_env: Path) -> None:
    env = _env(site, isolated_env)
    result = subprocess.run(
        localagent_cmd("plugins", "list", "--strict"), env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "'broken'" in result.stderr and "Traceback" not in result.stderr
    assert "good" in result.stdout  # the list is still printed


def test_installed_plugins_without_a_cache_is_discover(on_path: Path) -> None:
    from localagent._plugins import installed_plugins

    assert installed_plugins(None) == discover()


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--help"], ["plugins", "list", "--help"]])
def test_lean_commands_import_neither_metadata_nor_attrs_nor_pluggy(
    subprocess_env: dict[str, str], args: list[str]
) -> None:
    costly = ["attr", "pluggy", "localagent_hookspecs", "logging"]
    if args != ["--help"]:  # the root's --help lists the commands distributions add
        costly.append("importlib.metadata")
    assert imported_by(subprocess_env, args, costly) == []
