"""Commands from distributions: the entry-point group ``localagent.commands``, for real.

Each test installs small distributions (a module and its ``*.dist-info``) into a directory
on ``PYTHONPATH`` and runs ``localagent`` as a subprocess, as a user would after
``pip install``.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from .helpers import imported_by, localagent_cmd

HELLO = '''
import click

@click.command()
@click.argument("who", default="world")
@click.option("--shout", is_flag=True, help="Upper case.")
def hello(who, shout):
    """Say hello to WHO."""
    text = f"hello, {who}"
    click.echo(text.upper() if shout else text)
'''

BROKEN = 'raise ImportError("this command module is broken at import")\n'

NOT_A_COMMAND = "def hello():\n    return 'not a click command'\n"

# Imported only if a command that does not need it imports it anyway: it leaves a trace.
TRACED = '''
import os, pathlib
import click

pathlib.Path(os.environ["LOCALAGENT_TEST_TRACE"]).write_text("imported")

@click.command()
def traced():
    """Leave a trace when imported."""
'''

TOKEN = '''
import click

@click.command()
def token():
    """A distribution's attempt to replace the built-in token command."""
    click.echo("not the built-in")
'''


def _distribution(site: Path, dist: str, module: str, entry_points: str, source: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[localagent.commands]\n{entry_points}\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    return site


@pytest.fixture
def env(site: Path, subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **subprocess_env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "LOCALAGENT_TEST_TRACE": str(tmp_path / "trace"),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(localagent_cmd(*args), env=env, capture_output=True, text=True)


def words(text: str) -> str:
    """``text`` with every run of whitespace as one space (help columns vary in width)."""
    return " ".join(text.split())


def test_a_distribution_adds_a_command(site: Path, env: dict[str, str]) -> None:
    _distribution(site, "localagent-hello", "la_cmd_hello", "hello = la_cmd_hello:hello", HELLO)
    result = run(env, "hello", "you", "--shout")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HELLO, YOU\n"
    listing = run(env, "--help")
    assert listing.returncode == 0
    assert "hello Say hello to WHO." in words(listing.stdout)
    assert "--shout Upper case." in words(run(env, "hello", "--help").stdout)


def test_built_in_commands_neither_scan_nor_import_distributions_commands(
    site: Path, env: dict[str, str], tmp_path: Path
) -> None:
    _distribution(
        site, "localagent-traced", "la_cmd_traced", "traced = la_cmd_traced:traced", TRACED
    )
    scan = ["localagent.cli._commands", "la_cmd_traced"]
    assert imported_by(env, ["token", "--path"], [*scan, "importlib.metadata"]) == []
    assert imported_by(env, ["plugins", "list"], scan) == []
    assert imported_by(env, ["plugins", "--help"], scan) == []
    assert not (tmp_path / "trace").exists()
    # Listing the commands imports them all, for their help lines.
    assert "traced Leave a trace when imported." in words(run(env, "--help").stdout)
    assert (tmp_path / "trace").exists()


def test_a_broken_command_is_a_clean_error_naming_its_distribution(
    site: Path, env: dict[str, str]
) -> None:
    _distribution(site, "localagent-broken", "la_cmd_broken", "broken = la_cmd_broken:cli", BROKEN)
    _distribution(site, "localagent-hello", "la_cmd_hello", "hello = la_cmd_hello:hello", HELLO)
    for args in (["broken"], ["broken", "--quick", "x"], ["broken", "--help"]):
        result = run(env, *args)
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr
        assert result.stderr.strip() == (
            "Error: the command 'broken' of localagent-broken 1.2.3 (entry point "
            "la_cmd_broken:cli) cannot be loaded: ImportError: this command module is broken "
            "at import"
        )
    # The other commands, and the listing, keep working.
    assert run(env, "hello").stdout == "hello, world\n"
    assert run(env, "token", "--path").returncode == 0
    listing = run(env, "--help")
    assert listing.returncode == 0, listing.stderr
    assert "broken (cannot be loaded; from localagent-broken 1.2.3)" in words(listing.stdout)


def test_an_entry_point_that_is_not_a_click_command_is_a_clean_error(
    site: Path, env: dict[str, str]
) -> None:
    _distribution(site, "localagent-odd", "la_cmd_odd", "odd = la_cmd_odd:hello", NOT_A_COMMAND)
    result = run(env, "odd")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the command 'odd' of localagent-odd 1.2.3" in result.stderr
    assert "is a function, not a click command" in result.stderr


def test_two_distributions_adding_one_name_is_a_clean_error_naming_both(
    site: Path, env: dict[str, str]
) -> None:
    _distribution(site, "localagent-one", "la_cmd_one", "hello = la_cmd_one:hello", HELLO)
    _distribution(site, "localagent-two", "la_cmd_two", "hello = la_cmd_two:hello", HELLO)
    result = run(env, "hello")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "localagent-one 1.2.3 and localagent-two 1.2.3" in result.stderr


def test_a_distribution_cannot_replace_a_built_in_command(site: Path, env: dict[str, str]) -> None:
    _distribution(site, "localagent-token", "la_cmd_token", "token = la_cmd_token:token", TOKEN)
    result = run(env, "token", "--path")
    assert result.returncode == 0, result.stderr
    assert "not the built-in" not in result.stdout
    assert result.stdout.strip().endswith("token")


def test_an_unknown_command_suggests_close_names(site: Path, env: dict[str, str]) -> None:
    _distribution(site, "localagent-hello", "la_cmd_hello", "hello = la_cmd_hello:hello", HELLO)
    for typo, suggestion in (("serv", "'serve'"), ("helo", "'hello'")):
        result = run(env, typo)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"No such command {typo!r}. Did you mean {suggestion}?" in result.stderr
