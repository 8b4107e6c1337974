"""The shape of the source tree: no import circle inside ``localagent``, no oversized module.

Both checks read the real files with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "localagent"

#: Most lines a module may have in the trees below: past that, split it along its ideas.
MAX_LINES = 500
#: The trees whose modules are held to :data:`MAX_LINES` (tests and scripts are not).
SIZED_TREES = ("localagent", "hookspecs/src", "plugins/*/src", "bench/src")
#: The packages that must have no import circle: the core, and every distribution's.
PACKAGES = (
    "localagent",
    "hookspecs/src/localagent_hookspecs",
    "plugins/*/src/localagent_*",
    "bench/src/localagent_bench",
)
#: Modules allowed over the limit, each with the reason (none: split a module instead). An
#: entry for a module that is gone or back under the limit fails the test: delete it then.
OVERSIZED: dict[str, str] = {}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run: everywhere, functions included, but not under
    ``if TYPE_CHECKING:`` (those are for the type checker and never execute)."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: set[str]
) -> Iterator[str]:
    """The modules of the package that ``node`` imports (a package counts as its ``__init__``).

    The importer's own enclosing packages are left out: Python imports them
    before the importer, whatever its import statements say.
    """
    ancestors = {".".join(module.split(".")[:end]) for end in range(1, module.count(".") + 1)}
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join([*base, node.module] if node.module else base)
        else:
            origin = node.module or ""
        names = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
    for name in names:
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            candidate = ".".join(parts[:end])
            if candidate in modules and candidate != module and candidate not in ancestors:
                yield candidate


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports at run time."""
    root = package_dir.parent
    files = {_module_name(path, root): path for path in sorted(package_dir.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = {
            target
            for node in _runtime_imports(tree)
            for target in _targets(module, is_package, node, set(files))
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in import order, the first repeated
    at the end), or ``None``."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return None


def test_no_import_cycle_inside_localagent() -> None:
    graph = import_graph(ROOT / PACKAGE)
    assert "localagent._config" in graph and graph["localagent._server"], "the graph is empty"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("pattern", PACKAGES[1:])
def test_no_import_cycle_inside_the_other_distributions(pattern: str) -> None:
    packages = sorted(ROOT.glob(pattern))
    assert packages, pattern
    for package in packages:
        cycle = find_cycle(import_graph(package))
        assert cycle is None, "import circle: " + " -> ".join(cycle or ())


def test_the_cycle_finder_finds_a_circle_through_a_function_level_import(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import a\n"  # type-only: no circle yet
    )
    assert find_cycle(import_graph(package)) is None
    (package / "c.py").write_text("import pkg.a\nx = 1\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


def _sized_modules() -> Iterator[Path]:
    for pattern in SIZED_TREES:
        for tree in sorted(ROOT.glob(pattern)):
            yield from sorted(tree.rglob("*.py"))


def test_no_module_is_over_the_size_limit() -> None:
    modules = list(_sized_modules())
    assert len(modules) > 50, "the trees were not found"
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules
    }
    oversized = {path: lines for path, lines in sizes.items() if lines > MAX_LINES}
    unexcused = sorted(set(oversized) - set(OVERSIZED))
    assert not unexcused, f"modules over {MAX_LINES} lines (split them along their ideas): " + (
        ", ".join(f"{path} ({oversized[path]})" for path in unexcused)
    )
    stale = sorted(set(OVERSIZED) - set(oversized))
    assert not stale, f"remove from OVERSIZED (gone, or {MAX_LINES} lines or fewer): {stale}"


@pytest.mark.parametrize("pattern", SIZED_TREES)
def test_each_sized_tree_exists(pattern: str) -> None:
    assert any(ROOT.glob(pattern)), pattern
