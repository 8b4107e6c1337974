"""The record of installed commands (``commands-*.json``) through real starts of the CLI.

A command distribution (a module and its ``*.dist-info``, group
``localagent.commands``) sits in a temporary directory on ``PYTHONPATH``; each
start is a subprocess with its own config and cache dirs. The module leaves a
trace file each time it is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cache_starts import probe, settle

COMMAND = '''
import os
import click

with open(os.environ["LA_TEST_TRACE"], "a") as trace:
    trace.write("{module}\\n")

@click.command()
def {name}():
    """{help}"""
    click.echo("{name} ran")
'''

#: Runs the CLI in-process and reports, on stderr, which costly modules it imported.
PROBE = probe(("importlib.metadata", "pathlib"))


class Starts:
    def __init__(self, tmp_path: Path) -> None:
        self.site = tmp_path / "site"
        self.cwd = tmp_path / "cwd"
        self.cache = tmp_path / "cache"
        self.trace = tmp_path / "trace"
        self.site.mkdir()
        self.cwd.mkdir()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(self.site),
            "LOCALAGENT_CONFIG_DIR": str(tmp_path / "config"),
            "LOCALAGENT_CACHE_DIR": str(self.cache),
            "LOCALAGENT_LOAD_PLUGINS": "cache",
            "LA_TEST_TRACE": str(self.trace),
        }

    def install(self, name: str, help: str = "Say hello.", version: str = "1.0") -> Path:
        module = f"la_cmd_{name}"
        source = COMMAND.format(module=module, name=name, help=help)
        (self.site / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.site / f"la_cmd_{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: la-cmd-{name}\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text(f"[localagent.commands]\n{name} = {module}:{name}\n")
        return info

    def run(self, *args: str) -> tuple[str, list[str], list[str]]:
        """Stdout, the costly modules imported, and the command modules imported."""
        self.trace.write_text("")
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        imported = json.loads(done.stderr.rpartition("IMPORTED ")[2])
        return done.stdout, imported, self.trace.read_text().split()

    def help(self) -> tuple[str, list[str], list[str]]:
        return self.run("--help")

    def records(self) -> list[Path]:
        return sorted(self.cache.glob("commands-*.json"))


@pytest.fixture
def starts(tmp_path: Path) -> Starts:
    starts = Starts(tmp_path)
    starts.install("hello")
    settle(starts.site, starts.cwd)
    return starts


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_warm_help_neither_scans_nor_imports_command_modules(starts: Starts) -> None:
    cold, imported, commands = starts.help()
    assert "importlib.metadata" in imported and commands == ["la_cmd_hello"]
    assert len(starts.records()) == 1
    warm, imported, commands = starts.help()
    assert warm == cold  # the same help, from the record
    assert "hello Say hello." in words(warm)
    assert imported == [] and commands == []  # no importlib.metadata, no pathlib, no module


def test_running_a_recorded_command_does_not_scan(starts: Starts) -> None:
    starts.help()
    out, imported, commands = starts.run("hello")
    assert out == "hello ran\n"
    assert "importlib.metadata" not in imported and commands == ["la_cmd_hello"]


def test_a_warm_plugins_list_imports_no_command_module_nor_pathlib(starts: Starts) -> None:
    starts.help()
    starts.run("plugins", "list")  # writes the plugin manifest
    _out, imported, commands = starts.run("plugins", "list")
    assert imported == [] and commands == []


def test_adding_a_distribution_invalidates_the_record(starts: Starts) -> None:
    starts.help()
    starts.install("added", help="Added later.")
    settle(starts.site, starts.cwd)
    out, imported, commands = starts.help()
    assert "added Added later." in words(out)
    assert "importlib.metadata" in imported and sorted(commands) == ["la_cmd_added", "la_cmd_hello"]
    again, imported, commands = starts.help()
    assert again == out and imported == [] and commands == []
    assert len(starts.records()) == 1  # the old key's record is gone


def test_removing_a_distribution_invalidates_the_record(starts: Starts) -> None:
    info = starts.install("gone")
    settle(starts.site, starts.cwd)
    assert "gone" in starts.help()[0]
    starts.help()
    shutil.rmtree(info)
    (starts.site / "la_cmd_gone.py").unlink()
    settle(starts.site, starts.cwd)
    out, imported, _commands = starts.help()
    assert "gone" not in out and "hello" in out
    assert "importlib.metadata" in imported


def test_upgrading_a_distribution_invalidates_the_record(starts: Starts) -> None:
    starts.help()
    old = starts.site / "la_cmd_hello-1.0.dist-info"
    new = starts.site / "la_cmd_hello-2.0.dist-info"
    old.rename(new)
    (new / "entry_points.txt").write_text("[localagent.commands]\nhi = la_cmd_hello:hello\n")
    settle(starts.site, starts.cwd)
    out, imported, _commands = starts.help()
    assert "hi Say hello." in words(out) and "hello Say" not in words(out)
    assert "importlib.metadata" in imported


def test_editing_a_command_help_in_place_is_seen(starts: Starts) -> None:
    starts.help()
    module = starts.site / "la_cmd_hello.py"
    module.write_text(module.read_text().replace("Say hello.", "Say hello, edited."))
    settle(starts.site, starts.cwd)
    out, _imported, commands = starts.help()
    assert "hello Say hello, edited." in words(out) and commands == ["la_cmd_hello"]


def test_without_the_cache_plugin_nothing_is_recorded(starts: Starts) -> None:
    starts.env["LOCALAGENT_LOAD_PLUGINS"] = ""
    for _ in range(2):
        out, imported, commands = starts.help()
        assert "hello Say hello." in words(out)
        assert "importlib.metadata" in imported and commands == ["la_cmd_hello"]
    assert starts.records() == []


def test_a_corrupt_record_is_ignored_and_rewritten(starts: Starts) -> None:
    starts.help()
    (record,) = starts.records()
    record.write_text("{not json")
    out, imported, _commands = starts.help()
    assert "hello Say hello." in words(out) and "importlib.metadata" in imported
    assert json.loads(record.read_text())["commands"]["hello"][0]["value"] == "la_cmd_hello:hello"


def test_cache_clear_removes_the_record(starts: Starts) -> None:
    starts.help()
    assert starts.records()
    starts.run("plugins", "cache", "clear")
    assert starts.records() == []
