"""The plugin cache through real starts of the CLI and real ``*.dist-info`` directories.

Every start is a subprocess of this interpreter with a temporary plugin
directory on ``PYTHONPATH``, its own config dir and its own cache dir. Between
two starts a test installs, removes, upgrades or edits a plugin, or breaks
the cache, and checks that the next start sees exactly that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cache_starts import probe, settle
from localagent_cache import FORMAT, ManifestCache

from localagent.testing import localagent_cmd, running_agent

GOOD = """
from localagent_hookspecs import handles, hookimpl

@hookimpl(specname="on_message")
@handles("good.hello")
def hello(message):
    return {"hello": message.data}
"""

EDITED = (
    GOOD
    + """

@hookimpl
def on_connect(connection):
    connection.state["good"] = True
"""
)

#: Runs the CLI in-process and reports, on stderr, which costly modules it imported.
PROBE = probe(("importlib.metadata", "pluggy", "attr", "la_test_good", "la_test_new"))


def _install(site: Path, dist: str, name: str, module: str, source: str, version: str) -> Path:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[localagent]\n{name} = {module}\n")
    return info


class Starts:
    """Starts of ``localagent`` against one plugin directory, config dir and cache dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.site = tmp_path / "site"
        self.cwd = tmp_path / "cwd"  # on sys.path (python -c): nothing writes here
        self.cache = tmp_path / "cache"
        self.site.mkdir()
        self.cwd.mkdir()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(self.site),
            "LOCALAGENT_CONFIG_DIR": str(tmp_path / "config"),
            "LOCALAGENT_CACHE_DIR": str(self.cache),
            "LOCALAGENT_LOAD_PLUGINS": "cache,good,new",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done

    def plugins(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """``plugins list --all --json`` by name, and the costly modules that start imported."""
        done = self.run("plugins", "list", "--all", "--json")
        imported = json.loads(done.stderr.rpartition("IMPORTED ")[2])
        return {record["name"]: record for record in json.loads(done.stdout)}, imported

    def warm(self) -> dict[str, dict[str, Any]]:
        """Settle every file, start once to write the manifest, and return a start that used it."""
        settle(self.site, self.cwd)
        self.plugins()
        plugins, imported = self.plugins()
        assert all(record["cached"] for record in plugins.values())
        assert imported == []
        return plugins

    def manifests(self) -> list[Path]:
        return sorted(self.cache.glob("plugins-*.json"))


@pytest.fixture
def starts(tmp_path: Path) -> Iterator[Starts]:
    starts = Starts(tmp_path)
    _install(starts.site, "localagent-good", "good", "la_test_good", GOOD, "1.2.3")
    yield starts


def test_a_warm_start_imports_neither_metadata_nor_plugins(starts: Starts) -> None:
    settle(starts.site, starts.cwd)
    cold, imported = starts.plugins()
    assert "importlib.metadata" in imported and "la_test_good" in imported
    assert not cold["good"]["cached"]
    assert len(starts.manifests()) == 1
    warm, imported = starts.plugins()
    assert imported == []  # not importlib.metadata, pluggy, attrs, nor the plugin
    assert warm["good"]["cached"] and warm["ping"]["cached"]
    assert warm["good"]["hooks"] == ["on_message"]
    assert warm["good"]["handles"] == ["good.hello"]
    assert warm["good"]["import_ms"] == cold["good"]["import_ms"]  # as last measured
    assert warm["good"]["version"] == "1.2.3"
    assert warm["cache"]["enabled"] and warm["cache"]["registered"]
    assert warm["batching"]["enabled"] is False  # installed in the venv, not selected


def test_the_human_list_says_whether_the_cache_was_used(starts: Starts) -> None:
    settle(starts.site, starts.cwd)
    first = subprocess.run(
        localagent_cmd("plugins", "list"), cwd=starts.cwd, env=starts.env, capture_output=True
    )
    assert b"plugin cache: not used (plugins discovered and imported now; cache written)" in (
        first.stdout
    )
    second = subprocess.run(
        localagent_cmd("plugins", "list"), cwd=starts.cwd, env=starts.env, capture_output=True
    )
    assert b"plugin cache: used" in second.stdout
    assert b"good" in second.stdout


def test_adding_a_plugin_is_seen(starts: Starts) -> None:
    starts.warm()
    _install(starts.site, "localagent-new", "new", "la_test_new", GOOD, "0.1")
    plugins, imported = starts.plugins()
    assert plugins["new"]["version"] == "0.1" and plugins["new"]["registered"]
    assert not plugins["new"]["cached"]
    assert "importlib.metadata" in imported
    assert "new" in starts.warm()


def test_removing_a_plugin_is_seen(starts: Starts) -> None:
    info = _install(starts.site, "localagent-new", "new", "la_test_new", GOOD, "0.1")
    assert "new" in starts.warm()
    shutil.rmtree(info)
    (starts.site / "la_test_new.py").unlink()
    plugins, _imported = starts.plugins()
    assert "new" not in plugins and "good" in plugins
    assert "new" not in starts.warm()


def test_upgrading_a_plugin_is_seen(starts: Starts) -> None:
    assert starts.warm()["good"]["version"] == "1.2.3"
    old = starts.site / "localagent_good-1.2.3.dist-info"
    new = starts.site / "localagent_good-2.0.0.dist-info"
    old.rename(new)
    (new / "METADATA").write_text("Metadata-Version: 2.1\nName: localagent-good\nVersion: 2.0.0\n")
    plugins, _imported = starts.plugins()
    assert plugins["good"]["version"] == "2.0.0"
    assert starts.warm()["good"]["version"] == "2.0.0"


def test_editing_a_plugin_in_place_is_seen(starts: Starts) -> None:
    assert starts.warm()["good"]["hooks"] == ["on_message"]
    (starts.site / "la_test_good.py").write_text(textwrap.dedent(EDITED))  # no dir changes
    plugins, imported = starts.plugins()
    assert plugins["good"]["hooks"] == ["on_connect", "on_message"]
    assert "la_test_good" in imported and not plugins["good"]["cached"]
    assert starts.warm()["good"]["hooks"] == ["on_connect", "on_message"]


def test_changing_an_entry_point_in_place_is_seen(starts: Starts) -> None:
    starts.warm()
    entry_points = starts.site / "localagent_good-1.2.3.dist-info" / "entry_points.txt"
    entry_points.write_text("[localagent]\ngood = la_test_good\nnew = la_test_good\n")
    plugins, _imported = starts.plugins()
    assert "new" in plugins  # a second name for one module: reported, not registered
    assert plugins["new"]["error"] is not None


def test_enabling_a_plugin_imports_it_once_then_uses_the_cache(starts: Starts) -> None:
    assert starts.warm()["batching"]["enabled"] is False
    starts.env["LOCALAGENT_LOAD_PLUGINS"] = "cache,good,batching"
    plugins, imported = starts.plugins()
    assert plugins["batching"]["registered"] and not plugins["batching"]["cached"]
    assert "importlib.metadata" not in imported  # the installed set came from the manifest
    plugins, imported = starts.plugins()
    assert plugins["batching"]["cached"] and imported == []


def test_a_corrupt_cache_is_ignored_and_rebuilt(starts: Starts) -> None:
    starts.warm()
    (manifest,) = starts.manifests()
    for garbage in (b"\x80not json{", b"[]", b'{"format": 1}', b"\x80\x04\x95pickle."):
        manifest.write_bytes(garbage)
        plugins, _imported = starts.plugins()
        assert plugins["good"]["registered"] and not plugins["good"]["cached"]
        assert json.loads(manifest.read_bytes())["format"] == FORMAT  # rewritten


def test_a_cache_dir_that_cannot_be_written_costs_only_speed(
    starts: Starts, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file: nothing can be created under it, not even by root")
    starts.env["LOCALAGENT_CACHE_DIR"] = str(blocker / "cache")
    settle(starts.site, starts.cwd)
    for _start in range(2):
        plugins, imported = starts.plugins()
        assert plugins["good"]["registered"] and not plugins["good"]["cached"]
        assert "la_test_good" in imported
    human = starts.run("plugins", "list")
    assert "cache not written" in human.stdout


def test_a_disabled_cache_plugin_is_not_imported_and_writes_nothing(starts: Starts) -> None:
    starts.env["LOCALAGENT_LOAD_PLUGINS"] = "good"
    settle(starts.site, starts.cwd)
    for _start in range(2):
        plugins, _imported = starts.plugins()
        assert not plugins["good"]["cached"]
        assert plugins["cache"]["enabled"] is False
    assert starts.manifests() == []


def test_cache_clear_removes_the_manifest(starts: Starts) -> None:
    starts.warm()
    assert len(starts.manifests()) == 1
    cleared = starts.run("plugins", "cache", "clear")
    assert "removed 1 cache file(s) (plugin manifests, command records)" in cleared.stdout
    assert starts.manifests() == []
    plugins, _imported = starts.plugins()
    assert not plugins["good"]["cached"]


def test_serve_discovers_through_the_manifest(starts: Starts) -> None:
    starts.warm()
    probe = (
        "import sys\n"
        "from localagent import load_plugins\n"
        "loaded = load_plugins()\n"
        "assert loaded.info('good').registered, loaded.info('good')\n"
        "print(sorted(m for m in ('importlib.metadata',) if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=starts.cwd, env=starts.env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"[]"
    with running_agent(starts.env) as agent:
        sent = subprocess.run(
            localagent_cmd("send", "--url", agent.url, "good.hello", '"cache"'),
            env=starts.env,
            capture_output=True,
            text=True,
        )
    assert json.loads(sent.stdout) == {"hello": "cache"}


def test_a_manifest_of_another_format_or_interpreter_is_ignored(tmp_path: Path) -> None:
    cache = ManifestCache(tmp_path)
    assert cache.load() is None  # nothing there yet
    assert cache.save([]) is True
    assert cache.load() == {"path": cache.path, "plugins": [], "observed": None}
    manifest = Path(cache.path)
    document = json.loads(manifest.read_text())
    for key, value in (("format", FORMAT + 1), ("interpreter", ["another python"])):
        manifest.write_text(json.dumps({**document, key: value}))
        assert ManifestCache(tmp_path).load() is None
    manifest.write_text(json.dumps({**document, "plugins": [{"name": 1}]}))
    assert ManifestCache(tmp_path).load() is None
