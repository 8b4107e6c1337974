"""A plugin author's copy of ``plugins/_template`` passes its own tests out of the box.

The test does what the template's README tells an author: copy the folder somewhere outside
the repository, rename it (here to plugin ``foo``), install it with its ``test`` extra into an
environment beside the agent, and run its tests from its own folder. The environment is new
and holds only the agent (``requirements.txt``) and the copy, at the lock's versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .helpers.lock import BUILD_LOCK, LOCK, ROOT, TEST_LOCK, pins

TEMPLATE = ROOT / "plugins" / "_template"


def _replace(path: Path, old: str, new: str) -> None:
    """Edit ``path`` as the README says; fail if the template no longer reads as it expects."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} no longer contains {old!r}: update the README's steps"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _rename(copy: Path, name: str) -> None:
    """Steps 2 to 6 of the README, for plugin ``name``."""
    module = f"localagent_{name}"
    (copy / "src" / "localagent_template").rename(copy / "src" / module)  # 2. module
    pyproject = copy / "pyproject.toml"
    _replace(pyproject, 'name = "localagent-template"', f'name = "localagent-{name}"')  # 3.
    _replace(pyproject, 'packages = ["src/localagent_template"]', f'packages = ["src/{module}"]')
    _replace(pyproject, 'template = "localagent_template:Plugin"', f'{name} = "{module}:Plugin"')
    _replace(copy / "src" / module / "__init__.py", "template.hello", f"{name}.hello")  # 5.
    _replace(copy / "src" / module / "__init__.py", 'NAME = "template"', f"NAME = {name!r}")
    tests = copy / "tests" / f"test_{name}_plugin.py"
    (copy / "tests" / "test_template_plugin.py").rename(tests)  # 6. tests
    _replace(tests, "template.hello", f"{name}.hello")
    _replace(tests, "from localagent_template import", f"from {module} import")
    # Installed, the plugin is named by its entry point: that tests the entry point too.
    _replace(tests, "return [Plugin()]", f"return [{name!r}]")


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv is not None, "uv is not installed: install the test requirements as the README says"
    return uv


def test_a_renamed_copy_outside_the_repository_passes_its_own_tests(tmp_path: Path) -> None:
    copy = tmp_path / "localagent-foo"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _rename(copy, "foo")

    # The copy's test extra gets the versions the repository's tests run with.
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(str(pin) for pin in pins(TEST_LOCK).values()) + "\n")
    venv = tmp_path / "venv"
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, venv], check=True)
    install = [
        *(uv, "pip", "install", "-q", "--python", venv / "bin" / "python"),
        *("--build-constraints", BUILD_LOCK, "-c", constraints),
        *("-r", LOCK, "-e", f"{copy}[test]"),
    ]
    # The lock's editable paths are relative to the repository, as in the README's commands.
    subprocess.run(install, cwd=ROOT, check=True)

    env = {key: value for key, value in os.environ.items() if not key.startswith("LOCALAGENT_")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"rootdir: {copy}" in output, "the copy's tests ran with another pytest config"
    assert " passed" in output and "test_foo_plugin.py" in output, output
