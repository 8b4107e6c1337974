"""Read the lock (``requirements*.txt``, by ``tools/lock``) and the ``pyproject.toml`` files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "BUILD_LOCK",
    "DISTRIBUTIONS",
    "LOCK",
    "ROOT",
    "TEST_LOCK",
    "editables",
    "pinned_version",
    "pins",
    "pyproject",
    "uv_pin",
]

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"
TEST_LOCK = ROOT / "requirements-test.txt"
BUILD_LOCK = ROOT / "requirements-build.txt"

#: Every distribution in this repository: the folders holding a ``pyproject.toml``.
DISTRIBUTIONS = (
    ROOT,
    ROOT / "hookspecs",
    ROOT / "bench",
    *sorted(path.parent for path in (ROOT / "plugins").glob("*/pyproject.toml")),
    *sorted(path.parent for path in (ROOT / "examples").glob("*/pyproject.toml")),
)

# A pinned requirement starts a line (`name==version ; marker \`); hashes and comments follow
# on indented lines.
_PIN = re.compile(r"^[A-Za-z0-9].*?(?= *\\?$)", re.MULTILINE)
_EDITABLE = re.compile(r"^-e +(\S+)", re.MULTILINE)
_UV_PIN = re.compile(r"\buv==([0-9][0-9.]*)")


def pins(path: Path) -> dict[str, Requirement]:
    """The pinned third-party requirements of a lock file, by canonical name."""
    found: dict[str, Requirement] = {}
    for line in _PIN.findall(path.read_text(encoding="utf-8")):
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path.name}: {line!r} is not pinned with =="
        )
        found[canonicalize_name(requirement.name)] = requirement
    return found


def pinned_version(requirement: Requirement) -> str:
    """The version a ``name==version`` requirement pins."""
    return next(iter(requirement.specifier)).version


def editables(path: Path) -> list[str]:
    """The ``-e PATH`` lines of a requirements file, as written."""
    return _EDITABLE.findall(path.read_text(encoding="utf-8"))


def pyproject(folder: Path) -> dict[str, Any]:
    """The parsed ``pyproject.toml`` of a distribution folder."""
    with (folder / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def uv_pin() -> list[str]:
    """Every ``uv==VERSION`` the README's install commands give, in order."""
    return _UV_PIN.findall((ROOT / "README.md").read_text(encoding="utf-8"))
