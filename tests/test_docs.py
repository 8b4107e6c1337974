"""The documentation in ``docs/`` stays true to the code.

Each test derives the facts from the code (hook specs, the click command tree,
``ServerSettings``, the protocol's error codes) and checks that the matching
page documents exactly those, so a renamed hook, option, setting or code fails
here instead of leaving the docs stale.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import msgspec.structs
import pytest
from localagent_hookspecs import PROJECT_NAME, hookspecs

from localagent import _client, _plugins, _protocol
from localagent._config import ENV_PREFIX, AgentSettings, ServerSettings, Settings, load_settings
from localagent._plugin_settings import settings_fields
from localagent.builtin.exec import ExecSettings
from localagent.builtin.fs import FsSettings
from localagent.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = tuple(sorted(path.name for path in DOCS.glob("*.md")))

HEADING = re.compile(r"^(#{1,6}) +(.+?) *$", re.MULTILINE)
HOOK_HEADING = re.compile(r"^## +(\w+)\(([^)]*)\) *$", re.MULTILINE)
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ENV_VARIABLE = re.compile(rf"\b{ENV_PREFIX}[A-Z][A-Z0-9_]*\b")


def _read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    """Map each heading's text (backticks removed) to the body up to the next heading."""
    matches = list(HEADING.finditer(text))
    sections: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections[match.group(2).replace("`", "")] = text[match.end() : end]
    return sections


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# -- (a) hooks.md documents exactly the hooks in hookspecs.py ----------------


def _hook_signatures() -> dict[str, tuple[str, ...]]:
    marker = f"{PROJECT_NAME}_spec"
    return {
        name: tuple(inspect.signature(function).parameters)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, marker)
    }


def test_hook_specs_are_found() -> None:
    assert set(_hook_signatures()) == set(hookspecs.__all__)


def test_hooks_md_has_one_heading_per_hook_with_its_exact_signature() -> None:
    documented: dict[str, tuple[str, ...]] = {}
    for name, arguments in HOOK_HEADING.findall(_read("hooks.md")):
        assert name not in documented, f"hooks.md documents {name}() twice"
        documented[name] = tuple(arg.strip() for arg in arguments.split(",") if arg.strip())
    for name, parameters in _hook_signatures().items():
        expected = f"## {name}({', '.join(parameters)})"
        assert name in documented, f"hooks.md lacks the heading {expected!r}"
        assert documented[name] == parameters, f"hooks.md: the heading should be {expected!r}"
    unknown = set(documented) - set(_hook_signatures())
    assert not unknown, f"hooks.md documents hooks that do not exist: {sorted(unknown)}"


# -- (b) cli.md documents every command, option and argument -----------------


def _command_tree(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``command``, as ``--help`` finds them (the root loads on use)."""
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            subcommand = command.get_command(context, name)
            assert subcommand is not None, f"{' '.join(path)} lists {name} but cannot load it"
            yield from _command_tree(subcommand, (*path, name))


def _option_names(command: click.Command) -> list[str]:
    names: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option):
            flags = [*param.opts, *param.secondary_opts]
            long_flags = [flag for flag in flags if flag.startswith("--")]
            names.extend(long_flags or flags)  # short-only options such as -p
        elif isinstance(param, click.Argument):
            names.append(param.human_readable_name)
    return names


COMMANDS = [(" ".join(("localagent", *path)), command) for path, command in _command_tree(main)]


def test_the_command_tree_is_walked() -> None:
    walked = {name for name, _command in COMMANDS}
    assert {"localagent serve", "localagent plugins list", "localagent token"} <= walked


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_cli_md_documents_the_command_and_its_options(name: str, command: click.Command) -> None:
    sections = _sections(_read("cli.md"))
    assert name in sections, f"cli.md lacks a heading '{name}'"
    section = sections[name]
    missing = [option for option in _option_names(command) if not _mentions(section, option)]
    assert not missing, f"cli.md, section '{name}', does not mention {missing}"


def test_cli_md_documents_the_help_option() -> None:
    root = _sections(_read("cli.md"))["localagent"]
    for option in main.context_settings["help_option_names"]:
        assert _mentions(root, option), f"cli.md, section 'localagent', lacks {option}"


def test_cli_md_mentions_only_options_that_exist() -> None:
    real = set(main.context_settings["help_option_names"])
    for _name, command in COMMANDS:
        for param in command.params:
            real.update(param.opts)
            real.update(param.secondary_opts)
    stale = sorted(set(LONG_OPTION.findall(_read("cli.md"))) - real)
    assert not stale, f"cli.md mentions options that do not exist: {stale}"


# The reference reads as `--help` does: the same usage line, and the options table's first
# column is what `--help` prints for each option, in its order (`--help` itself is documented
# once, under `localagent`).
TEXT_BLOCK = re.compile(r"^```text\n(.*?)\n```", re.MULTILINE | re.DOTALL)
OPTION_ROW = re.compile(r"^\| (`-.*?) \|", re.MULTILINE)


def _help_context(path: tuple[str, ...]) -> click.Context:
    context = main.make_context("localagent", ["--help"], resilient_parsing=True)
    for name in path:
        command = context.command
        assert isinstance(command, click.Group)
        subcommand = command.get_command(context, name)
        assert subcommand is not None
        context = subcommand.make_context(name, [], context, resilient_parsing=True)
    return context


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_cli_md_usage_and_options_read_as_help_does(name: str, command: click.Command) -> None:
    context = _help_context(tuple(name.split()[1:]))
    help_option = command.get_help_option(context)
    # The root's usage opens the page, above its options.
    section = _read("cli.md") if command is main else _sections(_read("cli.md"))[name]
    usage = TEXT_BLOCK.search(section)
    assert usage is not None, f"cli.md, section '{name}', has no usage block"
    expected = " ".join((name, *command.collect_usage_pieces(context)))
    assert usage.group(1) == expected, f"cli.md, '{name}': the usage line is {expected!r}"

    table = _sections(_read("cli.md"))[name]
    rows = [row.replace("`", "").replace("\\|", "|") for row in OPTION_ROW.findall(table)]
    shown = [
        record[0]
        for param in command.get_params(context)
        if isinstance(param, click.Option)
        and param is not help_option
        and (record := param.get_help_record(context)) is not None
    ]
    if command is main:
        assert help_option is not None and help_option.get_help_record(context) is not None
        shown.append(help_option.get_help_record(context)[0])
    assert rows == shown, f"cli.md, '{name}': the options table should list {shown}"


def test_cli_md_lists_the_bench_areas_in_the_order_they_run() -> None:
    from localagent_bench.areas import AREAS

    areas = [name for name, _module in AREAS]
    section = _sections(_read("cli.md"))["localagent bench"]
    listed = section[: section.index("in that order")]
    assert [word for word in re.findall(r"`([\w-]+)`", listed) if word in areas] == areas
    help_text = _help_context(("bench",)).command.get_help(_help_context(("bench",)))
    assert ", ".join(areas) in " ".join(help_text.split())


def test_performance_md_counts_and_orders_the_bench_areas() -> None:
    from localagent_bench.areas import AREAS

    areas = [name for name, _module in AREAS]
    numbers = "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    numbers += "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
    pattern = rf"\b({'|'.join(numbers.split())}) areas\b"
    counts = set(re.findall(pattern, _read("performance.md")))
    assert counts == {numbers.split()[len(areas)]}, (
        f"performance.md counts the areas as {sorted(counts)}; there are {len(areas)}"
    )
    table = _sections(_read("performance.md"))["localagent bench"]
    rows = re.findall(r"^\| `([\w-]+)` \|", table, re.MULTILINE)
    assert rows == areas, f"performance.md's area table should list {areas}, in that order"


# -- (c) configuration.md documents every [server] setting -------------------


def _toml(value: Any) -> str:
    """The TOML spelling of a default value, as the settings table shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return '""'  # TOML has no null: an empty string means "not set"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


SETTINGS = (*msgspec.structs.fields(ServerSettings), *msgspec.structs.fields(AgentSettings))


@pytest.mark.parametrize("field", SETTINGS, ids=lambda field: field.name)
def test_configuration_md_documents_the_setting(field: msgspec.structs.FieldInfo) -> None:
    variable = ENV_PREFIX + field.name.upper()
    cells: tuple[str, ...] = (f"`{field.name}`", f"`{variable}`")
    if field.default is not msgspec.NODEFAULT:  # not a default made by a factory
        cells += (f"`{_toml(field.default)}`",)
    rows = [line for line in _read("configuration.md").splitlines() if line.startswith("|")]
    assert any(all(cell in row for cell in cells) for row in rows), (
        f"configuration.md needs a table row with {', '.join(cells)}"
    )


def test_docs_mention_only_environment_variables_that_exist() -> None:
    known = {ENV_PREFIX + field.name.upper() for field in SETTINGS}
    known |= {_client.URL_VARIABLE, _client.TOKEN_VARIABLE, _plugins.LOAD_PLUGINS_VARIABLE}
    known.add(ENV_PREFIX + "CACHE_DIR")  # read by the cache plugin (plugins/cache)
    for _name, command in COMMANDS:
        for param in command.params:
            if isinstance(param.envvar, str):
                known.add(param.envvar)
    assert ENV_PREFIX + "CONFIG_DIR" in known  # from the --config-dir option
    for page in PAGES:
        stale = sorted(set(ENV_VARIABLE.findall(_read(page))) - known)
        assert not stale, f"{page} mentions variables that LocalAgent does not read: {stale}"


def test_configuration_md_example_config_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _read("configuration.md"), re.DOTALL)
    assert blocks, "configuration.md has no TOML example"
    for block in blocks:
        (tmp_path / "config.toml").write_text(block, encoding="utf-8")
        load_settings(directory=tmp_path, environ={})  # raises ConfigError if it is wrong


# -- (c2) a built-in plugin's page documents its settings; examples are valid -------

#: The built-in plugins with settings: their settings type and their page.
BUILTIN_SETTINGS: dict[str, tuple[type[Any], str]] = {
    "exec": (ExecSettings, "exec.md"),
    "fs": (FsSettings, "fs.md"),
}


@pytest.mark.parametrize("name", sorted(BUILTIN_SETTINGS))
def test_a_builtin_plugins_page_documents_exactly_its_settings(name: str) -> None:
    settings_type, page = BUILTIN_SETTINGS[name]
    section = _sections(_read(page))["Configuration"]
    keys = re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)
    assert keys == list(settings_fields(settings_type)), f"{page}'s settings table is stale"


def test_documented_tables_of_builtin_plugins_are_valid_settings() -> None:
    checked = set()
    for page in PAGES:
        for block in re.findall(r"```toml\n(.*?)```", _read(page), re.DOTALL):
            tables = tomllib.loads(block).get("plugins", {})
            for name, (settings_type, _page) in BUILTIN_SETTINGS.items():
                if name in tables:  # raises ConfigError if the example is wrong
                    settings = Settings(config_dir=Path("/cfg"), plugins={name: tables[name]})
                    settings.plugin_settings(name, settings_type)
                    checked.add(name)
    assert checked == set(BUILTIN_SETTINGS), "no example table found for some plugins"


# -- (d) protocol.md documents every error code ------------------------------


def _error_codes() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(_protocol).items()
        if name.isupper() and isinstance(value, str) and value != _protocol.BATCH
    }


def test_protocol_error_codes_are_found() -> None:
    assert set(_error_codes()) >= {"INVALID_JSON", "INVALID_MESSAGE", "UNKNOWN_TYPE"}


def test_protocol_md_documents_every_error_code() -> None:
    section = _sections(_read("protocol.md"))["Error codes"]
    table_codes = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    for name, code in _error_codes().items():
        assert code in table_codes, f"protocol.md, 'Error codes', lacks {name} = {code!r}"
    stale = sorted(table_codes - set(_error_codes().values()))
    assert not stale, f"protocol.md lists core error codes that do not exist: {stale}"


def test_protocol_md_states_the_protocol_constants() -> None:
    text = _read("protocol.md")
    assert f'"type": "{_protocol.BATCH}"' in text
    assert f"at most {_protocol.MAX_TYPE_LENGTH} characters" in text


# -- the pages themselves ----------------------------------------------------


def test_the_readme_layout_names_every_plugin_distribution() -> None:
    layout = _sections((DOCS.parent / "README.md").read_text(encoding="utf-8"))["Layout"]
    plugins = sorted(path.parent.name for path in DOCS.parent.glob("plugins/*/pyproject.toml"))
    missing = [name for name in plugins if not _mentions(layout, name)]
    assert not missing, f"README.md's layout does not name the plugins {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_resolve(page: str) -> None:
    for target, anchor in re.findall(r"\]\(([\w-]+\.md)?(?:#([\w-]+))?\)", _read(page)):
        linked = target or page
        assert (DOCS / linked).is_file(), f"{page} links to a missing page {linked}"
        if anchor:
            anchors = {_slug(heading) for heading in _sections(_read(linked))}
            assert anchor in anchors, f"{page} links to a missing anchor {linked}#{anchor}"


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_compile(page: str) -> None:
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", _read(page), re.DOTALL)):
        compile(block, f"{page}, python example {number + 1}", "exec")
