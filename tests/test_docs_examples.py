"""Every example in ``docs/`` runs, for real, so none can rot.

Each fenced block of ``docs/*.md`` in Python or ``console`` is executed:

- A ``python`` block that uses ``@hookimpl`` is a **plugin**. It is executed
  in a fresh module; the module (if it has hook implementations of its own)
  and an instance of each class with hook implementations are the plugins, as
  an entry point would load them. They must register through the
  ``localagent_load`` fixture and then start in a real agent
  (``Server.create(port=0, extra_plugins=..., strict=True)``, so a failing
  ``on_load`` fails the test), which answers the block's ``send`` lines.
- A ``python`` block with a top-level ``def test_...`` is a **test module**
  for plugin authors. It is run by pytest in a subprocess, in a directory with
  a ``pyproject.toml`` that sets ``asyncio_mode = "auto"``, and must pass.
- Any other ``python`` block is a **script**. It runs in a subprocess, with
  ``$LOCALAGENT_URL`` and the config directory pointing at a real
  ``localagent serve`` started for it, and must exit with status 0.
- A ``console`` block is a **transcript**. Each ``$ localagent ...`` line runs
  against a real ``localagent serve``, and its standard output must be exactly
  the lines shown below it.

Markers are HTML comments, invisible on a rendered page. A ``skip`` marker
goes on the line before the block; all others follow the block, one comment
each::

    <!-- doctest: skip a fragment: one attribute of a plugin object -->

    <!-- doctest: send TYPE [DATA] -> RESULT -->    plugin: DATA and RESULT are JSON
    <!-- doctest: send TYPE [DATA] -> error CODE --> plugin: an error reply with CODE
    <!-- doctest: module NAME -->   plugin: later test modules of the page import it as NAME
    <!-- doctest: config
    [plugins.exec]
    allow = ["git"]
    -->                             the agent's config.toml (plugin, script, console)
    <!-- doctest: plugins hello --> console: the agent loads these installed third-party
                                    plugins (LOCALAGENT_LOAD_PLUGINS); skipped if one is
                                    not installed
    <!-- doctest: run
    print(await git_status())
    -->                             script: run after the block, inside an async
                                    function with ``client`` (a connected
                                    localagent.Client), ``workspace`` (the agent's
                                    workspace, a Path) and ``subprocess``
    <!-- doctest: output
    {'pong': True}
    -->                             script: its exact standard output

Every unmarked block is executed: a block that does not run fails, and so does
a marker this file does not understand.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import localagent
from localagent._plugins import LOAD_PLUGINS_VARIABLE, discover

from .helpers import localagent_cmd, running_agent

DOCS = Path(__file__).resolve().parent.parent / "docs"

FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*doctest:(.*?)-->", re.DOTALL)
SKIP_BEFORE = re.compile(r"<!--\s*doctest:\s*skip\b(.*?)-->\s*\Z", re.DOTALL)
SEND = re.compile(r"^(\S+)(?:\s+(.*?))?\s+->\s+(.*)$", re.DOTALL)
#: What each kind of block accepts after it.
DIRECTIVES = {
    "plugin": {"send", "config", "module"},
    "script": {"run", "output", "config"},
    "test module": set(),
    "console": {"config", "plugins"},
}
#: The settings the docs tell plugin authors to put in their pyproject.toml.
AUTHOR_PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""


@attrs.frozen
class Example:
    """One fenced block of a page, with its markers.

    Attributes:
        page: The page's file name.
        line: The line of the opening fence.
        kind: ``"plugin"``, ``"script"``, ``"test module"`` or ``"console"``.
        source: The block's text.
        skip: Why the block is not run, or ``None``.
        directives: ``(name, argument)`` for each marker after the block.
    """

    page: str
    line: int
    kind: str
    source: str
    skip: str | None
    directives: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def arguments(self, name: str) -> list[str]:
        return [argument for directive, argument in self.directives if directive == name]

    def single(self, name: str) -> str | None:
        found = self.arguments(name)
        assert len(found) <= 1, f"{self.id}: more than one '{name}' marker"
        return found[0] if found else None


def _kind(language: str, source: str) -> str | None:
    if language == "console":
        return "console"
    if language != "python":
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "script"  # and running it says where the syntax error is
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = target.attr if isinstance(target, ast.Attribute) else None
                name = target.id if isinstance(target, ast.Name) else name
                if name == "hookimpl":
                    return "plugin"
    for statement in tree.body:
        is_function = isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
        if is_function and statement.name.startswith("test_"):
            return "test module"
    return "script"


def _parse(page: str, text: str) -> tuple[list[Example], list[str]]:
    """The page's runnable blocks, and the problems with its markers."""
    examples: list[Example] = []
    problems: list[str] = []
    attached = 0
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        where = f"{page}:{line}"
        directives: list[tuple[str, str]] = []
        position = match.end()
        while marker := MARKER.match(text, _skip_blank(text, position)):
            name, argument = [*marker.group(1).split(maxsplit=1), "", ""][:2]
            if name == "skip":
                break  # it belongs to the next block
            directives.append((name, argument.strip()))
            attached += 1
            position = marker.end()
        skipped = SKIP_BEFORE.search(text[: match.start()])
        skip = skipped.group(1).strip() if skipped else None
        if skipped:
            attached += 1
            if not skip:
                problems.append(f"{where}: a skip marker must say why")
        kind = _kind(match.group(1), match.group(2))
        if kind is None:
            if directives or skipped:
                problems.append(f"{where}: {match.group(1)} blocks are never run: drop the marker")
            continue
        unknown = sorted({name for name, _ in directives} - DIRECTIVES[kind])
        if unknown:
            problems.append(f"{where}: a {kind} block does not take the marker(s) {unknown}")
        if skip is not None and directives:
            problems.append(f"{where}: a skipped block takes no other markers")
        examples.append(Example(page, line, kind, match.group(2), skip, tuple(directives)))
    stray = len(MARKER.findall(text)) - attached
    if stray:
        problems.append(f"{page}: {stray} doctest marker(s) not next to a block")
    return examples, problems


def _skip_blank(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\n":
        position += 1
    return position


def _collect() -> tuple[list[Example], list[str]]:
    examples: list[Example] = []
    problems: list[str] = []
    for path in sorted(DOCS.glob("*.md")):
        found, wrong = _parse(path.name, path.read_text(encoding="utf-8"))
        examples += found
        problems += wrong
    return examples, problems


EXAMPLES, PROBLEMS = _collect()


def _examples(kind: str) -> list[Any]:
    return [
        pytest.param(example, id=example.id)
        for example in EXAMPLES
        if example.kind == kind and example.skip is None
    ]


def test_the_markers_are_well_formed() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_the_examples_are_found() -> None:
    run = [example for example in EXAMPLES if example.skip is None]
    kinds = {example.kind for example in run}
    assert kinds == set(DIRECTIVES), f"no {set(DIRECTIVES) - kinds} example was found"


def _write_config(config_dir: Path, example: Example) -> None:
    config = example.single("config")
    if config is not None:
        config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (config_dir / "config.toml").write_text(config + "\n", encoding="utf-8")


# -- plugins -----------------------------------------------------------------


def _plugins(example: Example) -> list[object]:
    """Execute the block in a fresh module and return its plugin objects."""
    name = re.sub(r"\W", "_", f"doc_{example.page}_{example.line}")
    module = types.ModuleType(name)
    # Left in sys.modules: attrs, dataclasses and pickling look modules up there, and so does
    # msgspec, when it first resolves a schema's annotations (in the running agent).
    sys.modules[name] = module
    exec(compile(example.source, example.id, "exec"), module.__dict__)

    def implements(obj: object) -> bool:
        return any(
            hasattr(getattr(obj, attribute, None), "localagent_impl") for attribute in dir(obj)
        )

    plugins: list[object] = [module] if implements(module) else []
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == name and implements(value):
            plugins.append(value())  # a class is instantiated once per agent
    assert plugins, f"{example.id}: the block defines no hook implementation"
    return plugins


def _send_lines(example: Example) -> Iterator[tuple[str, Any, str, Any]]:
    """``(type, data, "result" or "error", expected)`` for each ``send`` marker."""
    for argument in example.arguments("send"):
        match = SEND.match(argument)
        assert match, f"{example.id}: cannot read 'send {argument}'"
        type_, data, expected = match.groups()
        payload = json.loads(data) if data else None
        if expected.startswith("error "):
            yield type_, payload, "error", expected.removeprefix("error ").strip()
        else:
            yield type_, payload, "result", json.loads(expected)


@pytest.mark.parametrize("example", _examples("plugin"))
async def test_plugin_example(
    example: Example, localagent_load: Any, localagent_config_dir: Path
) -> None:
    loaded = localagent_load(*_plugins(example))  # strict: a registration failure raises
    registered = [info for info in loaded.infos if info.registered]
    assert registered and all(info.hooks for info in registered)

    _write_config(localagent_config_dir, example)
    plugins = {f"example-{n}": plugin for n, plugin in enumerate(_plugins(example))}
    async with (
        localagent.Server.create(port=0, extra_plugins=plugins, strict=True) as server,
        localagent.Client(server.url, server.token_file.get()) as client,
    ):
        for type_, data, outcome, expected in _send_lines(example):
            sent = f"{example.id}: send {type_} {json.dumps(data)}"
            if outcome == "result":
                assert await client.request(type_, data, timeout=10) == expected, sent
            else:
                with pytest.raises(localagent.ReplyError) as error:
                    await client.request(type_, data, timeout=10)
                assert error.value.code == expected, sent


# -- test modules ------------------------------------------------------------


@pytest.mark.parametrize("example", _examples("test module"))
def test_test_module_example(
    example: Example, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    for earlier in EXAMPLES:
        if earlier.page == example.page and earlier.line < example.line:
            for module in earlier.arguments("module"):
                (tmp_path / f"{module}.py").write_text(earlier.source, encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(AUTHOR_PYPROJECT, encoding="utf-8")
    (tmp_path / "test_example.py").write_text(example.source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        env={**subprocess_env, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{example.id}:\n{result.stdout}{result.stderr}"
    assert re.search(r"\d+ passed", result.stdout) and "skipped" not in result.stdout


# -- scripts -----------------------------------------------------------------

RUN_WRAPPER = """

async def __doctest_run__() -> None:
    import os
    import pathlib
    import subprocess

    import localagent

    workspace = pathlib.Path(os.environ["LOCALAGENT_WORKSPACE"])
    async with localagent.Client() as client:
{body}


import asyncio as __doctest_asyncio

__doctest_asyncio.run(__doctest_run__())
"""


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip().splitlines()]


@pytest.mark.parametrize("example", _examples("script"))
def test_script_example(example: Example, subprocess_env: dict[str, str], tmp_path: Path) -> None:
    source = example.source
    run = example.single("run")
    if run is not None:
        source += RUN_WRAPPER.format(body=textwrap.indent(run, " " * 8))
    script = tmp_path / "example.py"
    script.write_text(source, encoding="utf-8")
    config_dir = Path(subprocess_env["LOCALAGENT_CONFIG_DIR"])
    _write_config(config_dir, example)
    with running_agent(subprocess_env, config_dir=config_dir) as agent:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={**subprocess_env, "LOCALAGENT_URL": agent.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, f"{example.id}:\n{result.stderr}"
    output = example.single("output")
    if output is not None:
        assert _lines(result.stdout) == _lines(output), example.id


# -- console transcripts -----------------------------------------------------


def _transcript(source: str) -> Iterator[tuple[str, str]]:
    """``(command, expected output)`` for each ``$ `` line of a console block."""
    command: str | None = None
    output: list[str] = []
    for line in source.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, "\n".join(output)
            command, output = line[2:], []
        else:
            output.append(line)
    if command is not None:
        yield command, "\n".join(output)


@pytest.mark.parametrize("example", _examples("console"))
def test_console_example(example: Example, subprocess_env: dict[str, str]) -> None:
    config_dir = Path(subprocess_env["LOCALAGENT_CONFIG_DIR"])
    _write_config(config_dir, example)
    commands = list(_transcript(example.source))
    assert commands, f"{example.id}: a console block without a '$ ' line"
    plugins = example.single("plugins")
    if plugins is not None:
        installed = {spec.name for spec in discover()}
        missing = sorted(set(plugins.split(",")) - installed)
        if missing:
            pytest.skip(f"{example.id} needs the plugin(s) {missing} installed")
        subprocess_env = {**subprocess_env, LOAD_PLUGINS_VARIABLE: plugins}
    with running_agent(subprocess_env, config_dir=config_dir) as agent:
        env = {**subprocess_env, "LOCALAGENT_URL": agent.url}
        for command, expected in commands:
            argv = shlex.split(command)
            assert argv[0] == "localagent", f"{example.id}: only `localagent` commands run here"
            result = subprocess.run(
                localagent_cmd(*argv[1:]), env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, f"{example.id}: $ {command}\n{result.stderr}"
            assert _lines(result.stdout) == _lines(expected), f"{example.id}: $ {command}"
