"""The lock and the ``pyproject.toml`` files cannot drift apart.

The ``pyproject.toml`` files keep compatible ranges for users; the lock (``requirements.txt``,
``requirements-test.txt`` and ``requirements-build.txt``, written by ``tools/lock``) pins what
the README's two commands install. These tests fail when a ``pyproject.toml`` names a
dependency that the lock lacks or pins outside its range, when a lock input changed without
``tools/lock``, and when this environment does not run what the lock pins.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .helpers.lock import (
    BUILD_LOCK,
    DISTRIBUTIONS,
    LOCK,
    ROOT,
    TEST_LOCK,
    editables,
    pinned_version,
    pins,
    pyproject,
    uv_pin,
)

LOCAL = {
    canonicalize_name(pyproject(folder)["project"]["name"]): pyproject(folder)["project"]["version"]
    for folder in DISTRIBUTIONS
}
IDS = [str(folder.relative_to(ROOT)) or "." for folder in DISTRIBUTIONS]


def _requirements(folder: Path, *, extras: bool) -> list[Requirement]:
    project = pyproject(folder)["project"]
    names = list(project.get("dependencies", []))
    if extras:
        for group in project.get("optional-dependencies", {}).values():
            names.extend(group)
    return [Requirement(name) for name in names]


def _check_locked(requirement: Requirement, locked: dict[str, Requirement], where: str) -> None:
    name = canonicalize_name(requirement.name)
    if name in LOCAL:  # a distribution of this repository, installed from its folder
        assert requirement.specifier.contains(LOCAL[name], prereleases=True), (
            f"{where} asks for {requirement}, but the repository's {name} is {LOCAL[name]}"
        )
        return
    assert name in locked, f"{where} names {requirement}, which the lock lacks: run tools/lock"
    version = pinned_version(locked[name])
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{where} asks for {requirement}, the lock pins {name}=={version}: run tools/lock"
    )


def test_every_distribution_is_found() -> None:
    assert {
        "localagent",
        "localagent-hookspecs",
        "localagent-bench",
        "localagent-template",
        "localagent-hello",
    } <= set(LOCAL)


@pytest.mark.parametrize("folder", DISTRIBUTIONS, ids=IDS)
def test_the_test_lock_has_every_dependency_in_range(folder: Path) -> None:
    locked = pins(TEST_LOCK)
    for requirement in _requirements(folder, extras=True):
        _check_locked(requirement, locked, f"{folder.name}/pyproject.toml")


@pytest.mark.parametrize("folder", DISTRIBUTIONS, ids=IDS)
def test_the_build_lock_has_every_build_requirement_in_range(folder: Path) -> None:
    locked = pins(BUILD_LOCK)
    for name in pyproject(folder)["build-system"]["requires"]:
        _check_locked(Requirement(name), locked, f"{folder.name}/pyproject.toml [build-system]")


def test_the_agents_lock_has_what_its_distributions_need() -> None:
    locked = pins(LOCK)
    installed = [ROOT / path for path in editables(LOCK)]
    assert installed, "requirements.txt installs none of this repository's distributions"
    for folder in installed:
        for requirement in _requirements(folder, extras=False):
            _check_locked(requirement, locked, f"{folder.name}/pyproject.toml")


def test_both_locks_pin_the_same_versions() -> None:
    agent, tests = pins(LOCK), pins(TEST_LOCK)
    assert set(agent) <= set(tests)
    differ = {name: (agent[name], tests[name]) for name in agent if agent[name] != tests[name]}
    assert not differ, f"requirements.txt and requirements-test.txt differ: {differ}"


@pytest.mark.parametrize(
    ("source", "lock"),
    [("requirements.in", LOCK), ("requirements-test.in", TEST_LOCK)],
)
def test_each_lock_installs_what_its_input_lists(source: str, lock: Path) -> None:
    wanted: set[str] = set()
    queue = [ROOT / source]
    while queue:  # follow `-r other.in`
        text = queue.pop().read_text(encoding="utf-8")
        queue.extend(ROOT / name for name in re.findall(r"^-r +(\S+)", text, re.MULTILINE))
        wanted.update(
            re.sub(r"\[.*\]$", "", path) for path in re.findall(r"^-e +(\S+)", text, re.MULTILINE)
        )
    assert wanted == set(editables(lock)), f"{source} changed since {lock.name}: run tools/lock"


def test_the_readme_commands_install_from_the_lock() -> None:
    commands = re.findall(r"^```sh\n(.+)\n```", (ROOT / "README.md").read_text(), re.MULTILINE)
    run, test = commands[:2]
    assert "-r requirements.txt" in run and "-r requirements-test.txt" in test
    for command in (run, test):
        assert "--build-constraints requirements-build.txt" in command
    versions = uv_pin()
    assert len(versions) >= 2 and len(set(versions)) == 1, f"the README pins uv as {versions}"
    install = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for command in (run, test):
        assert f"```sh\n{command}\n```" in install, "docs/index.md shows other commands"


def test_this_environment_runs_what_the_lock_pins() -> None:
    """The suite runs under the lock: every pin that applies here is what is installed."""
    wrong = {}
    for name, requirement in pins(TEST_LOCK).items():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != pinned_version(requirement):
            wrong[name] = f"{installed}, locked {pinned_version(requirement)}"
    assert not wrong, f"not installed from requirements-test.txt (the README command): {wrong}"


def test_this_environments_uv_is_the_readmes() -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv is not None, "uv is not installed next to this Python: use the README's command"
    version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[1] == uv_pin()[0]
